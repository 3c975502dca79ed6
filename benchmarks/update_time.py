"""The compiled update alone: milliseconds per update of a preset on one fixed batch.

  python benchmarks/update_time.py --preset=pendulum --updates=50
  python benchmarks/update_time.py --preset=cartpole --updates=300 --trees=/tmp/parent,. --rounds=4

No env loop runs around the update, so a change to the update is not hidden by the env's noise
(on a shared VM the env loop's time moves 10-20% between neighbouring runs). The batch has the
preset's shape (num_envs x num_steps rows) and its env's spaces (probed from the env): random
observations, advantages and returns, with the actions and behaviour parameters of the preset's
initial policy. After one update (tracing), `--updates` more are timed. With `--trees`, each
(round, tree) is its own process running that tree's tfppo, the trees alternating round by
round; one line per run, then the median per tree. Vector observations only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def measure(tree: str, preset: str, updates: int) -> float:
    """ms per compiled update of `preset`, with the tfppo of `tree` (this process imports it)."""
    sys.path.insert(0, tree)
    import numpy as np
    import tensorflow as tf

    from tfppo import envs, networks, trainer
    from tfppo.flags import config_from_flagfile
    from tfppo.learner import Learner
    from tfppo.policy import Policy

    config = config_from_flagfile(os.path.join(tree, "experiments", f"{preset}.flags"))
    trainer.configure_threads(config)
    spec = envs.probe_spec(config.env)
    if len(spec.observation_shape) != 1 or np.dtype(spec.observation_dtype) != np.float32:
        fail(
            f"--preset={preset} observes {spec.observation_shape} {spec.observation_dtype}; "
            "update_time.py takes vector (float32) observations"
        )
    tf.keras.utils.set_random_seed(0)
    actor, critic = networks.build(spec, config)
    policy, learner = Policy(actor, critic, spec, seed=1), Learner(actor, critic, spec, config)
    rng = np.random.default_rng(0)
    rows = config.batch_size
    observation = rng.normal(size=(rows,) + spec.observation_shape).astype(np.float32)
    acted = policy.step(observation)
    batch = {
        "observation": observation,
        "action": acted["action"],
        "behavior_value": acted["value"],
        "advantage": rng.normal(size=rows).astype(np.float32),
        "return": rng.normal(size=rows).astype(np.float32),
        **{f"behavior_{key}": acted[key] for key in spec.action.param_dims()},
    }
    learner.update(batch, 0.0)  # traces
    start = time.perf_counter()
    for i in range(updates):
        learner.update(batch, i / updates)
    return (time.perf_counter() - start) / updates * 1000.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="cartpole", help="experiments/PRESET.flags")
    parser.add_argument("--updates", type=int, default=100, help="timed updates per run (after the first)")
    parser.add_argument(
        "--trees", default="", help="comma-separated source trees to alternate (default: this one)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per tree with --trees")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.updates < 1 or args.rounds < 1:
        parser.error(f"--updates={args.updates} and --rounds={args.rounds} must be >= 1")
    trees = [os.path.abspath(tree) for tree in args.trees.split(",")] if args.trees else [REPO]
    for tree in trees:
        if not os.path.isfile(os.path.join(tree, "experiments", f"{args.preset}.flags")):
            parser.error(f"--preset={args.preset}: {tree} has no experiments/{args.preset}.flags")
    if not args.trees:
        ms = measure(REPO, args.preset, args.updates)
        print(f"{ms:.2f} ms per update ({args.preset}, {args.updates} updates)")
        return 0
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    times = {tree: [] for tree in trees}
    for round_ in range(args.rounds):
        for tree in trees:
            code = f"import sys; sys.path.insert(0, {REPO!r}); from benchmarks.update_time import measure; "
            code += f"print(measure({tree!r}, {args.preset!r}, {args.updates}))"
            result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            if result.returncode != 0:
                fail(f"the run in {tree} failed: {(result.stderr.strip().splitlines() or ['no output'])[-1]}")
            times[tree].append(float(result.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} {tree}: {times[tree][-1]:.2f} ms per update", flush=True)
    for tree in trees:
        print(f"median {tree}: {statistics.median(times[tree]):.2f} ms per update ({args.preset})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
