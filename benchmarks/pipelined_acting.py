"""Acting on half of the envs while the other half steps: what it would save in the env loop.

  python benchmarks/pipelined_acting.py --preset=atari_breakout --steps=128 --rounds=4

A measurement of a lever, not a feature: the preset's networks (as built at the start of a run)
and its compiled policy (`tfppo.policy.Policy`, the path image presets act through) act for
the preset's envs in two ways, alternating round by round in one process:

- sequential: one `gymnasium.vector.SyncVectorEnv` of all the envs; each vector step calls the
  policy on every observation, then steps every env (what tfppo's env loop does);
- pipelined: two vector envs of half the envs each; the policy call for one half runs on a worker
  thread while the main thread steps the other half (TensorFlow runs its ops without the GIL).

Each round prints the seconds per `--steps` vector steps of both, then the envs alone on random
actions and the policy alone on a full and a half batch. Actions are sampled, so the two ways
see different episodes: read the times, not the returns. A recurrent preset's policy acts from
its initial state at every call (the cost of a call, not an episode's actions); masked and gSDE
presets are refused.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="atari_breakout", help="experiments/PRESET.flags")
    parser.add_argument("--steps", type=int, default=128, help="vector steps per timing")
    parser.add_argument("--rounds", type=int, default=4, help="sequential / pipelined pairs")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.rounds < 1:
        fail(f"--steps={args.steps} and --rounds={args.rounds} must be >= 1")
    flagfile = os.path.join(REPO, "experiments", f"{args.preset}.flags")
    if not os.path.isfile(flagfile):
        fail(f"--preset={args.preset}: no experiments/{args.preset}.flags")
    sys.path.insert(0, REPO)
    import gymnasium as gym
    import tensorflow as tf

    from tfppo import envs, networks, trainer
    from tfppo.flags import config_from_flagfile
    from tfppo.policy import Policy

    config = config_from_flagfile(flagfile)
    if config.num_envs < 2:
        fail(f"--preset={args.preset} runs {config.num_envs} env; pipelining needs at least 2")
    trainer.configure_threads(config)
    spec = envs.probe_spec(config.env)
    if spec.has_mask:
        fail(f"--preset={args.preset} acts with action masks; this measurement takes unmasked presets")
    if config.sigma == "gsde":  # One exploration matrix per env: a policy acts for a fixed batch.
        fail(f"--preset={args.preset} explores with gSDE; this measurement takes other presets")
    tf.keras.utils.set_random_seed(0)
    actor, critic = networks.build(spec, config)
    policy = Policy(actor, critic, spec, seed=1)
    kwargs = json.loads(config.env_kwargs) if config.env_kwargs else {}

    def vector(count: int, seed: int):
        built = gym.vector.SyncVectorEnv(
            [lambda: envs.make_env(config.env, **kwargs) for _ in range(count)],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        return built, built.reset(seed=seed)[0]

    def act(observation):
        return envs.env_action(spec.action, policy.step(observation)["action"])

    def sequential(whole, observation):
        start = time.perf_counter()
        for _ in range(args.steps):
            observation = whole.step(act(observation))[0]
        return time.perf_counter() - start, observation

    pool = concurrent.futures.ThreadPoolExecutor(1)

    def pipelined(first, first_obs, second, second_obs):
        start = time.perf_counter()
        first_action = act(first_obs)
        for _ in range(args.steps):
            pending = pool.submit(act, second_obs)
            first_obs = first.step(first_action)[0]
            second_action = pending.result()
            pending = pool.submit(act, first_obs)
            second_obs = second.step(second_action)[0]
            first_action = pending.result()
        return time.perf_counter() - start, first_obs, second_obs

    half = config.num_envs // 2
    whole, whole_obs = vector(config.num_envs, 0)
    first, first_obs = vector(half, 0)
    second, second_obs = vector(config.num_envs - half, half)
    sequential(whole, whole_obs)  # traces the policy for both batch sizes
    pipelined(first, first_obs, second, second_obs)
    print(f"{args.preset}: {config.num_envs} envs, {args.steps} vector steps per timing")
    for round_ in range(args.rounds):
        seq, whole_obs = sequential(whole, whole_obs)
        pipe, first_obs, second_obs = pipelined(first, first_obs, second, second_obs)
        print(
            f"round {round_ + 1}: sequential {seq:.3f} s, pipelined {pipe:.3f} s ({seq / pipe:.2f}x)",
            flush=True,
        )
    start = time.perf_counter()
    for _ in range(args.steps):
        whole.step(whole.action_space.sample())
    print(f"the envs alone, random actions: {time.perf_counter() - start:.3f} s")
    timings = []
    for observation in (whole_obs, first_obs):
        start = time.perf_counter()
        for _ in range(args.steps):
            policy.step(observation)
        timings.append(f"{time.perf_counter() - start:.3f} s for {len(observation)}")
    print(f"the policy alone: {', '.join(timings)} observations a call")
    pool.shutdown()
    for env in (whole, first, second):
        env.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
