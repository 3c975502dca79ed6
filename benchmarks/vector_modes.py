"""How 4 workers should step their envs here: one process, worker threads, or subprocesses.

  python benchmarks/vector_modes.py --env=Pendulum-v1 --num_envs=4 --steps=5000 --repeats=3

The tutorial's DPPO steps each worker's env in a Python thread; tfppo offers gymnasium's
SyncVectorEnv (`--vector_mode=sync`, one process, envs stepped in turn) and AsyncVectorEnv
(`--vector_mode=async`, one subprocess per env). This measures env steps/s of random actions
for the three, without and with an added step latency (`--latency_ms`, a stand-in for an
expensive simulator), repeats alternating. Policy and learning costs are left out: this is the
collection side alone.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gymnasium as gym  # noqa: E402

from tfppo.envs import StepLatency  # noqa: E402


def make(env_id: str, latency_ms: float):
    def thunk():
        env = gym.make(env_id)
        return StepLatency(env, latency_ms / 1000.0) if latency_ms > 0 else env

    return thunk


def vector_rate(mode: str, env_id: str, num_envs: int, steps: int, latency_ms: float) -> float:
    cls = gym.vector.SyncVectorEnv if mode == "sync" else gym.vector.AsyncVectorEnv
    envs = cls([make(env_id, latency_ms)] * num_envs)
    envs.reset(seed=0)
    envs.action_space.seed(0)
    started = time.perf_counter()
    for _ in range(steps // num_envs):
        envs.step(envs.action_space.sample())
    rate = steps / (time.perf_counter() - started)
    envs.close()
    return rate


def thread_rate(env_id: str, num_envs: int, steps: int, latency_ms: float) -> float:
    envs = [make(env_id, latency_ms)() for _ in range(num_envs)]
    for i, env in enumerate(envs):
        env.reset(seed=i)
        env.action_space.seed(i)

    def step(env):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    with concurrent.futures.ThreadPoolExecutor(num_envs) as pool:
        started = time.perf_counter()
        for _ in range(steps // num_envs):  # Every worker steps, then all wait: as in DPPO.
            list(pool.map(step, envs))
        rate = steps / (time.perf_counter() - started)
    return rate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--num_envs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--latency_ms", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    return parser


def main() -> None:
    args = build_parser().parse_args()
    results: dict[tuple[str, float], list[float]] = {}
    for _ in range(args.repeats):
        for latency in (0.0, args.latency_ms):
            steps = args.steps if latency == 0 else max(args.num_envs * 50, int(args.steps / 20))
            for mode in ("sync", "threads", "async"):
                if mode == "threads":
                    rate = thread_rate(args.env, args.num_envs, steps, latency)
                else:
                    rate = vector_rate(mode, args.env, args.num_envs, steps, latency)
                results.setdefault((mode, latency), []).append(rate)
    print(f"Command: `python benchmarks/vector_modes.py {' '.join(sys.argv[1:])}`\n")
    print(f"{args.env}, {args.num_envs} envs, random actions, env steps/s (median of {args.repeats}):\n")
    print("| added latency per step | sync (one process) | worker threads | async (subprocesses) |")
    print("|---|---|---|---|")
    for latency in (0.0, args.latency_ms):
        cells = [f"{np.median(results[(mode, latency)]):.0f}" for mode in ("sync", "threads", "async")]
        print(f"| {latency:g} ms | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
