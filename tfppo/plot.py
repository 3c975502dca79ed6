"""Learning curves from metrics.jsonl: `python -m tfppo.plot LOGDIR [LOGDIR ...] [--out=PNG]`.

Runs whose logdirs share a label (the part before `_seed`/`-seed`, or given with --labels) are
drawn as one mean curve with a min-max band over seeds.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence

import numpy as np


def read_metrics(logdir: str) -> list[dict]:
    path = os.path.join(logdir, "metrics.jsonl")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _label(logdir: str) -> str:
    name = os.path.basename(os.path.normpath(logdir))
    return re.split(r"[_-]seed", name)[0]


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
        (line,) = ax.plot(grid, curves.mean(0), label=f"{label} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(grid, curves.min(0), curves.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: Sequence[str]) -> int:
    out, x, logdirs = "learning_curves.png", "global_step", []
    for arg in argv:
        if arg.startswith("--out="):
            out = arg.split("=", 1)[1]
        elif arg.startswith("--x="):
            x = arg.split("=", 1)[1]
        else:
            logdirs.append(arg)
    missing = [d for d in logdirs if not os.path.isfile(os.path.join(d, "metrics.jsonl"))]
    if not logdirs or missing:
        print(
            f"error: no metrics.jsonl in {missing or 'any logdir'}; usage: python -m tfppo.plot LOGDIR [LOGDIR ...] [--out=PNG] [--x=global_step|episodes]",
            file=sys.stderr,
        )
        return 2
    print(plot_runs(logdirs, out, x=x))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
