r"""The env's own step rate: random actions in a gymnasium SyncVectorEnv, for benchmarks/speed_vs_sb3.py.

Runs under any of the benchmark's venvs (gymnasium 0.29 in .venv-cleanrl, 1.x elsewhere), so
each library's training rate can be set against the env it actually steps:

  .venv/bin/python benchmarks/_random_policy.py --env=Hopper-v5 --num_envs=1 --seed=0
  .venv-envpool/bin/python benchmarks/_random_policy.py --env=Hopper-v5 --num_envs=1 --vector=envpool

Prints one JSON line: env, num_envs, rate (env steps/s over --seconds after a warm-up of 100
vector steps), gymnasium version. The vector env resets a finished env within the same step,
as tfppo's env loop and gymnasium 0.29's SyncVectorEnv (CleanRL's) do.
"""

from __future__ import annotations

import argparse
import json
import time


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True)
    parser.add_argument("--num_envs", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--vector",
        choices=("gymnasium", "envpool"),
        default="gymnasium",
        help="envpool: EnvPool's C++ batched env of the same id (in a venv that has envpool)",
    )
    return parser.parse_args(argv)


def make_vector_env(env_id: str, num_envs: int):
    import gymnasium as gym

    factories = [lambda: gym.make(env_id)] * num_envs
    try:
        from gymnasium.vector import AutoresetMode  # gymnasium >= 1.1
    except ImportError:  # gymnasium 0.29: SyncVectorEnv always resets within the step
        return gym.vector.SyncVectorEnv(factories)
    return gym.vector.SyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)


def measure_envpool(env_id: str, num_envs: int, seed: int, seconds: float) -> float:
    """EnvPool's rate; its action space is one env's, so 100 batches of actions are drawn before
    the clock starts and cycled (the gymnasium measurement samples inside the loop: this one
    favours EnvPool slightly)."""
    import envpool
    import numpy as np

    env = envpool.make_gymnasium(env_id, num_envs=num_envs, seed=seed)
    env.reset()
    env.action_space.seed(seed)
    actions = [np.stack([env.action_space.sample() for _ in range(num_envs)]) for _ in range(100)]
    for action in actions:  # warm-up
        env.step(action)
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for action in actions:
            env.step(action)
        steps += 100 * num_envs
    rate = steps / (time.perf_counter() - started)
    env.close()
    return rate


def measure(env_id: str, num_envs: int, seed: int, seconds: float) -> float:
    env = make_vector_env(env_id, num_envs)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(100):  # warm-up
        env.step(env.action_space.sample())
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(100):
            env.step(env.action_space.sample())
        steps += 100 * num_envs
    rate = steps / (time.perf_counter() - started)
    env.close()
    return rate


def main() -> None:
    args = parse_args()
    import gymnasium

    how = measure_envpool if args.vector == "envpool" else measure
    rate = how(args.env, args.num_envs, args.seed, args.seconds)
    record = {"env": args.env, "num_envs": args.num_envs, "rate": rate, "gymnasium": gymnasium.__version__}
    if args.vector == "envpool":
        import envpool

        record["envpool"] = envpool.__version__
    print(json.dumps(record))


if __name__ == "__main__":
    main()
