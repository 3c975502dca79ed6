"""Small deterministic envs for tests, usable as `--env=tests.fake_envs:NAME-v0`."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import register


class RecordingBoxEnv(gym.Env):
    """Box(-1, 1, (2,)) actions; the observation is [t, t, t]; every action received is recorded.

    reward = 1 each step; the episode terminates after `terminate_after` steps if set (else it
    runs until a TimeLimit wrapper truncates it).
    """

    metadata = {"render_modes": []}
    received: list = []

    def __init__(self, terminate_after: int = 0):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.terminate_after = terminate_after
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.full(3, self.t, np.float32), {}

    def step(self, action):
        RecordingBoxEnv.received.append(np.array(action, copy=True))
        self.t += 1
        terminated = bool(self.terminate_after and self.t >= self.terminate_after)
        return np.full(3, self.t, np.float32), 1.0, terminated, False, {}


class NanRewardEnv(gym.Env):
    """Discrete(2); reward NaN at step 5."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.t == 5 else 0.0
        return np.zeros(2, np.float32), reward, False, False, {}


class TextActionEnv(NanRewardEnv):
    """An action space tfppo does not support."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Text(5)


class MaskedChainEnv(gym.Env):
    """Discrete(4) with a mask in info: only actions {t % 4, (t + 1) % 4} are valid at step t.

    reward 1 for action t % 4; episodes of 10 steps (terminated).
    """

    def __init__(self):
        self.observation_space = gym.spaces.Box(0.0, 10.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(4)
        self.t = 0
        self.invalid_taken = 0

    def _mask(self):
        mask = np.zeros(4, bool)
        mask[[self.t % 4, (self.t + 1) % 4]] = True
        return mask

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {"action_mask": self._mask()}

    def step(self, action):
        if not self._mask()[action]:
            self.invalid_taken += 1
            raise AssertionError(f"invalid action {action} at step {self.t}")
        reward = 1.0 if action == self.t % 4 else 0.0
        self.t += 1
        return np.array([self.t], np.float32), reward, self.t >= 10, False, {"action_mask": self._mask()}


class MaskedChainDictEnv(MaskedChainEnv):
    """MaskedChainEnv with the mask in a Dict observation instead of info."""

    def __init__(self):
        super().__init__()
        inner = self.observation_space
        self.observation_space = gym.spaces.Dict(
            {"position": inner, "action_mask": gym.spaces.MultiBinary(4)}
        )

    def _wrap(self, observation, info):
        return {"position": observation, "action_mask": info.pop("action_mask").astype(np.int8)}, info

    def reset(self, *, seed=None, options=None):
        return self._wrap(*super().reset(seed=seed, options=options))

    def step(self, action):
        observation, reward, terminated, truncated, info = super().step(action)
        observation, info = self._wrap(observation, info)
        return observation, reward, terminated, truncated, info


class NanFinalObservationEnv(NanRewardEnv):
    """Episodes of 4 steps whose last observation (the one that ends the episode) is NaN."""

    def step(self, action):
        self.t += 1
        done = self.t == 4
        observation = np.full(2, np.nan if done else 0.0, np.float32)
        return observation, 1.0, done, False, {}


class UnboundedActionEnv(NanRewardEnv):
    """A Box action space with infinite bounds (--squash_mean cannot scale to it)."""

    def __init__(self):
        super().__init__()
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)


register("RecordingBox-v0", entry_point=RecordingBoxEnv, max_episode_steps=3)
register("NanFinalObservation-v0", entry_point=NanFinalObservationEnv, max_episode_steps=50)
register("UnboundedAction-v0", entry_point=UnboundedActionEnv, max_episode_steps=20)
register("NanReward-v0", entry_point=NanRewardEnv, max_episode_steps=50)
register("TextAction-v0", entry_point=TextActionEnv)
register("MaskedChain-v0", entry_point=MaskedChainEnv)
register("MaskedChainDict-v0", entry_point=MaskedChainDictEnv)
