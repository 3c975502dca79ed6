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


class ImageSideEnv(gym.Env):
    """An image with one lit column, in its left or right half; action 0 (left) or 1 (right)
    earns 1 when it names that half. 8 steps per episode: optimum 8, random 4.

    uint8 images of `shape` (HWC, or CHW with channels_first); bool images with dtype="bool".
    """

    metadata = {"render_modes": []}

    def __init__(self, shape=(10, 10, 2), channels_first=False, dtype="uint8"):
        self.shape, self.channels_first, self.dtype = tuple(shape), channels_first, np.dtype(dtype)
        stored = (shape[2], shape[0], shape[1]) if channels_first else self.shape
        high = 1 if self.dtype == bool else 255
        self.observation_space = gym.spaces.Box(0, high, stored, self.dtype)
        self.action_space = gym.spaces.Discrete(2)
        self.side = 0

    def _observation(self):
        height, width, channels = self.shape
        image = np.zeros(self.shape, self.dtype)
        column = self.np_random.integers(0, width // 2) + self.side * (width // 2)
        image[:, column, :] = True if self.dtype == bool else 255
        return np.transpose(image, (2, 0, 1)) if self.channels_first else image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.side = int(self.np_random.integers(0, 2))
        return self._observation(), {}

    def step(self, action):
        reward = float(int(action) == self.side)
        self.side = int(self.np_random.integers(0, 2))
        return self._observation(), reward, False, False, {}


class DictObservationEnv(gym.Env):
    """Dict observation: a 6x6x1 uint8 image, a float vector, a Discrete goal and the action
    mask. The goal (one of 3 actions) is given by the Discrete key; reward 1 for choosing it.
    The mask allows the goal and one other action. 8 steps per episode: optimum 8."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Dict(
            {
                "image": gym.spaces.Box(0, 255, (6, 6, 1), np.uint8),
                "position": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
                "goal": gym.spaces.Discrete(3),
                "action_mask": gym.spaces.MultiBinary(3),
            }
        )
        self.action_space = gym.spaces.Discrete(3)
        self.goal = 0

    def _observation(self):
        mask = np.zeros(3, np.int8)
        mask[self.goal] = 1
        mask[(self.goal + 1 + self.np_random.integers(0, 2)) % 3] = 1
        image = self.np_random.integers(0, 256, (6, 6, 1)).astype(np.uint8)
        position = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        return {"image": image, "position": position, "goal": self.goal, "action_mask": mask}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.goal = int(self.np_random.integers(0, 3))
        return self._observation(), {}

    def step(self, action):
        reward = float(int(action) == self.goal)
        self.goal = int(self.np_random.integers(0, 3))
        return self._observation(), reward, False, False, {}


class TupleObservationEnv(gym.Env):
    """Tuple(Discrete(4, start=1), Box(2)) observation; reward 1 for the action equal to the
    Discrete part minus 1. 8 steps per episode: optimum 8."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Tuple(
            (gym.spaces.Discrete(4, start=1), gym.spaces.Box(-1.0, 1.0, (2,), np.float32))
        )
        self.action_space = gym.spaces.Discrete(4)
        self.target = 0

    def _observation(self):
        return (self.target + 1, self.np_random.uniform(-1, 1, 2).astype(np.float32))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.target = int(self.np_random.integers(0, 4))
        return self._observation(), {}

    def step(self, action):
        reward = float(int(action) == self.target)
        self.target = int(self.np_random.integers(0, 4))
        return self._observation(), reward, False, False, {}


class BitsEnv(gym.Env):
    """MultiBinary(4) observation and actions: reward = the number of action bits equal to
    the observed bits, over 4. 8 steps per episode: optimum 8, random 4."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.MultiBinary(4)
        self.action_space = gym.spaces.MultiBinary(4)
        self.bits = np.zeros(4, np.int8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.bits = self.np_random.integers(0, 2, 4).astype(np.int8)
        return self.bits.copy(), {}

    def step(self, action):
        reward = float(np.mean(np.asarray(action) == self.bits))
        self.bits = self.np_random.integers(0, 2, 4).astype(np.int8)
        return self.bits.copy(), reward, False, False, {}


class TextObservationEnv(gym.Env):
    """A Text observation space: no encoder reads it."""

    metadata = {"render_modes": []}

    def __init__(self):
        self.observation_space = gym.spaces.Text(8)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "a", {}

    def step(self, action):
        return "a", 0.0, True, False, {}


register("RecordingBox-v0", entry_point=RecordingBoxEnv, max_episode_steps=3)
register("NanFinalObservation-v0", entry_point=NanFinalObservationEnv, max_episode_steps=50)
register("UnboundedAction-v0", entry_point=UnboundedActionEnv, max_episode_steps=20)
register("NanReward-v0", entry_point=NanRewardEnv, max_episode_steps=50)
register("TextAction-v0", entry_point=TextActionEnv)
register("MaskedChain-v0", entry_point=MaskedChainEnv)
register("MaskedChainDict-v0", entry_point=MaskedChainDictEnv)
register("ImageSide-v0", entry_point=ImageSideEnv, max_episode_steps=8)
register("DictObservation-v0", entry_point=DictObservationEnv, max_episode_steps=8)
register("TupleObservation-v0", entry_point=TupleObservationEnv, max_episode_steps=8)
register("Bits-v0", entry_point=BitsEnv, max_episode_steps=8)
register("TextObservation-v0", entry_point=TextObservationEnv)
