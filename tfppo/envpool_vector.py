"""--vector_mode=envpool: EnvPool's C++ batched envs behind the vector-env contract tfppo uses.

EnvPool (optional: `pip install envpool==1.2.5`) steps a batch of envs in C++ threads; for the
MuJoCo presets, where tfppo's loop is mostly the env, its random-policy rate on Hopper-v5 is 1.6x
gymnasium's (benchmarks/README_speed.md). Its envs follow a different autoreset contract: an env
that ended its episode resets on its *next* step (ignoring that step's action) and the final
observation is the one returned with done. The Collector expects gymnasium's SAME_STEP autoreset:
the step that ends an episode returns the new episode's first observation, with the final one in
info["final_obs"]. PoolVectorEnv keeps that contract by resetting the ended envs by id inside the
step, so every training step is a real env step and truncation bootstraps from the real final
observation.

Only ids that both gymnasium and EnvPool register (classic control, Box2D, MuJoCo) are accepted:
the probe, evaluation and export use gymnasium's env of the same id, and EnvPool's spaces must
match it. Env i is seeded with seed + i, as gymnasium's vector envs are (EnvPool's own RNG, so
the episodes differ from gymnasium's).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from tfppo.config import Config, ConfigError

INSTALL = "pip install envpool==1.2.5"


class PoolVectorEnv:
    """An EnvPool pool (gymnasium API, batch_size == num_envs) as a SAME_STEP-autoreset vector env.

    make_pool(seed) returns a new pool whose env i is seeded with seed + i; reset(seed=[s, s + 1,
    ...]) makes one (the seeds must be consecutive, as the Collector's are).
    """

    def __init__(self, make_pool: Callable[[int], Any], num_envs: int, seed: int = 0):
        self.num_envs = num_envs
        self._make_pool = make_pool
        self._pool = make_pool(seed)
        self._seed = seed
        self._fresh = True  # The pool was made with self._seed and not reset since.
        self.single_observation_space = self._pool.observation_space
        self.single_action_space = self._pool.action_space

    def reset(self, seed: int | Sequence[int] | None = None, options: dict | None = None):
        """(observation [B, ...], info) of fresh episodes in every env; info is empty."""
        if options:
            raise ConfigError(f"--vector_mode=envpool cannot reset with options {options}")
        if seed is not None:
            seeds = [int(seed) + i for i in range(self.num_envs)] if np.isscalar(seed) else list(seed)
            if seeds != list(range(seeds[0], seeds[0] + self.num_envs)):
                raise ConfigError(f"--vector_mode=envpool seeds env i with seed + i; got seeds {seeds}")
            if not (self._fresh and seeds[0] == self._seed):
                self._pool.close()
                self._pool, self._seed = self._make_pool(seeds[0]), seeds[0]
        self._fresh = False
        observation, info = self._pool.reset()
        return _in_env_order(observation, _order(info)), {}

    def step(self, action):
        """One step of every env; ended envs are reset in the same call (their final observation
        in info["final_obs"], None elsewhere, as gymnasium's SAME_STEP autoreset gives it)."""
        observation, reward, terminated, truncated, info = self._pool.step(action)
        order = _order(info)
        observation = _in_env_order(observation, order)
        if order is not None:
            reward, terminated, truncated = reward[order], terminated[order], truncated[order]
        done = np.logical_or(terminated, truncated)
        if not done.any():
            return observation, reward, terminated, truncated, {}
        ended = np.flatnonzero(done)
        final_obs = np.full(self.num_envs, None, object)
        for env in ended:
            final_obs[env] = observation[env].copy()
        first, reset_info = self._pool.reset(ended.astype(np.int32))
        ids = np.asarray(reset_info["env_id"])
        observation[ids] = first
        return observation, reward, terminated, truncated, {"final_obs": final_obs, "_final_obs": done}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def _order(info: dict) -> np.ndarray | None:
    """The permutation that puts a batch in env-id order (None: it already is)."""
    ids = np.asarray(info["env_id"])
    if np.array_equal(ids, np.arange(ids.size)):
        return None
    return np.argsort(ids)


def _in_env_order(observation: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """A copy in env-id order: EnvPool returns views of its own buffers, reused by later steps."""
    return np.array(observation) if order is None else observation[order]


def _same_spaces(pool_space: gym.Space, space: gym.Space) -> bool:
    """Same kind and shape; a Box's bounds equal (its dtype may differ: EnvPool's MuJoCo actions
    are float64 where gymnasium's are float32)."""
    if type(pool_space) is not type(space) or pool_space.shape != space.shape:
        return False
    if isinstance(space, gym.spaces.Box):
        return np.array_equal(pool_space.low.astype(np.float64), space.low.astype(np.float64)) and (
            np.array_equal(pool_space.high.astype(np.float64), space.high.astype(np.float64))
        )
    if isinstance(space, gym.spaces.Discrete):
        return int(pool_space.n) == int(space.n) and int(pool_space.start) == int(space.start)
    return pool_space == space


def pool_threads(num_envs: int) -> int:
    """EnvPool's worker threads: one per env up to the cores less one, left to acting and learning.
    Its idle workers spin before they sleep: with its default of a thread per env, the Pendulum
    preset (4 envs) trained at 3494 and 3407 env steps/s on 2 cores, with one thread at 4384 and
    5293 (gymnasium's loop: 4699, 4852)."""
    return max(1, min(num_envs, len(os.sched_getaffinity(0)) - 1))


def import_envpool():
    """The envpool module; ConfigError naming the install command where it is missing."""
    try:
        import envpool  # noqa: PLC0415  (optional: only this vector mode needs it)
    except ModuleNotFoundError:
        raise ConfigError(f"--vector_mode=envpool needs the envpool package: {INSTALL}") from None
    return envpool


def make(config: Config, source, probed) -> PoolVectorEnv:
    """The run's envs as one EnvPool pool of config.num_envs envs; ConfigError where EnvPool is not
    installed, does not have the env, or gives it other spaces than gymnasium's."""
    envpool = import_envpool()
    if source.is_python_factory:
        raise ConfigError(
            f"--vector_mode=envpool makes envs by id; the env {source.name} is a Python factory "
            "(use --vector_mode=sync or async)"
        )
    if config.step_latency_ms > 0:
        raise ConfigError(
            "--step_latency_ms wraps gymnasium envs; it cannot be used with --vector_mode=envpool"
        )
    env_id, kwargs = source.record["id"], source.record["kwargs"]
    if env_id not in envpool.list_all_envs():
        raise ConfigError(
            f"--env={env_id!r} is not an EnvPool env; --vector_mode=envpool takes the ids both "
            "gymnasium and EnvPool register (e.g. Hopper-v5, HalfCheetah-v5, CartPole-v1, Pendulum-v1)"
        )

    def make_pool(seed: int):
        try:
            return envpool.make_gymnasium(
                env_id,
                num_envs=config.num_envs,
                batch_size=config.num_envs,
                num_threads=pool_threads(config.num_envs),
                seed=seed,
                **kwargs,
            )
        except (TypeError, ValueError, RuntimeError) as error:
            raise ConfigError(
                f"EnvPool could not make --env={env_id!r} with --env_kwargs={kwargs}: {error}"
            ) from None

    vector_env = PoolVectorEnv(make_pool, config.num_envs, config.seed)
    for what, pool_space, space in (
        ("observation", vector_env.single_observation_space, probed.observation_space),
        ("action", vector_env.single_action_space, probed.action_space),
    ):
        if not _same_spaces(pool_space, space):
            vector_env.close()
            raise ConfigError(
                f"EnvPool's {env_id} has the {what} space {pool_space}, gymnasium's {space}; "
                "--vector_mode=envpool needs the same spaces (use --vector_mode=sync)"
            )
    return vector_env
