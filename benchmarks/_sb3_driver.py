r"""Trains one Stable-Baselines3 PPO run for benchmarks/speed_vs_sb3.py.

Runs under .venv-sb3 (never under tfppo's venv):

  .venv-sb3/bin/python benchmarks/_sb3_driver.py --env=CartPole-v1 --num_envs=8 --seed=0 \
      --total_timesteps=100000 --hyper='{"n_steps": 32, "learning_rate": {"linear": 0.001}}' \
      --records=RUN.jsonl --summary=RUN.json

--hyper holds PPO keyword arguments as JSON; {"linear": x} stands for a schedule decaying
linearly from x to 0 over the run (the zoo's "lin_x"), and policy_kwargs' activation_fn is a
torch.nn class name ("ReLU"). --normalize, when given, holds
VecNormalize keyword arguments as JSON: the vector env is wrapped in VecNormalize (observation
and reward normalisation; the Monitor wrappers below it still see raw returns). After every
update (rollout + training epochs) one line goes to --records: global_step, episodes,
episode_return_mean (mean undiscounted return of the last 100 episodes, from the Monitor
wrappers) and wall_s (seconds since just before the vector env and the model were built).
--atari: the env is SB3's make_atari_env (AtariWrapper: CleanRL's ppo_atari wrappers) with
VecFrameStack(4), and the policy CnnPolicy (the Nature CNN shared by actor and critic).
--summary gets construct_s, total_s (construction + learn), steps and versions. Imports are not
timed, including the ones torch makes lazily when its first optimizer is created.
"""

from __future__ import annotations

import argparse
import json
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True)
    parser.add_argument("--num_envs", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--total_timesteps", type=int, required=True)
    parser.add_argument("--hyper", required=True, help="PPO keyword arguments as JSON")
    parser.add_argument("--normalize", default="", help="VecNormalize keyword arguments as JSON")
    parser.add_argument("--atari", action="store_true", help="make_atari_env + VecFrameStack(4) + CnnPolicy")
    parser.add_argument("--records", required=True, help="jsonl written after every update")
    parser.add_argument("--summary", required=True, help="json written at the end")
    return parser.parse_args()


def linear(initial: float):
    """SB3 calls schedules with progress_remaining, which goes from 1 to 0."""
    return lambda progress_remaining: progress_remaining * initial


def ppo_kwargs(hyper_json: str) -> dict:
    kwargs = json.loads(hyper_json)
    policy_kwargs = kwargs.get("policy_kwargs", {})
    if "activation_fn" in policy_kwargs:  # named, since JSON cannot hold a torch class
        import torch

        name = policy_kwargs["activation_fn"]
        activation = getattr(torch.nn, str(name), None)
        if not isinstance(activation, type):
            raise SystemExit(
                f"error: --hyper policy_kwargs.activation_fn={name!r}: expected a torch.nn class name such as 'ReLU'"
            )
        policy_kwargs["activation_fn"] = activation
    for name, value in kwargs.items():
        if isinstance(value, dict) and name != "policy_kwargs":
            if set(value) != {"linear"}:
                raise SystemExit(f"error: --hyper {name}={value}: the only schedule is {{'linear': x}}")
            kwargs[name] = linear(float(value["linear"]))
    return kwargs


def make_callback(records_file, started: float):
    """A callback that writes one record after every update, measured the way tfppo measures."""
    from stable_baselines3.common.callbacks import BaseCallback

    class RecordCallback(BaseCallback):
        def __init__(self):
            super().__init__()
            self.episodes = 0

        def _on_step(self) -> bool:
            self.episodes += sum(1 for info in self.locals["infos"] if "episode" in info)
            return True

        def _record(self) -> None:
            returns = [info["r"] for info in self.model.ep_info_buffer]  # the last 100 episodes
            record = {
                "global_step": int(self.model.num_timesteps),
                "episodes": self.episodes,
                "episode_return_mean": sum(returns) / len(returns) if returns else None,
                "wall_s": time.perf_counter() - started,
            }
            records_file.write(json.dumps(record) + "\n")

        def _on_rollout_start(self) -> None:
            if self.model.num_timesteps > 0:  # the previous rollout and its update are done
                self._record()

        def _on_training_end(self) -> None:
            self._record()

    return RecordCallback()


def main() -> None:
    args = parse_args()
    kwargs = ppo_kwargs(args.hyper)
    import gymnasium
    import stable_baselines3
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    if args.atari:
        import ale_py

        gymnasium.register_envs(ale_py)

    torch.set_num_threads(1)
    # The first torch optimizer imports torch._dynamo and sympy (~800 modules, ~1.8 s here):
    # library import time, so it happens before the clock starts.
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())
    with open(args.records, "w", encoding="utf-8") as records_file:
        started = time.perf_counter()
        if args.atari:
            env = VecFrameStack(make_atari_env(args.env, n_envs=args.num_envs, seed=args.seed), n_stack=4)
        else:
            env = make_vec_env(args.env, n_envs=args.num_envs, seed=args.seed)
        if args.normalize:
            env = VecNormalize(env, **json.loads(args.normalize))
        policy = "CnnPolicy" if args.atari else "MlpPolicy"
        model = PPO(policy, env, seed=args.seed, device="cpu", verbose=0, **kwargs)
        constructed = time.perf_counter()
        model.learn(args.total_timesteps, callback=make_callback(records_file, started))
        finished = time.perf_counter()
    env.close()
    summary = {
        "steps": int(model.num_timesteps),
        "construct_s": constructed - started,
        "total_s": finished - started,
        "stable_baselines3": stable_baselines3.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gymnasium": gymnasium.__version__,
    }
    with open(args.summary, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
