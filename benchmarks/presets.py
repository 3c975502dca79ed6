"""Train presets over several seeds and write a results table and learning curves into docs/.

  python benchmarks/presets.py --presets=morvan_pendulum_clip,morvan_pendulum_kl_pen,cartpole \
      --seeds=0,1,2 --parallel=2 --out=docs/benchmarks/core

Each (preset, seed) runs `python -m tfppo.train --flagfile=experiments/PRESET.flags --seed=S`
in its own process. The table gives, per run: the first env step (and episode) at which the
mean undiscounted return of the last 100 episodes reached the preset's threshold, the best
and final last-100 means, the deterministic evaluation return, wall time and env steps/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tfppo import plot  # noqa: E402

# The return each preset must reach (mean of the last 100 episodes), from the issues.
THRESHOLDS = {
    "morvan_pendulum_clip": -400.0,
    "morvan_pendulum_kl_pen": -400.0,
    "cartpole": 475.0,
}


def run_one(preset: str, seed: int, out: str, extra: list) -> dict:
    logdir = os.path.join(out, "runs", f"{preset}_seed{seed}")
    if os.path.exists(os.path.join(logdir, "summary.json")):
        print(f"reusing {logdir}", flush=True)
    else:
        command = [
            sys.executable,
            "-m",
            "tfppo.train",
            f"--flagfile=experiments/{preset}.flags",
            f"--seed={seed}",
            f"--logdir={logdir}",
            *extra,
        ]
        started = time.time()
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip().splitlines()[-1:]}")
        print(f"{preset} seed {seed}: {time.time() - started:.0f} s", flush=True)
    return row(preset, seed, logdir)


def row(preset: str, seed: int, logdir: str) -> dict:
    records = plot.read_metrics(logdir)
    with open(os.path.join(logdir, "summary.json")) as f:
        summary = json.load(f)
    threshold = THRESHOLDS.get(preset)
    reached = next(
        (
            r
            for r in records
            if r["episodes"] >= 100 and threshold is not None and r["episode_return_mean"] >= threshold
        ),
        None,
    )
    full = [r["episode_return_mean"] for r in records if r["episodes"] >= 100]
    return {
        "preset": preset,
        "seed": seed,
        "logdir": logdir,
        "threshold": threshold,
        "reached_step": reached["global_step"] if reached else None,
        "reached_episode": reached["episodes"] if reached else None,
        "reached_wall_s": reached["wall_s"] if reached else None,
        "best_last100": max(full) if full else None,
        "final_last100": summary["episode_return_mean"],
        "eval_return": summary["eval_return_mean"],
        "steps": summary["global_step"],
        "episodes": summary["episodes"],
        "wall_s": summary["wall_s"],
        "sps": summary["sps"],
        "collect_fraction": summary["collect_fraction"],
    }


def fmt(value, spec=".0f"):
    return "not reached" if value is None else format(value, spec)


def write_table(rows: list, out: str, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| preset | seed | threshold | reached at step (episode) | time to threshold | best last-100 | final last-100 | eval (10 ep.) | steps | wall | steps/s | collect share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reached = (
            "not reached" if r["reached_step"] is None else f"{r['reached_step']} ({r['reached_episode']})"
        )
        lines.append(
            f"| {r['preset']} | {r['seed']} | {fmt(r['threshold'])} | {reached} | {fmt(r['reached_wall_s'])} s "
            f"| {fmt(r['best_last100'], '.1f')} | {fmt(r['final_last100'], '.1f')} | {fmt(r['eval_return'], '.1f')} "
            f"| {r['steps']} | {r['wall_s']:.0f} s | {r['sps']:.0f} | {r['collect_fraction']:.0%} |"
        )
    path = os.path.join(out, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="morvan_pendulum_clip,morvan_pendulum_kl_pen,cartpole")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks/core")
    parser.add_argument("extra", nargs="*", help="extra train flags, after --")
    args = parser.parse_args()
    presets, seeds = args.presets.split(","), [int(s) for s in args.seeds.split(",")]
    unknown = [p for p in presets if not os.path.isfile(os.path.join(REPO, "experiments", f"{p}.flags"))]
    if unknown:
        sys.exit(f"error: no experiments/{unknown[0]}.flags")
    out = os.path.join(REPO, args.out)
    os.makedirs(out, exist_ok=True)
    jobs = [(p, s) for p in presets for s in seeds]
    with concurrent.futures.ThreadPoolExecutor(args.parallel) as pool:
        rows = list(pool.map(lambda job: run_one(job[0], job[1], out, args.extra), jobs))
    command = "python benchmarks/presets.py " + " ".join(sys.argv[1:])
    print(open(write_table(rows, out, command)).read())
    for preset in presets:
        logdirs = [r["logdir"] for r in rows if r["preset"] == preset]
        x = "episodes" if preset.startswith("morvan") else "global_step"
        plot.plot_runs(
            logdirs,
            os.path.join(out, f"{preset}.png"),
            x=x,
            title=f"{preset} ({len(logdirs)} seeds)",
            labels=[preset] * len(logdirs),
        )


if __name__ == "__main__":
    main()
