"""`tfppo.load(path)`: a trained policy from a run directory or a SavedModel, NumPy in and out.

Needs TensorFlow alone (no tfp, no gymnasium, no Keras networks): it calls the SavedModel's
signatures (tfppo.export), so it runs wherever the exported model runs.

    policy = tfppo.load("runs/mine")          # LOGDIR/saved_model (best=True: LOGDIR/best/...)
    action = policy.act(observation)          # one observation -> an action env.step accepts
    actions = policy.act(observations)        # a batch [B, *shape] -> [B, ...]
"""

from __future__ import annotations

import json
import os

import numpy as np

from tfppo import rundir
from tfppo.config import ConfigError

MASK_KEY = "action_mask"


def saved_model_dir(path: str, best: bool = False) -> str:
    """The SavedModel directory of `path`: itself, or a run directory's saved_model/ (best/...)."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    if rundir.is_run(path):
        inner = os.path.join(rundir.BEST_DIR, rundir.SAVED_MODEL_DIR) if best else rundir.SAVED_MODEL_DIR
        found = rundir.path(path, inner)
        if os.path.isfile(os.path.join(found, "saved_model.pb")):
            return found
        raise ConfigError(
            f"the run {path!r} has no {inner}/ yet (it is written when training ends"
            + (" and by --eval_every" if best else "")
            + f"); export a checkpoint with: python -m tfppo.export --logdir={path} --out=DIR"
        )
    raise ConfigError(
        f"{path!r} is neither a tfppo run directory (flags.json) nor a SavedModel (saved_model.pb)"
    )


class LoadedPolicy:
    """A SavedModel exported by tfppo, with NumPy `act` and `value`.

    metadata: the model's metadata (env, spaces, flags, training figures).
    """

    def __init__(self, model, path: str):
        self.model, self.path = model, path
        self.metadata = json.loads(model.metadata()["json"].numpy().decode())
        self.observation_shape = tuple(self.metadata["observation_shape"])
        # One input per observation component (tfppo.observations.export_inputs); models exported
        # before observation kinds take one float32 "observation".
        self.inputs = self.metadata.get("inputs") or [
            {"name": "observation", "key": "", "dtype": "float32", "shape": list(self.observation_shape)}
        ]
        self.has_mask = bool(self.metadata["has_mask"])
        self.kind = self.metadata["action_kind"]
        action = (self.metadata.get("spec") or {}).get("action", {})
        self.low = np.asarray(action["low"], np.float32) if action.get("low") is not None else None
        self.high = np.asarray(action["high"], np.float32) if action.get("high") is not None else None
        self.dict_keys = tuple(action["dict_keys"]) if action.get("dict_keys") else None
        self._rng = np.random.default_rng()
        # A recurrent policy (--recurrent): the memory act() carries, [B, state_size].
        self.state_size = int(self.metadata.get("state_size") or 0)
        self.state = None

    def reset(self, batch_size: int = 1) -> None:
        """Forgets a recurrent policy's memory: call it when an episode starts (a no-op for a
        feed-forward policy). act() on a batch of another size resets too."""
        self.state = np.zeros((batch_size, self.state_size), np.float32) if self.state_size else None

    def _state(self, batch_size: int) -> list:
        """[the carried state] for a recurrent policy (reset for a new batch size), else []."""
        if not self.state_size:
            return []
        if self.state is None or len(self.state) != batch_size:
            self.reset(batch_size)
        return [self.state]

    def _observation(self, observation):
        """(the model's inputs, each [B, *shape], whether one observation was given, the mask a
        Dict carried). Takes what the env gives: an array, or a dict / tuple of them."""
        carried = None
        if isinstance(observation, dict):
            carried = observation.get(MASK_KEY)
            observation = {k: v for k, v in observation.items() if k != MASK_KEY}
            if len(self.inputs) == 1:  # One observation key beside the mask.
                (observation,) = observation.values()
                parts = [observation]
            else:
                missing = [i["key"] for i in self.inputs if i["key"] not in observation]
                if missing:
                    raise ValueError(f"observation without the key(s) {missing}; expected {self._expected()}")
                parts = [observation[i["key"]] for i in self.inputs]
        elif len(self.inputs) > 1:
            if not isinstance(observation, (tuple, list)) or len(observation) != len(self.inputs):
                raise ValueError(f"observation {type(observation).__name__}; expected {self._expected()}")
            parts = list(observation)
        else:
            parts = [observation]
        arrays = [np.asarray(part, info["dtype"]) for part, info in zip(parts, self.inputs, strict=True)]
        single = arrays[0].shape == tuple(self.inputs[0]["shape"])
        for array, info in zip(arrays, self.inputs, strict=True):
            shape = tuple(info["shape"])
            label = f"observation {info['name']!r}" if len(self.inputs) > 1 else "observation"
            if (array.shape != shape) if single else (array.shape[1:] != shape):
                raise ValueError(
                    f"{label} of shape {array.shape}; expected {shape} or a batch "
                    f"[B, {', '.join(map(str, shape))}]"
                )
            # The exported model acts on NaN too (serving must not fail on one bad request); a
            # Python caller gets told, not handed an action computed from NaN.
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                where = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
                raise ValueError(f"{label} holds {array[where]} at index {where}; expected finite numbers")
        if single:
            arrays = [array[None] for array in arrays]
        return arrays, single, carried

    def _expected(self) -> str:
        return ", ".join(f"{i['key'] or i['name']}: {i['dtype']} {tuple(i['shape'])}" for i in self.inputs)

    def _mask(self, mask, batch: int, single: bool):
        """[B, W] bool, or None for a policy trained without masks."""
        if not self.has_mask:
            return None
        if mask is None:
            raise ValueError("this policy was trained with action masks: pass mask= (info['action_mask'])")
        if single and isinstance(mask, (tuple, list)) and mask and np.ndim(mask[0]) >= 1:
            mask = np.concatenate([np.asarray(m, bool).ravel() for m in mask])  # MultiDiscrete parts
        mask = np.asarray(mask, bool)
        if single:
            mask = mask[None]
        if mask.ndim != 2 or mask.shape[0] != batch:
            raise ValueError(
                f"mask of shape {mask.shape}; expected [{batch}, width] for {batch} observation(s)"
            )
        return mask

    def act(self, observation, mask=None, deterministic: bool = True, seed: int | None = None):
        """The action for one observation (as env.step takes it) or for a batch [B, ...].

        deterministic: the mode (most likely action / Gaussian mean, clipped to the bounds);
        False samples from the policy (Box actions then clipped to the bounds too).
        mask: the action mask, required by a policy trained with masks.
        """
        import tensorflow as tf

        arrays, single, carried = self._observation(observation)
        mask = self._mask(carried if mask is None else mask, len(arrays[0]), single)
        args = [tf.constant(a) for a in arrays] + ([tf.constant(mask)] if mask is not None else [])
        args += self._state(len(arrays[0]))
        if deterministic:
            out = self.model.action(*args)
        else:
            if seed is not None:
                self._rng = np.random.default_rng(seed)
            call_seed = tf.constant(int(self._rng.integers(0, 2**31 - 1)), tf.int64)
            out = self.model.sample(*args, call_seed)
        out = {key: value.numpy() for key, value in out.items() if key != "log_prob"}
        if self.state_size:
            self.state = out.pop("next_recurrent_state")
        return self._env_action(out, single)

    def _clip(self, values: np.ndarray) -> np.ndarray:
        return values if self.low is None else np.clip(values, self.low, self.high)

    def _env_action(self, out: dict, single: bool):
        if self.kind == "hybrid":
            action_type, parameters = out["action_type"], self._clip(out["parameters"])
            if single:
                action_type, parameters = int(action_type[0]), parameters[0]
            if self.dict_keys:
                return {self.dict_keys[0]: action_type, self.dict_keys[1]: parameters}
            return action_type, parameters
        action = out["action"]
        if self.kind == "box":
            action = self._clip(action)
        if not single:
            return action
        return int(action[0]) if self.kind == "discrete" else action[0]

    def value(self, observation) -> np.ndarray | float:
        """V(s) for one observation (a float) or a batch ([B])."""
        arrays, single, _ = self._observation(observation)
        value = self.model.value(*arrays, *self._state(len(arrays[0])))["value"].numpy()
        return float(value[0]) if single else value

    def __repr__(self) -> str:
        return f"LoadedPolicy({self.path!r}, env={self.metadata.get('env')!r}, action={self.kind})"


def load(path: str, best: bool = False) -> LoadedPolicy:
    """The policy in `path`: a run directory (its saved_model/, or best/saved_model/ with
    best=True) or a SavedModel directory. TensorFlow alone is needed."""
    import tensorflow as tf

    directory = saved_model_dir(path, best)
    try:
        model = tf.saved_model.load(directory)
    except (OSError, ValueError, tf.errors.OpError) as error:
        raise ConfigError(
            f"{directory!r} is not a loadable SavedModel: {str(error).splitlines()[0]}"
        ) from None
    if not hasattr(model, "metadata"):
        raise ConfigError(f"{directory!r} is a SavedModel but not one tfppo exported (no metadata signature)")
    return LoadedPolicy(model, directory)
