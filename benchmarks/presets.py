"""Train presets over several seeds and write a results table and learning curves into docs/.

  python benchmarks/presets.py --presets=morvan_pendulum_clip,morvan_pendulum_kl_pen,cartpole \
      --seeds=0,1,2 --parallel=2 --out=docs/benchmarks/core
  python benchmarks/presets.py --presets=masked_grid,masked_grid:--use_mask=false \
      --combined=masked_vs_unmasked.png --out=docs/benchmarks/masks

A preset is a flagfile name, optionally with extra flags after a colon, joined by "+".

Each (preset, seed) runs `python -m tfppo.train --flagfile=experiments/PRESET.flags --seed=S`
in its own process, its output in `--out/runs/LABEL_seedS.log`. A finished run (summary.json)
is reused. Ctrl-C or SIGTERM stops every run with a checkpoint (tfppo's own Ctrl-C handling);
the same command then resumes the unfinished runs from their checkpoints.

The table gives, per run: the first env step (and episode) at which the mean undiscounted
return of the last 100 episodes reached the preset's threshold, the best and final last-100
means, the deterministic evaluation return, wall time and env steps/s.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tfppo import plot, rundir  # noqa: E402

# What each preset must reach (over the last 100 episodes), from the issues: (metric, value).
THRESHOLDS = {
    "morvan_pendulum_clip": ("episode_return_mean", -400.0),
    "morvan_pendulum_kl_pen": ("episode_return_mean", -400.0),
    "morvan_pendulum_tutorial": ("episode_return_mean", -400.0),
    "morvan_dppo_pendulum": ("episode_return_mean", -400.0),
    "cartpole": ("episode_return_mean", 475.0),
    "acrobot": ("episode_return_mean", -85.0),
    "pendulum": ("episode_return_mean", -200.0),
    "pendulum_gsde": ("episode_return_mean", -200.0),
    "pendulum_gsde_tuned": ("episode_return_mean", -200.0),
    "lunarlander": ("episode_return_mean", 200.0),
    "lunarlander_continuous": ("episode_return_mean", 200.0),
    "halfcheetah": ("episode_return_mean", 3000.0),
    "hopper": ("episode_return_mean", 2300.0),
    "hopper_zoo": ("episode_return_mean", 2300.0),
    "frozen_lake": ("episode_return_mean", 1.0),  # the optimum (no slipping): every episode at the goal
    "masked_grid": ("episode_return_mean", 0.9),  # the optimum is 0.94-0.98
    "masked_multidiscrete": ("episode_return_mean", 57.0),  # the optimum is 60
    "hybrid_moving": ("success_rate", 0.9),
    # Issue 17's targets (rl-baselines3-zoo's RecurrentPPO: CartPoleNoVel 500, PendulumNoVel ~-218
    # at 100k with gSDE): >= 475 within 100k steps, better than -400 within 200k.
    "cartpole_novel_lstm": ("episode_return_mean", 475.0),
    "pendulum_novel_lstm": ("episode_return_mean", -400.0),
    "pendulum_novel_lstm_gsde": ("episode_return_mean", -400.0),
    # The published PPO returns at the presets' budgets (docs/benchmarks/minatar): gymnax-blines
    # Breakout-MinAtar 28 at 10M steps; SpaceInvaders-MinAtar ~140 at 5M (PureJaxRL's curve).
    "minatar_breakout": ("episode_return_mean", 28.0),
    "minatar_space_invaders": ("episode_return_mean", 140.0),
}


def parse_preset(text: str) -> tuple[str, str, list]:
    """ "NAME" or "NAME:--flag=v+--flag2=w" -> (flagfile name, label, extra flags)."""
    name, _, flags = text.partition(":")
    extra = [f for f in flags.split("+") if f]
    label = name + "".join("_" + f.lstrip("-").replace("=", "-") for f in extra)
    return name, label, extra


class Interrupted(Exception):
    """Ctrl-C or SIGTERM: the runs were told to save a checkpoint and stop."""


class RunFailed(Exception):
    """A training run exited with an error; the message names the run, its last line and its log."""


class Runs:
    """The training processes in flight, so an interruption reaches every one of them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.processes = set()
        self.stopping = False

    def start(self, command: list, log) -> subprocess.Popen:
        with self.lock:
            if self.stopping:
                raise Interrupted()
            # A session of its own: a terminal's Ctrl-C reaches this script only, which then
            # sends each run one SIGINT (a second one could cut its checkpoint short).
            process = subprocess.Popen(
                command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            self.processes.add(process)
            return process

    def finish(self, process: subprocess.Popen) -> None:
        with self.lock:
            self.processes.discard(process)

    def stop(self, timeout_s: float = 120.0) -> int:
        """SIGINT to every run (tfppo checkpoints on it), then waits for them to exit; returns
        how many were still running."""
        with self.lock:
            self.stopping = True
            processes = list(self.processes)
        running = [process for process in processes if process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGINT)
        deadline = time.time() + timeout_s
        for process in processes:
            try:
                process.wait(timeout=max(deadline - time.time(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
        return len(running)


RUNS = Runs()


def run_one(preset_text: str, seed: int, out: str, extra: list) -> dict:
    preset, label, preset_flags = parse_preset(preset_text)
    extra = preset_flags + extra
    logdir = os.path.join(out, "runs", f"{label}_seed{seed}")
    if os.path.exists(rundir.path(logdir, rundir.SUMMARY_FILE)):
        print(f"reusing {logdir}", flush=True)
        return row(preset, label, seed, logdir)
    command = [
        sys.executable,
        "-m",
        "tfppo.train",
        f"--flagfile=experiments/{preset}.flags",
        f"--seed={seed}",
        f"--logdir={logdir}",
        *extra,
    ]
    resumed = os.path.isdir(rundir.path(logdir, rundir.CHECKPOINT_DIR))
    if resumed:  # An interrupted run: continue it (tfppo checks the flags are the same).
        command.append("--resume")
    elif os.path.isdir(logdir):  # Stopped before its first checkpoint: keep it aside, start anew.
        aside = f"{logdir}.aborted-{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(logdir, aside)
        print(f"{logdir} has no checkpoint: moved to {aside}", flush=True)
    log_path = logdir + ".log"
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    started = time.time()
    with open(log_path, "a", encoding="utf-8") as log:
        process = RUNS.start(command, log)
        # Not in a `finally`: an interruption raised in this wait (the caller's main thread, as in
        # mujoco_suite.py) must leave the run in RUNS for RUNS.stop() to signal; forgotten here,
        # it would run on, orphaned in its own session.
        code = process.wait()
        RUNS.finish(process)
    if RUNS.stopping:
        raise Interrupted()
    if code != 0:
        with open(log_path, encoding="utf-8") as log:
            last = [line.strip() for line in log if line.strip()][-1:]
        last_line = last[0] if last else "no output"
        raise RunFailed(f"{label} seed {seed} failed (exit {code}): {last_line} (log: {log_path})")
    how = " (resumed)" if resumed else ""
    print(f"{label} seed {seed}: {time.time() - started:.0f} s{how}", flush=True)
    return row(preset, label, seed, logdir)


def row(preset: str, label: str, seed: int, logdir: str) -> dict:
    records = plot.read_metrics(logdir)
    with open(rundir.path(logdir, rundir.SUMMARY_FILE)) as f:
        summary = json.load(f)
    metric, threshold = THRESHOLDS.get(preset, ("episode_return_mean", None))
    reached = next(
        (
            r
            for r in records
            if r["episodes"] >= 100 and threshold is not None and (r.get(metric) or -math.inf) >= threshold
        ),
        None,
    )
    full = [r["episode_return_mean"] for r in records if r["episodes"] >= 100]
    return {
        "preset": label,
        "seed": seed,
        "metric": metric,
        "final_success_rate": summary.get("success_rate"),
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
    return "n/a" if value is None else format(value, spec)


def summary_table(rows: list) -> list:
    """One line per preset variant: how many seeds reached the threshold, and where."""
    lines = [
        "| preset | seeds reaching the threshold | reached at episode (per seed) | best last-100 (per seed) | final last-100 (per seed) | final last-100, mean |",
        "|---|---|---|---|---|---|",
    ]
    for label in dict.fromkeys(r["preset"] for r in rows):
        chosen = [r for r in rows if r["preset"] == label]
        reached = [r for r in chosen if r["reached_step"] is not None]
        episodes = ", ".join(
            "-" if r["reached_episode"] is None else str(r["reached_episode"]) for r in chosen
        )
        best = ", ".join(fmt(r["best_last100"]) for r in chosen)
        final = ", ".join(fmt(r["final_last100"]) for r in chosen)
        mean = sum(r["final_last100"] for r in chosen) / len(chosen)
        lines.append(
            f"| {label} | {len(reached)} of {len(chosen)} | {episodes} | {best} | {final} | {mean:.0f} |"
        )
    return lines


def write_table(rows: list, out: str, command: str) -> str:
    lines = [
        f"Command: `{command}`",
        "",
        "| preset | seed | metric >= threshold | reached at step (episode) | time to threshold | best last-100 return | final last-100 return | final success rate | eval return (deterministic, --eval_episodes) | steps | wall | steps/s | collect share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        reached = (
            "not reached" if r["reached_step"] is None else f"{r['reached_step']} ({r['reached_episode']})"
        )
        lines.append(
            f"| {r['preset']} | {r['seed']} | {r['metric']} >= {fmt(r['threshold'], 'g')} | {reached} "
            f"| {fmt(r['reached_wall_s'])} s | {fmt(r['best_last100'], '.2f')} | {fmt(r['final_last100'], '.2f')} "
            f"| {fmt(r['final_success_rate'], '.2f')} | {fmt(r['eval_return'], '.2f')} "
            f"| {r['steps']} | {r['wall_s']:.0f} s | {r['sps']:.0f} | {r['collect_fraction']:.0%} |"
        )
    lines += ["", *summary_table(rows)]
    path = os.path.join(out, "results.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line, with every preset's flagfile checked (exit 2 naming a missing one)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="morvan_pendulum_clip,morvan_pendulum_kl_pen,cartpole")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", default="docs/benchmarks/core")
    parser.add_argument("--combined", default="", help="also draw every preset into this one PNG")
    parser.add_argument("extra", nargs="*", help="extra train flags, after --")
    args = parser.parse_args(argv)
    names = [parse_preset(p)[0] for p in args.presets.split(",")]
    unknown = [p for p in names if not os.path.isfile(os.path.join(REPO, "experiments", f"{p}.flags"))]
    if unknown:
        parser.exit(2, f"error: no experiments/{unknown[0]}.flags\n")
    check_seeds_and_parallel(parser, args)
    return args


def check_seeds_and_parallel(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """args.seed_list from --seeds; exit 2 with one line for a bad --seeds or --parallel < 1."""
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.exit(2, f"error: --seeds={args.seeds!r} must be comma separated integers, e.g. 0,1,2\n")
    if args.parallel < 1:
        parser.exit(2, f"error: --parallel={args.parallel} must be >= 1\n")


def run_all(run, jobs: list, parallel: int) -> list:
    """[run(job) for job in jobs], `parallel` at a time; SIGTERM or Ctrl-C stops the runs in
    progress (each saves a checkpoint) and exits 2 saying the same command resumes them."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    pool = concurrent.futures.ThreadPoolExecutor(parallel)
    try:
        rows = list(pool.map(run, jobs))
    except (KeyboardInterrupt, Interrupted):
        RUNS.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        print(
            "error: interrupted; the runs in progress saved a checkpoint; "
            "run the same command again to resume them",
            file=sys.stderr,
        )
        sys.exit(2)
    except RunFailed as failure:  # One line, not the thread pool's traceback; the others stop too.
        others = RUNS.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        stopped = f"; {others} other run(s) in progress saved a checkpoint" if others else ""
        print(f"error: {failure}{stopped}; the same command reuses finished runs", file=sys.stderr)
        sys.exit(1)
    pool.shutdown()
    return rows


def main() -> None:
    args = parse_args()
    presets, seeds = args.presets.split(","), args.seed_list
    names = [parse_preset(p)[0] for p in presets]
    out = os.path.join(REPO, args.out)
    os.makedirs(out, exist_ok=True)
    jobs = [(p, s) for p in presets for s in seeds]
    rows = run_all(lambda job: run_one(job[0], job[1], out, args.extra), jobs, args.parallel)
    command = "python benchmarks/presets.py " + " ".join(sys.argv[1:])
    print(open(write_table(rows, out, command)).read())
    labels = [parse_preset(p)[1] for p in presets]
    for label, name in zip(labels, names, strict=True):
        draw(rows, [label], os.path.join(out, f"{label}.png"), name)
    if args.combined:
        draw(rows, labels, os.path.join(out, args.combined), names[0])


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def draw(rows: list, labels: list, path: str, name: str) -> None:
    """One curve per label (mean and min-max band over seeds) of the preset's metric."""
    chosen = [r for r in rows if r["preset"] in labels]
    metric = THRESHOLDS.get(name, ("episode_return_mean", None))[0]
    plot.plot_runs(
        [r["logdir"] for r in chosen],
        path,
        x="episodes" if name.startswith("morvan") else "global_step",
        y=metric,
        title=f"{' vs '.join(labels)} ({len(chosen) // max(len(labels), 1)} seeds)",
        labels=[r["preset"] for r in chosen],
    )


if __name__ == "__main__":
    main()
