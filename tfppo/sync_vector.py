"""--vector_mode=sync: gymnasium's SyncVectorEnv with a step that does only what training reads.

On a collect-bound preset (Hopper: one env, ~0.4 ms a MuJoCo step) gymnasium's per-step work
around the env is a visible share of the loop: `_add_info` batches every key of every env's
info into new arrays each step (Hopper-v5 reports five floats a step), actions go through
`iterate`'s dispatch and observations through `concatenate`'s and a `deepcopy`. The Collector
reads only the action mask from a step's info, and at episode ends the final observation and
the ended episode's info (`episode`, `is_success`). LeanSyncVectorEnv steps the same envs in the
same order with the same SAME_STEP autoreset and returns the same observations, rewards and
flags; its info keeps the keys the Collector reads (KEPT_KEYS) and, on the step an env ends, that
env's `final_obs` and full `final_info` as gymnasium gives them. A reward that is not a real
number (None, a string) is refused, where gymnasium's would store nan or parse it. Everything
else (reset, close, spaces, call, render) is gymnasium's.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import concatenate, iterate

from tfppo.config import ConfigError
from tfppo.observations import MASK_KEY

KEPT_KEYS = (MASK_KEY,)  # The only key of a step's info that training reads (envs.split_observation).

# Spaces whose batched values are arrays with one row per env: iterate gives the rows and
# concatenate stacks them (gymnasium.vector.utils.space_utils).
_ROW_SPACES = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


# A step's reward as envs return it: a Python or NumPy real scalar. Written into the float row as
# it is, None (a step that forgot its reward) would become nan and a string would be parsed.
_REAL = (float, int, np.floating, np.integer, np.bool_)


def _real_reward(env: int, reward: Any):
    """A reward that is not a real scalar: a 0-d real array passes, anything else is refused."""
    if isinstance(reward, np.ndarray) and reward.shape == () and reward.dtype.kind in "biuf":
        return reward
    raise ConfigError(
        f"env {env} returned reward {reward!r} ({type(reward).__name__}); expected a real number"
    )


class LeanSyncVectorEnv(gym.vector.SyncVectorEnv):
    """SyncVectorEnv (SAME_STEP autoreset) whose step passes on only KEPT_KEYS of the per-step info."""

    def __init__(self, env_fns, copy: bool = True, **kwargs):
        super().__init__(env_fns, copy=copy, autoreset_mode=AutoresetMode.SAME_STEP, **kwargs)
        self._row_actions = isinstance(self.single_action_space, _ROW_SPACES)
        self._row_observations = isinstance(self.single_observation_space, _ROW_SPACES)
        # A floating Box: each env's array of the row's shape is written as it arrives (an
        # assignment casts any real input as np.stack's same_kind rule does, at an eighth of its
        # cost); anything else (a list, a wrong shape) goes through np.stack and its checks.
        space = self.single_observation_space
        self._assign_rows = isinstance(space, gym.spaces.Box) and np.issubdtype(space.dtype, np.floating)
        self._row_shape = space.shape

    def step(self, actions: Any):
        per_env = actions if self._row_actions else list(iterate(self.action_space, actions))
        infos: dict[str, Any] = {}
        stack = not self._assign_rows
        for i, env in enumerate(self.envs):
            observation, reward, self._terminations[i], self._truncations[i], info = env.step(per_env[i])
            self._rewards[i] = reward if isinstance(reward, _REAL) else _real_reward(i, reward)
            if self._terminations[i] or self._truncations[i]:
                infos = self._add_info(infos, {"final_obs": observation, "final_info": info}, i)
                observation, info = env.reset()
            self._env_obs[i] = observation
            if not stack:
                if getattr(observation, "shape", None) == self._row_shape:
                    self._observations[i] = observation
                else:
                    stack = True
            kept = {key: info[key] for key in KEPT_KEYS if key in info}
            if kept:
                infos = self._add_info(infos, kept, i)
        if self._row_observations:  # concatenate's Box case, then the copy deepcopy would make
            if stack:
                try:
                    np.stack(self._env_obs, axis=0, out=self._observations)
                except ValueError:
                    raise self._bad_observation() from None
            observations = self._observations.copy() if self.copy else self._observations
        else:
            self._observations = concatenate(self.single_observation_space, self._env_obs, self._observations)
            observations = deepcopy(self._observations) if self.copy else self._observations
        return (
            observations,
            np.copy(self._rewards),
            np.copy(self._terminations),
            np.copy(self._truncations),
            infos,
        )

    def _bad_observation(self) -> ConfigError:
        """The first env whose observation does not stack into the observation space's rows."""
        for i, observation in enumerate(self._env_obs):
            shape = (
                np.shape(observation)
                if isinstance(observation, np.ndarray | list | tuple | float | int)
                else None
            )
            if shape != self._row_shape:
                got = f"shape {shape}" if shape is not None else type(observation).__name__
                return ConfigError(
                    f"env {i} returned an observation of {got}; its observation_space has shape {self._row_shape}"
                )
        return ConfigError(
            f"the envs' observations do not fit the observation_space {self.single_observation_space}"
        )
