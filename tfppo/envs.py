"""Gymnasium env and vector-env construction, action specs, masks and the env boundary.

Everything the library sees of an env passes through here: observations become float32,
discrete actions int32, masks bool; Box actions are clipped to their bounds only when they
are sent to the env (training always sees the raw sample).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from tfppo import atari, envpool_vector, example_envs, memory_envs, observations, sync_vector  # noqa: F401  (they register tfppo/... envs)
from tfppo.config import Config, ConfigError, call_user
from tfppo.observations import MASK_KEY, ObservationSpec

PARAMETER_MASK_KEY = "parameter_mask"
TIME_FEATURE = "time_feature"  # EnvSource.record's key: the envs carry the time feature.


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """What the actor must produce, by kind:

    - "discrete": Discrete(num_actions); action [] int32; mask [num_actions].
    - "box": a 1-D Box (shape, low, high); action [A] float32.
    - "multi_discrete": MultiDiscrete(nvec); action [len(nvec)] int32; mask [sum(nvec)], the
      per-dimension masks side by side.
    - "binary": MultiBinary(n); action [n] int32 in {0, 1} (independent Bernoulli bits); no mask.
    - "hybrid": Tuple((Discrete(K), Box(P))) or Dict({"action_type", "parameters"}), a
      parameterised action (H-PPO). Stored as [1 + P] float32: the action type, then the P
      parameters. parameter_mask [K, P] says which parameters each type uses; mask [K].
    """

    kind: str
    num_actions: int = 0
    shape: tuple[int, ...] = ()
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    nvec: tuple[int, ...] = ()
    parameter_mask: np.ndarray | None = None
    dict_keys: tuple[str, str] | None = None  # hybrid as a Dict space: (type key, parameters key)

    @property
    def dim(self) -> int:
        """A: the Gaussian's width (box and hybrid parameters)."""
        return int(np.prod(self.shape)) if self.kind in ("box", "hybrid") else 1

    @property
    def mask_width(self) -> int:
        return sum(self.nvec) if self.kind == "multi_discrete" else self.num_actions

    @property
    def action_shape(self) -> tuple[int, ...]:
        return {
            "discrete": (),
            "box": (self.dim,),
            "multi_discrete": (len(self.nvec),),
            "binary": (self.num_actions,),
        }.get(self.kind, (1 + self.dim,))

    @property
    def action_dtype(self) -> np.dtype:
        if self.kind in ("discrete", "multi_discrete", "binary"):
            return np.dtype(np.int32)
        return np.dtype(np.float32)

    def param_dims(self) -> dict[str, int]:
        """The distribution's parameters (as the actor returns and the rollout stores them)."""
        if self.kind == "box":
            return {"loc": self.dim, "scale": self.dim}
        if self.kind == "hybrid":
            return {"logits": self.num_actions, "loc": self.dim, "scale": self.dim}
        return {"logits": self.mask_width}


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """The shapes the networks and the rollout storage are built for.

    observation_shape: the stored observation's shape (observation.storage_shape); observation:
    its components (tfppo.observations); None means one float32 vector of observation_shape.
    """

    observation_shape: tuple[int, ...]
    action: ActionSpec
    has_mask: bool
    observation: ObservationSpec | None = None

    def __post_init__(self) -> None:
        if self.observation is None:
            object.__setattr__(self, "observation", observations.vector_spec(*self.observation_shape))
        object.__setattr__(self, "observation_shape", self.observation.storage_shape)

    @property
    def observation_dtype(self) -> np.dtype:
        return self.observation.storage_dtype


def _hybrid_spec(type_space, parameter_space, parameter_mask, dict_keys=None) -> ActionSpec:
    if not isinstance(type_space, gym.spaces.Discrete) or not (
        isinstance(parameter_space, gym.spaces.Box) and len(parameter_space.shape) == 1
    ):
        raise ConfigError(
            f"hybrid action space ({type_space}, {parameter_space}); expected (Discrete(K), 1-D Box)"
        )
    k, p = int(type_space.n), int(parameter_space.shape[0])
    mask = np.ones((k, p), bool) if parameter_mask is None else np.asarray(parameter_mask, bool)
    if mask.shape != (k, p):
        raise ConfigError(
            f"parameter mask of shape {mask.shape}; expected [{k} action types, {p} parameters]"
        )
    return ActionSpec(
        kind="hybrid",
        num_actions=k,
        shape=(p,),
        low=parameter_space.low.astype(np.float32),
        high=parameter_space.high.astype(np.float32),
        parameter_mask=mask,
        dict_keys=dict_keys,
    )


def action_spec(space: gym.Space, parameter_mask=None) -> ActionSpec:
    """The ActionSpec of a gymnasium action space; parameter_mask only for hybrid spaces."""
    if isinstance(space, gym.spaces.Discrete):
        if space.start != 0:
            raise ConfigError(f"Discrete action space with start={space.start}; expected start=0")
        return ActionSpec(kind="discrete", num_actions=int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        return ActionSpec(kind="box", shape=tuple(space.shape), low=low, high=high)
    if isinstance(space, gym.spaces.MultiDiscrete) and space.nvec.ndim == 1:
        if np.any(space.start != 0):
            raise ConfigError(f"MultiDiscrete action space with start={space.start}; expected start=0")
        return ActionSpec(kind="multi_discrete", nvec=tuple(int(n) for n in space.nvec))
    if isinstance(space, gym.spaces.MultiBinary) and np.ndim(space.n) == 0:
        return ActionSpec(kind="binary", num_actions=int(space.n))
    if isinstance(space, gym.spaces.Tuple) and len(space.spaces) == 2:
        return _hybrid_spec(*space.spaces, parameter_mask)
    if isinstance(space, gym.spaces.Dict) and len(space.spaces) == 2:
        type_key = next((k for k, v in space.spaces.items() if isinstance(v, gym.spaces.Discrete)), None)
        if type_key is not None:
            (parameters_key,) = [k for k in space.spaces if k != type_key]
            return _hybrid_spec(
                space[type_key], space[parameters_key], parameter_mask, (type_key, parameters_key)
            )
    raise ConfigError(
        f"unsupported action space {space}; expected Discrete, a 1-D Box, MultiDiscrete, MultiBinary(n), or a hybrid "
        "Tuple((Discrete, Box)) / Dict with one Discrete and one Box"
    )


def env_spec(
    observation_space: gym.Space,
    action_space: gym.Space,
    info_mask: bool,
    parameter_mask=None,
    image_layout: str = "auto",
) -> EnvSpec:
    observation, obs_mask = observations.observation_spec(observation_space, image_layout)
    action = action_spec(action_space, parameter_mask)
    has_mask = obs_mask or info_mask
    if has_mask and action.kind in ("box", "binary"):
        raise ConfigError(f"the env provides an action mask but the action space is {action_space}")
    return EnvSpec(observation.storage_shape, action, has_mask, observation)


def make_env(env_id: str, **kwargs: Any) -> gym.Env:
    """gym.make with errors a user can act on."""
    atari.ensure_registered(env_id)  # ALE/..., MinAtar/... and tfppo/Atari-v0 register on demand.
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.Error as error:
        raise ConfigError(f"--env={env_id!r} is not a registered gymnasium env: {error}") from None
    except ModuleNotFoundError as error:
        raise ConfigError(f"--env={env_id!r} needs a package that is not installed: {error}") from None
    except TypeError as error:
        if not kwargs:
            raise ConfigError(f"--env={env_id!r} could not be made: TypeError: {error}") from None
        raise ConfigError(f"--env={env_id!r} rejected --env_kwargs={json.dumps(kwargs)}: {error}") from None
    except Exception as error:  # The env's own module or constructor raised (module:EnvId too).
        raise ConfigError(f"--env={env_id!r} could not be made: {type(error).__name__}: {error}") from None


def factory_name(factory: Callable) -> str:
    """ "module:qualname" of a function or class (what env.json records of a Python factory).

    A callable object or a functools.partial carries state a name cannot: its name gets a
    "(...)" suffix, so it is never imported back without that state.
    """
    if inspect.isfunction(factory) or inspect.isclass(factory) or inspect.isbuiltin(factory):
        return f"{factory.__module__}:{factory.__qualname__}"
    target = getattr(factory, "func", None) or type(factory)
    return f"{target.__module__}:{target.__qualname__}(...)"


@dataclasses.dataclass(frozen=True)
class EnvSource:
    """How the run's envs are made: a registered id (with kwargs) or a Python factory.

    name: what Config.env holds (the id, or "<module:qualname>" for a factory);
    record: what env.json keeps of it, enough to make the env again where that is possible.
    """

    name: str
    factory: Callable[[], gym.Env]
    record: dict

    @property
    def is_python_factory(self) -> bool:
        return "factory" in self.record

    def make(self, **kwargs: Any) -> gym.Env:
        """One env; a factory that raises or returns something else is a ConfigError."""
        if not self.is_python_factory:
            env = self.factory(**kwargs)
        else:
            env = call_user(f"the env factory {self.record['factory']}", self.factory, **kwargs)
            if not isinstance(env, gym.Env):
                raise ConfigError(
                    f"the env factory {self.record['factory']} returned {type(env).__name__}; "
                    "expected a gymnasium.Env"
                )
        return time_aware(env, self.name) if self.record.get(TIME_FEATURE) else env


def time_aware(env: gym.Env, name: str) -> gym.Env:
    """--time_feature: gymnasium's TimeAwareObservation with the time as t / T in [0, 1] (T: the
    env's step limit). A Box of one axis gets it as one more entry (what rl-baselines3-zoo's
    TimeFeatureWrapper appends, as 1 - t / T); any other observation becomes a Dict with a
    "time" key beside the observation (a Dict's own keys, or "obs")."""
    space = env.observation_space
    flat = isinstance(space, gym.spaces.Box) and len(space.shape) == 1
    try:
        return gym.wrappers.TimeAwareObservation(env, flatten=flat, normalize_time=True)
    except ValueError as error:  # no step limit, or a Dict that has a "time" key already
        env.close()
        raise ConfigError(f"--time_feature cannot wrap the env {name}: {error}") from None


def with_time_feature(source: EnvSource) -> EnvSource:
    """The same source with --time_feature; env.json records it, so evaluation and export of the
    run make their envs with it too."""
    return dataclasses.replace(source, record={**source.record, TIME_FEATURE: True})


def source_from_id(env_id: str, env_kwargs: dict | None = None) -> EnvSource:
    kwargs = dict(env_kwargs or {})
    if env_id.startswith("<"):
        raise ConfigError(
            f"--env={env_id!r} names a Python env factory; pass it again from Python "
            "(tfppo.train(config, env=FACTORY)) or give a registered env id"
        )
    return EnvSource(
        env_id, lambda **extra: make_env(env_id, **kwargs, **extra), {"id": env_id, "kwargs": kwargs}
    )


def source_from_factory(factory: Callable[[], gym.Env]) -> EnvSource:
    name = factory_name(factory)
    return EnvSource(f"<{name}>", factory, {"factory": name})


def source_of(env, config: Config) -> EnvSource:
    """The EnvSource of `env` (None: config.env and config.env_kwargs; a str: an id; a callable),
    with --time_feature where the config asks for it."""
    source = _source_of(env, config)
    return with_time_feature(source) if config.time_feature else source


def _source_of(env, config: Config) -> EnvSource:
    if env is None:
        return source_from_id(config.env, config.env_kwargs_dict)
    if isinstance(env, str):
        return source_from_id(env, config.env_kwargs_dict)
    if isinstance(env, gym.Env):
        raise ConfigError(
            f"env={type(env).__name__} instance; pass a callable that returns a new env "
            f"(e.g. the class, or lambda: {type(env).__name__}(...)): every vector env copy needs its own"
        )
    if callable(env):
        return source_from_factory(env)
    raise ConfigError(
        f"env={env!r}; expected a gymnasium id, module:EnvId, or a callable returning a gymnasium.Env"
    )


def import_object(name: str):
    """The object "module:qualname" names; ConfigError if it cannot be imported here."""
    module, _, qualname = name.partition(":")
    try:
        if module == "__main__":
            raise ImportError("defined in a script's __main__")
        target = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as error:
        raise ConfigError(f"{name} cannot be imported here ({error})") from None
    return target


def source_from_record(record: dict | None, config: Config | None = None) -> EnvSource:
    """The EnvSource a saved run used (env.json), for a resume or an export from the command line."""
    if not record:  # A run from before env.json: its flags name the env.
        return source_from_id(config.env, config.env_kwargs_dict)
    saved = record["source"]
    if "id" in saved:
        source = source_from_id(saved["id"], saved.get("kwargs"))
    else:
        name = saved["factory"]
        try:
            source = source_from_factory(import_object(name))
        except ConfigError as error:
            raise ConfigError(
                f"this run's env was made by the Python factory {name}: {error}; continue it from Python: "
                "tfppo.train(config, env=FACTORY, logdir=...)"
            ) from None
    return with_time_feature(source) if saved.get(TIME_FEATURE) else source


def spec_to_dict(spec: EnvSpec) -> dict:
    """EnvSpec as JSON values (arrays as lists), for env.json and the export's metadata."""
    values = dataclasses.asdict(spec)
    action = values["action"]
    for key in ("low", "high", "parameter_mask"):
        if action[key] is not None:
            action[key] = np.asarray(action[key]).tolist()
    return values


def spec_from_dict(values: dict) -> EnvSpec:
    action = dict(values["action"])
    for key, dtype in (("low", np.float32), ("high", np.float32), ("parameter_mask", bool)):
        if action[key] is not None:
            action[key] = np.asarray(action[key], dtype)
    action["shape"], action["nvec"] = tuple(action["shape"]), tuple(action["nvec"])
    if action["dict_keys"] is not None:
        action["dict_keys"] = tuple(action["dict_keys"])
    observation = values.get("observation")  # absent in runs saved before observation kinds
    return EnvSpec(
        observation_shape=tuple(values["observation_shape"]),
        action=ActionSpec(**action),
        has_mask=bool(values["has_mask"]),
        observation=ObservationSpec.from_dict(observation) if observation else None,
    )


class StepLatency(gym.Wrapper):
    """Sleeps `latency_s` in every step: a stand-in for an expensive simulator (benchmarks)."""

    def __init__(self, env: gym.Env, latency_s: float):
        super().__init__(env)
        self.latency_s = latency_s

    def step(self, action):
        time.sleep(self.latency_s)
        return self.env.step(action)


def parameter_mask_of(env, info: dict):
    """A hybrid env's [K, P] type-to-parameter mask: info["parameter_mask"] or PARAMETER_MASK."""
    mask = info.get(PARAMETER_MASK_KEY)
    if mask is None:
        mask = getattr(getattr(env, "unwrapped", env), "PARAMETER_MASK", None)
    if mask is not None and np.asarray(mask).ndim == 3:  # batched by a vector env
        mask = np.asarray(mask)[0]
    return mask


@dataclasses.dataclass(frozen=True)
class Probe:
    """What one env, made and reset once before training, says about the run's envs."""

    spec: EnvSpec
    observation_space: gym.Space
    action_space: gym.Space
    # The env is wrapped in gymnasium's RecordEpisodeStatistics: its info["episode"] is the
    # episode's return (e.g. an Atari game's raw score across lives, not the clipped per-life sum).
    reports_episodes: bool = False

    def record(self, source: EnvSource) -> dict:
        """env.json: how the env was made and what the networks were built for."""
        return {
            "source": source.record,
            "spec": spec_to_dict(self.spec),
            "observation_space": str(self.observation_space),
            "action_space": str(self.action_space),
        }


def _records_episodes(env: gym.Env) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.wrappers.RecordEpisodeStatistics):
            return True
        env = env.env
    return False


def probe(source: EnvSource, use_mask: bool = True, image_layout: str = "auto") -> Probe:
    """Makes one env to read its spec; raises ConfigError for an unknown id or unsupported spaces.

    use_mask=False ignores the env's action mask (training then never sees it; invalid actions
    reach the env, which must handle them).
    """
    env = source.make()
    try:
        _, info = call_user(f"the env {source.name}'s reset", env.reset, seed=0)
        spec = env_spec(
            env.observation_space,
            env.action_space,
            MASK_KEY in info,
            parameter_mask_of(env, info),
            image_layout,
        )
        if not use_mask and spec.has_mask:
            if isinstance(env.observation_space, gym.spaces.Dict):
                raise ConfigError(
                    "--use_mask=false with a Dict observation that carries the mask is not supported"
                )
            spec = dataclasses.replace(spec, has_mask=False)
        return Probe(spec, env.observation_space, env.action_space, _records_episodes(env))
    finally:
        env.close()


def probe_spec(env_id: str, use_mask: bool = True, image_layout: str = "auto") -> EnvSpec:
    """The EnvSpec of a registered env id (see probe)."""
    return probe(source_from_id(env_id), use_mask, image_layout).spec


def make_vector_env(config: Config, source: EnvSource, probed: Probe) -> gym.vector.VectorEnv:
    """num_envs copies from `source` (its factory called once per copy), auto-resetting in the
    same step (final obs in info). Every copy must have the probed env's spaces.
    --vector_mode=sync: gymnasium's SyncVectorEnv with a leaner step (tfppo.sync_vector);
    --vector_mode=envpool: one EnvPool pool under the same contract (tfppo.envpool_vector)."""
    latency_s = config.step_latency_ms / 1000.0

    def thunk():
        env = source.make()
        if (env.observation_space, env.action_space) != (probed.observation_space, probed.action_space):
            env.close()
            raise ConfigError(
                f"the env {source.name} returned envs with different spaces: first "
                f"{probed.observation_space} / {probed.action_space}, then "
                f"{env.observation_space} / {env.action_space}; every call must give the same spaces"
            )
        return StepLatency(env, latency_s) if latency_s > 0 else env

    if config.vector_mode == "envpool":
        return envpool_vector.make(config, source, probed)
    thunks = [thunk] * config.num_envs
    kwargs = dict(autoreset_mode=AutoresetMode.SAME_STEP)
    if config.vector_mode == "async":
        try:
            cloudpickle.dumps(source.factory)
        except Exception as error:
            raise ConfigError(
                f"--vector_mode=async sends the env factory {source.name} to subprocesses, but it "
                f"cannot be pickled ({type(error).__name__}: {error}); use --vector_mode=sync or a "
                "module-level function or class"
            ) from None
        return gym.vector.AsyncVectorEnv(thunks, **kwargs)
    return sync_vector.LeanSyncVectorEnv(thunks)


def _as_mask(mask) -> np.ndarray:
    """[B, W] bool from a vector env's mask; per-dimension tuples (MultiDiscrete) side by side."""
    mask = np.asarray(mask)
    if mask.dtype == object:
        mask = np.stack([np.concatenate([np.asarray(m, bool).ravel() for m in row]) for row in mask])
    return mask.astype(bool)


def batch_one(observation, info: dict):
    """A single env's (observation, info) as a vector env of one would return them."""
    if isinstance(observation, dict):
        observation = {
            k: _batch_one_mask(v) if k == MASK_KEY else np.asarray(v)[None] for k, v in observation.items()
        }
    elif isinstance(observation, tuple):
        observation = tuple(np.asarray(v)[None] for v in observation)
    else:
        observation = np.asarray(observation)[None]
    batched_info = {MASK_KEY: _batch_one_mask(info[MASK_KEY])} if MASK_KEY in info else {}
    return observation, batched_info


def _batch_one_mask(mask) -> np.ndarray:
    if isinstance(mask, (tuple, list)):  # per-dimension masks of a MultiDiscrete space
        mask = np.concatenate([np.asarray(m, bool).ravel() for m in mask])
    return np.asarray(mask, bool)[None]


def split_observation(observation: Any, info: dict, spec: EnvSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """Returns (the stored observation [B, *observation_shape] of spec.observation_dtype, bool
    mask [B, W] or None) from a vector-env output (a Dict's "action_mask" key, or info's)."""
    mask = None
    if isinstance(observation, dict) and MASK_KEY in observation:
        mask = observation[MASK_KEY]
    elif spec.has_mask:
        mask = info.get(MASK_KEY)
    stored = spec.observation.pack(observation)
    if mask is not None:
        mask = _as_mask(mask)
    return stored, mask


def non_finite_rows(observation: np.ndarray) -> np.ndarray:
    """[B] bool: rows of a stored batch with a NaN or inf (never, for uint8 storage)."""
    if observation.dtype == np.uint8:
        return np.zeros(observation.shape[0], bool)
    return ~np.isfinite(observation).reshape(observation.shape[0], -1).all(axis=1)


def check_mask(mask: np.ndarray | None, spec: ActionSpec, step: int) -> None:
    """Rejects a mask of the wrong shape or one that allows no action, naming step and env."""
    if mask is None:
        return
    width = spec.mask_width
    if mask.ndim != 2 or mask.shape[1] != width:
        raise ConfigError(
            f"action mask at env step {step} has shape {mask.shape}; expected [num_envs, {width}]"
        )
    groups = np.split(mask, np.cumsum(spec.nvec)[:-1], axis=1) if spec.kind == "multi_discrete" else [mask]
    for dimension, group in enumerate(groups):
        empty = np.flatnonzero(~group.any(axis=1))
        if empty.size:
            where = f" in action dimension {dimension}" if len(groups) > 1 else ""
            raise ConfigError(
                f"action mask at env step {step} allows no action{where} in env {int(empty[0])}"
            )


def clip(values: np.ndarray, low, high) -> np.ndarray:
    """np.clip's values (low <= high; NaN stays NaN) without its Python-level argument handling,
    which costs twice the two ufuncs on the [B, D] arrays of an env step."""
    return np.minimum(np.maximum(values, low), high)


def clip_action(spec: ActionSpec, action: np.ndarray) -> np.ndarray:
    """The batched flat action with Box actions (hybrid: the parameter columns) clipped to bounds."""
    if spec.kind == "box":
        return clip(action, spec.low, spec.high)
    if spec.kind == "hybrid":
        return np.concatenate([action[:, :1], clip(action[:, 1:], spec.low, spec.high)], axis=1)
    return action


def env_action(spec: ActionSpec, action: np.ndarray):
    """The batched action sent to a vector env; Box actions and parameters clipped to bounds."""
    if spec.kind == "box":
        return clip_action(spec, action)
    if spec.kind == "hybrid":
        action_type = action[:, 0].astype(np.int64)
        parameters = clip(action[:, 1:], spec.low, spec.high)
        if spec.dict_keys:
            return {spec.dict_keys[0]: action_type, spec.dict_keys[1]: parameters}
        return action_type, parameters
    if spec.kind == "binary":
        return action.astype(np.int8)
    return action.astype(np.int64)


def unbatch_action(spec: ActionSpec, batched, index: int = 0):
    """Env `index`'s action out of env_action's batched one (for a single, non-vector env)."""
    if spec.kind == "hybrid":
        if spec.dict_keys:
            return {key: value[index] for key, value in batched.items()}
        return tuple(part[index] for part in batched)
    return batched[index]
