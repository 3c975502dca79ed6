"""Where one training run spends its time: construction, env loop, update, logging, checkpoints.

  python benchmarks/time_breakdown.py --preset=cartpole
  python benchmarks/time_breakdown.py --preset=pendulum --seed=1 -- --num_envs=8

Runs `experiments/PRESET.flags` once in this process (evaluation off, a temporary logdir),
timing the phases of tfppo.trainer.Trainer with wrappers around its methods, and prints a
Markdown table: seconds, share of the training loop and milliseconds per update. The first
update is its own row: it traces and optimises the compiled update (a one-off cost). The
training loop is what the speed benchmark times; end-of-run work (final checkpoint, SavedModel,
plot) is shown apart.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# Phases: (label, class path, method). Nested phases (the policy inside the env loop) are
# reported beside their parent, not subtracted from it.
PHASES = (
    ("env loop (collect)", "tfppo.rollout.Collector", "collect"),
    ("  of which: acting (NumPy policy)", "tfppo.numpy_policy.NumpyPolicy", "step"),
    ("GAE and batch", "tfppo.rollout.Rollout", "advantages"),
    ("compiled update", "tfppo.learner.Learner", "update"),
    ("policy sync", "tfppo.numpy_policy.NumpyPolicy", "sync"),
    ("logging (TensorBoard, jsonl)", "tfppo.metrics.MetricsLogger", "write"),
    ("checkpoints", "tfppo.trainer.Trainer", "save"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="cartpole", help="a flagfile name in experiments/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("extra", nargs="*", help="extra train flags, after --")
    return parser


def _resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def instrument(times: dict, counts: collections.Counter, firsts: dict) -> None:
    """Wraps each phase's method to add its wall time to times[label]."""
    for label, class_path, method in PHASES:
        cls = _resolve(class_path)
        original = getattr(cls, method)

        def timed(*args, _original=original, _label=label, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                if counts[_label] == 0:
                    firsts[_label] = elapsed
                times[_label] += elapsed
                counts[_label] += 1

        setattr(cls, method, functools.wraps(original)(timed))


def measure(preset: str, seed: int, extra: list) -> dict:
    """Trains once; returns {"rows": [(label, seconds, calls)], "loop_s", "construction_s", ...}."""
    from tfppo import trainer as trainer_lib  # noqa: PLC0415
    from tfppo.flags import config_from_args  # noqa: PLC0415

    flagfile = os.path.join(REPO, "experiments", f"{preset}.flags")
    if not os.path.isfile(flagfile):
        raise SystemExit(f"error: no flagfile {flagfile}; --preset names a file in experiments/")
    config = config_from_args([f"--flagfile={flagfile}", f"--seed={seed}", "--eval_episodes=0", *extra])
    times, counts, firsts = collections.defaultdict(float), collections.Counter(), {}
    instrument(times, counts, firsts)
    with tempfile.TemporaryDirectory() as logdir:
        started = time.perf_counter()
        trainer = trainer_lib.Trainer(config, os.path.join(logdir, "run"))
        constructed = time.perf_counter()
        finish = trainer._finish
        loop_end = {}

        def mark_finish(*args, **kwargs):
            loop_end["t"] = time.perf_counter()
            return finish(*args, **kwargs)

        trainer._finish = mark_finish
        summary = trainer.train()
        ended = time.perf_counter()
    # The loop ends where the end-of-run work starts (after the final checkpoint).
    loop_s = loop_end["t"] - constructed
    rows = []
    update_label = "compiled update"
    for label, _, _ in PHASES:
        if label == update_label and counts[label]:
            rows.append(("first update (tracing, graph optimisation)", firsts[label], 1))
            rows.append((f"{update_label}, later updates", times[label] - firsts[label], counts[label] - 1))
        else:
            rows.append((label, times[label], counts[label]))
    return {
        "rows": rows,
        "construction_s": constructed - started,
        "loop_s": loop_s,
        "end_s": ended - loop_end["t"],
        "updates": summary["updates"],
        "env_steps": summary["global_step"],
    }


def table(result: dict) -> str:
    loop, updates = result["loop_s"], max(result["updates"], 1)
    lines = [
        f"{result['env_steps']} env steps, {result['updates']} updates; construction "
        f"{result['construction_s']:.2f} s, training loop {loop:.2f} s "
        f"({result['env_steps'] / loop:.0f} env steps/s), end-of-run work {result['end_s']:.2f} s",
        "",
        "| phase | seconds | share of the loop | ms per update | calls |",
        "|---|---|---|---|---|",
    ]
    counted = 0.0
    for label, seconds, calls in result["rows"]:
        if not label.startswith("  "):
            counted += seconds
        per_update = "-" if label.startswith("first update") else f"{1000 * seconds / updates:.2f}"
        lines.append(f"| {label} | {seconds:.3f} | {seconds / loop:.0%} | {per_update} | {calls} |")
    lines.append(
        f"| other (loop bookkeeping, stats) | {loop - counted:.3f} | {(loop - counted) / loop:.0%} | "
        f"{1000 * (loop - counted) / updates:.2f} | |"
    )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    print(table(measure(args.preset, args.seed, args.extra)))


if __name__ == "__main__":
    main()
