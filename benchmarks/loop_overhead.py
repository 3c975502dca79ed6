r"""tfppo's own cost per env step: a preset trained on a free env with the preset env's spaces.

  .venv/bin/python benchmarks/loop_overhead.py --preset=hopper --steps=10240
  .venv/bin/python benchmarks/loop_overhead.py --preset=hopper --steps=10240 --trees=/tmp/old,.

The free env returns a fixed observation (plus a small drift, so normalisation has work to do)
and reward 1, and ends its episodes at --episode_length, at a cost of ~1-2 us a step: what the
env loop then spends (the collect time of tfppo's summary, per env step) is tfppo's own work,
acting, normalisation and bookkeeping, plus the vector env's own step (gymnasium's
SyncVectorEnv, stepped through tfppo.sync_vector). Set it against the real env's
random-policy step time (benchmarks/_random_policy.py) to see how much of a collect-bound
preset's time is ours. `--trees` alternates several tfppo checkouts (each run in its own
process, `--repeats` rounds) so a change is measured against its parent on the same machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_free_env(observation_space, action_space, episode_length: int):
    """A gymnasium env class with these spaces and almost no cost per step."""
    import gymnasium as gym
    import numpy as np

    class Free(gym.Env):
        def __init__(self):
            self.observation_space, self.action_space = observation_space, action_space
            self.base = (
                observation_space.sample() if not isinstance(observation_space, gym.spaces.Box) else None
            )
            if self.base is None:
                low = np.nan_to_num(observation_space.low, neginf=-1.0, posinf=1.0)
                high = np.nan_to_num(observation_space.high, neginf=-1.0, posinf=1.0)
                self.base = ((low + high) / 2).astype(observation_space.dtype)
            self.t = 0

        def _observation(self):
            if (
                isinstance(self.observation_space, gym.spaces.Box)
                and self.observation_space.dtype.kind == "f"
            ):
                return self.base + np.asarray(0.001 * (self.t % 100), self.observation_space.dtype)
            return self.base

        def reset(self, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self._observation(), {}

        def step(self, action):
            self.t += 1
            return self._observation(), 1.0, False, self.t >= episode_length, {}

    return Free


def measure(preset: str, steps: int, episode_length: int, extra: list) -> dict:
    """Trains the preset on its free env in this process; returns collect us per env step."""
    import gymnasium as gym

    sys.path.insert(0, os.getcwd())
    import tfppo
    from tfppo.flags import config_from_args

    config = config_from_args(
        [f"--flagfile={os.path.join(os.getcwd(), 'experiments', preset + '.flags')}", *extra]
    )
    probe = gym.make(config.env)
    env = make_free_env(probe.observation_space, probe.action_space, episode_length)
    probe.close()
    with tempfile.TemporaryDirectory() as logdir:
        config = dataclasses.replace(
            config, total_timesteps=steps, eval_episodes=0, logdir=os.path.join(logdir, "run"), max_episodes=0
        )
        tfppo.train(config, env=env)
        with open(os.path.join(logdir, "run", "summary.json"), encoding="utf-8") as f:
            summary = json.load(f)
    collect_us = summary["wall_s"] * summary["collect_fraction"] / summary["global_step"] * 1e6
    return {
        "preset": preset,
        "tree": os.getcwd(),
        "steps": summary["global_step"],
        "collect_us": collect_us,
        "sps": summary["sps"],
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="hopper")
    parser.add_argument("--steps", type=int, default=10240)
    parser.add_argument("--episode_length", type=int, default=1000)
    parser.add_argument(
        "--trees", default="", help="comma-separated tfppo checkouts to alternate (default: this one)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="extra train flags, after --")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.child:
        print(json.dumps(measure(args.preset, args.steps, args.episode_length, args.extra)))
        return
    trees = [os.path.abspath(t) for t in (args.trees.split(",") if args.trees else [REPO])]
    for tree in trees:
        if not os.path.isfile(os.path.join(tree, "experiments", f"{args.preset}.flags")):
            sys.exit(f"error: no {tree}/experiments/{args.preset}.flags")
    results = {tree: [] for tree in trees}
    for _ in range(args.repeats):
        for tree in trees:  # alternating, so a drifting machine load falls on every tree alike
            command = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                f"--preset={args.preset}",
                f"--steps={args.steps}",
                f"--episode_length={args.episode_length}",
                "--",
                *args.extra,
            ]
            env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="3")
            out = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                sys.exit(f"error: the run in {tree} failed: {out.stderr.strip().splitlines()[-1:]}")
            results[tree].append(json.loads(out.stdout.strip().splitlines()[-1])["collect_us"])
    print(f"{args.preset} on a free env with its spaces, {args.steps} env steps, {args.repeats} rounds:")
    print("| tree | collect, us per env step (per round) | median |")
    print("|---|---|---|")
    for tree, values in results.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {tree} | {rounds} | {statistics.median(values):.0f} |")


if __name__ == "__main__":
    main()
