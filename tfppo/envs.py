"""Gymnasium env and vector-env construction, action specs, masks and the env boundary.

Everything the library sees of an env passes through here: observations become float32,
discrete actions int32, masks bool; Box actions are clipped to their bounds only when they
are sent to the env (training always sees the raw sample).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from tfppo.config import Config, ConfigError

MASK_KEY = "action_mask"


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """What the actor must produce. kind: "discrete" (num_actions) or "box" (shape, low, high)."""

    kind: str
    num_actions: int = 0
    shape: tuple[int, ...] = ()
    low: np.ndarray | None = None
    high: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(np.prod(self.shape)) if self.kind == "box" else 1


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """The shapes the networks and the rollout storage are built for."""

    observation_shape: tuple[int, ...]
    action: ActionSpec
    has_mask: bool


def action_spec(space: gym.Space) -> ActionSpec:
    if isinstance(space, gym.spaces.Discrete):
        if space.start != 0:
            raise ConfigError(f"Discrete action space with start={space.start}; expected start=0")
        return ActionSpec(kind="discrete", num_actions=int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        return ActionSpec(kind="box", shape=tuple(space.shape), low=low, high=high)
    raise ConfigError(f"unsupported action space {space}; expected Discrete(n) or a 1-D Box")


def observation_space_of(space: gym.Space) -> tuple[gym.Space, bool]:
    """Returns (the observation proper, whether the env ships its action mask in the obs)."""
    if isinstance(space, gym.spaces.Dict):
        keys = set(space.spaces)
        if MASK_KEY in keys and len(keys) == 2:
            (other,) = keys - {MASK_KEY}
            return space.spaces[other], True
        raise ConfigError(
            f"Dict observation space with keys {sorted(keys)}; expected one observation key and '{MASK_KEY}'"
        )
    return space, False


def env_spec(observation_space: gym.Space, action_space: gym.Space, info_mask: bool) -> EnvSpec:
    inner, obs_mask = observation_space_of(observation_space)
    if not isinstance(inner, gym.spaces.Box):
        raise ConfigError(f"unsupported observation space {inner}; expected a Box")
    action = action_spec(action_space)
    has_mask = obs_mask or info_mask
    if has_mask and action.kind != "discrete":
        raise ConfigError(f"the env provides an action mask but the action space is {action_space}")
    return EnvSpec(observation_shape=tuple(inner.shape), action=action, has_mask=has_mask)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """gym.make with errors a user can act on."""
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise ConfigError(f"--env={env_id!r} is not a registered gymnasium env: {error}") from None
    except ModuleNotFoundError as error:
        raise ConfigError(f"--env={env_id!r} needs a package that is not installed: {error}") from None


def probe_spec(env_id: str) -> EnvSpec:
    """Makes one env to read its spec; raises ConfigError for an unknown id or unsupported spaces."""
    env = make_env(env_id)
    try:
        _, info = env.reset(seed=0)
        return env_spec(env.observation_space, env.action_space, MASK_KEY in info)
    finally:
        env.close()


def make_vector_env(config: Config) -> gym.vector.VectorEnv:
    """num_envs copies of config.env, auto-resetting in the same step (final obs in info)."""
    probe_spec(config.env)  # Fails fast, in this process, on a bad id or unsupported spaces.
    thunks = [lambda: make_env(config.env) for _ in range(config.num_envs)]
    kwargs = dict(autoreset_mode=AutoresetMode.SAME_STEP)
    if config.vector_mode == "async":
        return gym.vector.AsyncVectorEnv(thunks, **kwargs)
    return gym.vector.SyncVectorEnv(thunks, **kwargs)


def split_observation(observation: Any, info: dict, has_mask: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns (float32 observation [B, D], bool mask [B, A] or None) from a vector-env output."""
    mask = None
    if isinstance(observation, dict):
        mask = observation[MASK_KEY]
        (key,) = [k for k in observation if k != MASK_KEY]
        observation = observation[key]
    elif has_mask:
        mask = info.get(MASK_KEY)
    observation = np.asarray(observation, dtype=np.float32)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
    return observation, mask


def check_mask(mask: np.ndarray | None, num_actions: int, step: int) -> None:
    """Rejects a mask of the wrong shape or one that allows no action, naming step and env."""
    if mask is None:
        return
    if mask.ndim != 2 or mask.shape[1] != num_actions:
        raise ConfigError(
            f"action mask at env step {step} has shape {mask.shape}; expected [num_envs, {num_actions}]"
        )
    empty = np.flatnonzero(~mask.any(axis=1))
    if empty.size:
        raise ConfigError(f"action mask at env step {step} allows no action in env {int(empty[0])}")


def env_action(spec: ActionSpec, action: np.ndarray) -> np.ndarray:
    """The action sent to the env: Box actions clipped to their bounds; discrete as int."""
    if spec.kind == "box":
        return np.clip(action, spec.low, spec.high)
    return action.astype(np.int64)
