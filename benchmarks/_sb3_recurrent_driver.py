r"""Trains one sb3-contrib RecurrentPPO run for benchmarks/speed_vs_sb3.py (presets with recurrent).

Runs under .venv-sb3 with sb3-contrib installed, with benchmarks/_sb3_driver.py's command line,
records and summary (plus sb3_contrib's version):

  .venv-sb3/bin/python benchmarks/_sb3_recurrent_driver.py --env=CartPoleNoVel-v1 --num_envs=8 \
      --seed=0 --total_timesteps=100000 --hyper='{"n_steps": 32, "policy_kwargs": {"lstm_hidden_size": 64}}' \
      --normalize='{"norm_obs": true, "norm_reward": false}' --records=RUN.jsonl --summary=RUN.json

It runs _sb3_driver.main with RecurrentPPO("MlpLstmPolicy", ...) in place of PPO("MlpPolicy",
...) and --hyper's policy_kwargs handed on (activation_fn named by its torch.nn class, "ReLU").
It registers CartPoleNoVel-v1, rl-baselines3-zoo's CartPole without velocities: CartPole-v1
observing only the cart position and the pole angle, the env of tfppo/CartPoleNoVel-v0
(tfppo/memory_envs.py), defined here so that this venv never imports tfppo.
"""

from __future__ import annotations

import json

import _sb3_driver
import gymnasium
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv


class NoVelocity(gymnasium.ObservationWrapper):
    """CartPole's observation without the velocities: indices 0 and 2 (x, theta)."""

    def __init__(self, env: CartPoleEnv):
        super().__init__(env)
        high = np.array([env.x_threshold * 2, env.theta_threshold_radians * 2], np.float32)
        self.observation_space = gymnasium.spaces.Box(-high, high, dtype=np.float32)

    def observation(self, observation):
        return observation[[0, 2]]


gymnasium.register(
    "CartPoleNoVel-v1",
    entry_point=lambda **kwargs: NoVelocity(CartPoleEnv(**kwargs)),
    max_episode_steps=500,  # CartPole-v1's
    reward_threshold=475.0,
)


def main() -> None:
    import sb3_contrib
    import stable_baselines3

    def recurrent_ppo(policy: str, env, **kwargs):
        if policy != "MlpPolicy":
            raise SystemExit(f"error: _sb3_driver.main asked for {policy}, not MlpPolicy")
        return sb3_contrib.RecurrentPPO("MlpLstmPolicy", env, **kwargs)

    # _sb3_driver.main looks it up when it runs: `from stable_baselines3 import PPO`.
    stable_baselines3.PPO = recurrent_ppo
    _sb3_driver.main()
    summary_path = _sb3_driver.parse_args().summary
    with open(summary_path, encoding="utf-8") as f:
        summary = json.load(f)
    with open(summary_path, "w", encoding="utf-8") as f:
        json.dump({**summary, "sb3_contrib": sb3_contrib.__version__}, f, indent=2)


if __name__ == "__main__":
    main()
