"""Env steps per second with 1, 2 and 4 workers on a latency-bound env (tfppo.launch, 127.0.0.1).

  python benchmarks/scaling.py --workers=1,2,4 --latency_ms=10 --repeats=2 --out=docs/benchmarks/scaling

Every worker runs one Pendulum-v1 env whose step also sleeps --latency_ms (`--step_latency_ms`,
a stand-in for an expensive simulator) and collects 256 steps per update; the learner makes 4
epochs of 4 minibatches, every gradient all-reduced across workers. Steps/s is the steady
rate from the chief's metrics.jsonl (first update, which includes tracing, excluded). Runs
alternate over worker counts; the table gives each run and the speed-up over 1 worker.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_FLAGS = [
    "--env=Pendulum-v1",
    "--num_envs=1",
    "--num_steps=256",
    "--num_minibatches=4",
    "--actor_epochs=4",
    "--critic_epochs=4",
    "--eval_episodes=0",
    "--checkpoint_every=1000",
]


def steady_sps(logdir: str) -> float:
    with open(os.path.join(logdir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    first, last = records[0], records[-1]
    return (last["global_step"] - first["global_step"]) / (last["wall_s"] - first["wall_s"])


def run(workers: int, latency_ms: float, updates: int, logdir: str) -> float:
    command = [
        sys.executable,
        "-m",
        "tfppo.launch",
        f"--num_workers={workers}",
        "--",
        *TRAIN_FLAGS,
        f"--step_latency_ms={latency_ms}",
        f"--total_timesteps={256 * workers * updates}",
        f"--logdir={logdir}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    return steady_sps(logdir)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--latency_ms", type=float, default=10.0)
    parser.add_argument("--updates", type=int, default=8, help="updates per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks/scaling")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    out = os.path.join(REPO, args.out)
    os.makedirs(os.path.join(out, "runs"), exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    rows = []
    for repeat in range(args.repeats):
        for workers in counts:
            logdir = os.path.join(out, "runs", f"{stamp}_w{workers}_r{repeat}")
            sps = run(workers, args.latency_ms, args.updates, logdir)
            rows.append({"workers": workers, "repeat": repeat, "sps": sps})
            print(f"{workers} workers, repeat {repeat}: {sps:.0f} env steps/s", flush=True)
    base = sum(r["sps"] for r in rows if r["workers"] == counts[0]) / args.repeats
    lines = [
        f"Command: `python benchmarks/scaling.py {' '.join(sys.argv[1:])}`",
        "",
        f"Pendulum-v1 with {args.latency_ms:g} ms added to every env step; one env per worker; "
        f"a random policy without the latency steps at ~7000/s, so the env is latency-bound.",
        "",
        "| workers | env steps/s (per repeat) | mean | speed-up over 1 worker |",
        "|---|---|---|---|",
    ]
    for workers in counts:
        values = [r["sps"] for r in rows if r["workers"] == workers]
        mean = sum(values) / len(values)
        lines.append(
            f"| {workers} | {', '.join(f'{v:.0f}' for v in values)} | {mean:.0f} | {mean / base:.2f}x |"
        )
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=2)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
