"""Learning curves: `python -m tfppo.plot LOGDIR [LOGDIR ...] [--out=PNG] [--x=episodes]`.

Runs whose logdirs share a label (the part before `_seed`/`-seed`, or given with --labels) are
drawn as one mean curve with a min-max band over seeds: by default the mean return of the last
100 episodes (metrics.jsonl). `--tutorial` draws instead what the Morvan tutorial's figure
shows: every episode's return (episodes.csv) smoothed as r_avg = 0.9 r_avg + 0.1 r, against the
episode number, beside the band where the tutorial's own curve plateaus (-600 to -250).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import textwrap
from collections.abc import Sequence

import numpy as np

from tfppo import rundir


def read_metrics(logdir: str) -> list[dict]:
    path = rundir.path(logdir, rundir.METRICS_FILE)
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_episodes(logdir: str) -> np.ndarray:
    """[episodes, 3] (env step at the end, undiscounted return, length) from episodes.csv."""
    with open(rundir.path(logdir, rundir.EPISODES_FILE), encoding="utf-8") as f:
        rows = [(float(r["global_step"]), float(r["return"]), float(r["length"])) for r in csv.DictReader(f)]
    return np.array(rows, np.float64).reshape(-1, 3)


def tutorial_smoothing(returns: np.ndarray) -> np.ndarray:
    """The tutorial's running reward: r_avg[0] = r[0], r_avg[i] = 0.9 r_avg[i-1] + 0.1 r[i]."""
    smoothed = np.empty(len(returns))
    for i, value in enumerate(returns):
        smoothed[i] = value if i == 0 else 0.9 * smoothed[i - 1] + 0.1 * value
    return smoothed


# Where the curve of the tutorial's own figure (simply_PPO.py, Pendulum, 1000 episodes) plateaus.
TUTORIAL_PLATEAU = (-600.0, -250.0)


def _label(logdir: str) -> str:
    name = os.path.basename(os.path.normpath(logdir))
    return re.split(r"[_-]seed", name)[0]


# Characters per line of a title or a legend entry on the 7-inch figures: longer ones (a preset
# with its flags) wrap at spaces instead of running off the image's edges.
WRAP_WIDTH = 60


def _wrap(text: str) -> str:
    return textwrap.fill(text, WRAP_WIDTH, break_on_hyphens=False)


def plot_runs(
    logdirs: Sequence[str],
    out: str,
    x: str = "global_step",
    y: str = "episode_return_mean",
    title: str = "",
    labels: Sequence[str] = (),
) -> str:
    """Draws y against x for each group of runs (mean and min-max band); returns `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[list[dict]]] = {}
    for i, logdir in enumerate(logdirs):
        label = labels[i] if i < len(labels) else _label(logdir)
        groups.setdefault(label, []).append(read_metrics(logdir))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for label, runs in groups.items():
        runs = [[r for r in run if r.get(y) is not None and np.isfinite(r.get(y))] for run in runs]
        runs = [run for run in runs if run]
        if not runs:
            continue
        end = min(run[-1][x] for run in runs)
        grid = np.linspace(min(run[0][x] for run in runs), end, 200)
        curves = np.stack([np.interp(grid, [r[x] for r in run], [r[y] for r in run]) for run in runs])
        (line,) = ax.plot(grid, curves.mean(0), label=_wrap(f"{label} (n={len(runs)})"))
        if len(runs) > 1:
            ax.fill_between(grid, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(_wrap(title))
    ax.grid(alpha=0.3)
    if ax.lines:  # no finite value yet (no episode has ended): an empty plot, no legend
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def plot_tutorial_style(logdirs: Sequence[str], out: str, title: str = "", labels: Sequence[str] = ()) -> str:
    """The tutorial figure's smoothed episode return against the episode, per group (mean and
    min-max band over seeds), over the band where the tutorial's own curve plateaus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[np.ndarray]] = {}
    for i, logdir in enumerate(logdirs):
        label = labels[i] if i < len(labels) else _label(logdir)
        groups.setdefault(label, []).append(tutorial_smoothing(read_episodes(logdir)[:, 1]))
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.axhspan(
        *TUTORIAL_PLATEAU, color="grey", alpha=0.15, label="the tutorial's figure: plateau -600 to -250"
    )
    for label, curves in groups.items():
        length = min(len(c) for c in curves)
        if length == 0:
            continue
        stacked = np.stack([c[:length] for c in curves])
        episode = np.arange(length)
        (line,) = ax.plot(episode, stacked.mean(0), label=f"{label} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(episode, stacked.min(0), stacked.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("episode")
    ax.set_ylabel("moving-averaged episode reward (0.9 / 0.1)")
    ax.set_title(_wrap(title))
    ax.grid(alpha=0.3)
    if ax.lines:  # no finite value yet (no episode has ended): an empty plot, no legend
        ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # One line and exit code 2, not a usage block.
        self.exit(2, f"error: {message} (see python -m tfppo.plot --help)\n")


def main(argv: Sequence[str]) -> int:
    parser = _Parser(prog="python -m tfppo.plot", description=__doc__.splitlines()[0])
    parser.add_argument("logdirs", nargs="*", metavar="LOGDIR", help="run directories")
    # tfppo.train's name for a run directory: --logdir=RUN (repeatable) works here too.
    parser.add_argument("--logdir", action="append", default=[], help="a run directory (repeatable)")
    parser.add_argument("--out", default="learning_curves.png", help="the PNG to write")
    parser.add_argument("--x", default="global_step", choices=("global_step", "episodes", "wall_s"))
    parser.add_argument("--y", default="episode_return_mean", help="a metrics.jsonl key")
    parser.add_argument("--labels", default="", help="comma-separated label per LOGDIR")
    parser.add_argument("--title", default="")
    parser.add_argument("--tutorial", action="store_true", help="the Morvan tutorial's figure style")
    args = parser.parse_args(argv)
    args.logdirs += args.logdir
    if not args.logdirs:
        parser.error("the following arguments are required: LOGDIR")
    needed = rundir.EPISODES_FILE if args.tutorial else rundir.METRICS_FILE
    missing = [d for d in args.logdirs if not os.path.isfile(os.path.join(d, needed))]
    if missing:
        print(f"error: no {needed} in {missing[0]}; expected a tfppo run directory", file=sys.stderr)
        return 2
    labels = [label for label in args.labels.split(",") if label]
    if labels and len(labels) != len(args.logdirs):
        print(f"error: --labels has {len(labels)} labels for {len(args.logdirs)} logdirs", file=sys.stderr)
        return 2
    if args.tutorial:
        print(plot_tutorial_style(args.logdirs, args.out, args.title, labels))
    else:
        print(plot_runs(args.logdirs, args.out, x=args.x, y=args.y, title=args.title, labels=labels))
    return 0


def run() -> None:
    """The `tfppo-plot` console script: `main` on the command line, its result the exit code."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
