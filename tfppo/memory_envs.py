"""Partially observed classic-control envs, to train and test recurrent policies (--recurrent).

Importing this module (tfppo.envs does) registers two gymnasium ids. They are the same as
rl-baselines3-zoo's CartPoleNoVel-v1 and PendulumNoVel-v1: the velocities are removed from
the observation, so a feed-forward policy sees where the pole is but not where it is going.

tfppo/CartPoleNoVel-v0 (500 steps): CartPole-v1 observing (cart position, pole angle).
tfppo/PendulumNoVel-v0 (200 steps): Pendulum-v1 observing (cos theta, sin theta).

Dynamics, rewards, termination and seeding are gymnasium's own.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control import CartPoleEnv, PendulumEnv
from gymnasium.envs.registration import register


class CartPoleNoVelEnv(CartPoleEnv):
    """CartPole observing only the cart position and the pole angle."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        high = np.array([self.x_threshold * 2, self.theta_threshold_radians * 2], np.float32)
        self.observation_space = spaces.Box(-high, high, dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        observation, info = super().reset(seed=seed, options=options)
        return observation[[0, 2]], info

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)
        return observation[[0, 2]], reward, terminated, truncated, info


class PendulumNoVelEnv(PendulumEnv):
    """Pendulum observing only cos and sin of the angle, not the angular velocity."""

    def __init__(self, render_mode: str | None = None, g: float = 10.0):
        super().__init__(render_mode=render_mode, g=g)
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        observation, info = super().reset(seed=seed, options=options)
        return observation[:2], info

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)
        return observation[:2], reward, terminated, truncated, info


def _register(env_id: str, entry_point: str, max_episode_steps: int, threshold: float | None) -> None:
    if env_id not in gym.registry:
        register(
            id=env_id,
            entry_point=f"tfppo.memory_envs:{entry_point}",
            max_episode_steps=max_episode_steps,
            reward_threshold=threshold,
        )


_register("tfppo/CartPoleNoVel-v0", "CartPoleNoVelEnv", 500, 475.0)
_register("tfppo/PendulumNoVel-v0", "PendulumNoVelEnv", 200, None)
