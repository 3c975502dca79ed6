"""Observation spaces: what each part of an observation is, and how a batch of them is stored.

An observation is one or more *components*, each of one kind:

| kind             | space                                   | stored as (per row)      | encoded by (networks.py)    |
|------------------|-----------------------------------------|--------------------------|-----------------------------|
| "vector"         | Box of rank 0 or 1                      | its values               | the MLP (identity)          |
| "image"          | Box of rank 3 (HWC, or CHW: transposed) | its values               | a CNN (uint8 scaled to [0,1])|
| "discrete"       | Discrete(n)                             | the index (1 value)      | one-hot                     |
| "multi_discrete" | MultiDiscrete(nvec)                     | the indices              | one-hot per index           |
| "binary"         | MultiBinary(n)                          | its bits                 | the bits as floats          |

A Dict or Tuple of these has one component per key (the "action_mask" key of a Dict is the
action mask, not a component). The rollout stores a batch as ONE array [B, *storage_shape]:
a single component keeps its own shape (a [B, 84, 84, 4] image stays an image, a [B, D] vector
stays a vector), several are flattened side by side into [B, sum of sizes]. The array is uint8
when every component's values are exactly uint8 (images of uint8 or bool, bits, indices below
256): a stored Atari frame costs 1 byte per pixel. Otherwise float32.

This module imports neither TensorFlow nor (until a space is read) gymnasium: the env boundary
packs with NumPy, networks.py unpacks in-graph, and tfppo.runtimes feeds exported models with it.
"""

from __future__ import annotations

import dataclasses
import functools
import keyword
import math

import numpy as np

from tfppo.config import ConfigError

MASK_KEY = "action_mask"
KINDS = ("vector", "image", "discrete", "multi_discrete", "binary")
SUPPORTED = (
    "a Box of rank 1 (vector) or 3 (image, HWC or CHW), Discrete, MultiDiscrete, MultiBinary, "
    "or a Dict / Tuple of these"
)


@dataclasses.dataclass(frozen=True)
class Component:
    """One part of an observation.

    key: the Dict key, or the Tuple index as a string ("" for an observation that is not a Dict
    or Tuple). shape: as the env gives it. dtype: the env's dtype name. nvec: the number of
    values of each index (discrete: (n,)); start: the first index (gymnasium's `start`).
    channels_first: an image given as [C, H, W] (the networks transpose it to [H, W, C]).
    """

    key: str
    kind: str
    shape: tuple[int, ...]
    dtype: str
    nvec: tuple[int, ...] = ()
    start: tuple[int, ...] = ()
    channels_first: bool = False

    @property
    def size(self) -> int:
        """Values this component takes in a flattened row."""
        if self.kind in ("discrete", "multi_discrete"):
            return len(self.nvec)
        return math.prod(self.shape)

    @property
    def uint8_exact(self) -> bool:
        if self.kind in ("vector", "image"):
            return self.dtype in ("uint8", "bool")
        if self.kind == "binary":
            return True
        return max(self.nvec) <= 256

    @property
    def image_hwc(self) -> tuple[int, int, int]:
        """An image's [H, W, C] as the CNN sees it."""
        if self.channels_first:
            return (self.shape[1], self.shape[2], self.shape[0])
        return self.shape  # type: ignore[return-value]

    @property
    def pixel_scale(self) -> float:
        """Images: the factor that takes stored values to [0, 1] (uint8 / 255; bool and float 1)."""
        return 1.0 / 255.0 if self.dtype == "uint8" else 1.0


@dataclasses.dataclass(frozen=True)
class ObservationSpec:
    """The components of an observation; container: "" (one space), "dict" or "tuple"."""

    components: tuple[Component, ...]
    container: str = ""

    @property
    def single(self) -> Component | None:
        """The component when there is only one (stored in its own shape), else None."""
        return self.components[0] if len(self.components) == 1 else None

    @property
    def is_vector(self) -> bool:
        """One vector component: the MLP-only networks (and the NumPy acting mirror) of tfppo 0.x."""
        return self.single is not None and self.single.kind == "vector"

    @property
    def storage_shape(self) -> tuple[int, ...]:
        single = self.single
        if single is not None and single.kind in ("vector", "image"):
            return tuple(single.shape) if single.shape else (1,)
        return (sum(c.size for c in self.components),)

    @functools.cached_property  # read every env step; the spec is frozen
    def storage_dtype(self) -> np.dtype:
        if all(c.uint8_exact for c in self.components):
            return np.dtype(np.uint8)
        return np.dtype(np.float32)

    @property
    def floating(self) -> bool:
        """Values that can be NaN or inf (checked at the env boundary); uint8 ones cannot."""
        return self.storage_dtype == np.float32

    def vector_slots(self) -> np.ndarray:
        """Indices of the stored row's vector values (the only ones --norm_obs normalises)."""
        slots, offset = [], 0
        for component in self.components:
            if component.kind == "vector":
                slots.extend(range(offset, offset + component.size))
            offset += component.size
        return np.asarray(slots, np.int64)

    def describe(self) -> str:
        parts = [
            f"{c.key + ': ' if c.key else ''}{c.kind} {list(c.shape)} {c.dtype}"
            + (" channels-first" if c.channels_first else "")
            for c in self.components
        ]
        return ", ".join(parts)

    def pack(self, observation) -> np.ndarray:
        """A vector env's batched observation (an array, a dict or a tuple, mask key removed) as
        the stored [B, *storage_shape] array."""
        dtype = self.storage_dtype
        single = self.single
        if single is not None:
            value = self._part(observation, 0)
            return _pack_component(single, value, dtype, flatten=single.kind not in ("vector", "image"))
        parts = []
        for index, component in enumerate(self.components):
            parts.append(_pack_component(component, self._part(observation, index), dtype, flatten=True))
        return np.concatenate(parts, axis=1)

    def _part(self, observation, index: int):
        if self.container == "dict":
            return observation[self.components[index].key]
        return observation[index] if self.container == "tuple" else observation

    def pack_one(self, observation) -> np.ndarray:
        """One env's (unbatched) observation as a stored [1, *storage_shape] array."""
        if self.container == "dict":
            return self.pack({k: np.asarray(v)[None] for k, v in observation.items() if k != MASK_KEY})
        if self.container == "tuple":
            return self.pack(tuple(np.asarray(v)[None] for v in observation))
        return self.pack(np.asarray(observation)[None])

    def to_dict(self) -> dict:
        return {
            "container": self.container,
            "components": [dataclasses.asdict(c) for c in self.components],
        }

    @classmethod
    def from_dict(cls, values: dict) -> ObservationSpec:
        components = tuple(
            Component(
                **{**c, "shape": tuple(c["shape"]), "nvec": tuple(c["nvec"]), "start": tuple(c["start"])}
            )
            for c in values["components"]
        )
        return cls(components, values["container"])


def _pack_component(component: Component, value, dtype, flatten: bool) -> np.ndarray:
    array = np.asarray(value)
    batch = array.shape[0]
    if component.kind in ("discrete", "multi_discrete"):
        array = array.reshape(batch, -1) - np.asarray(component.start)
    if flatten or not component.shape:
        array = array.reshape(batch, -1)
    return array.astype(dtype, copy=False)


def vector_spec(dim: int) -> ObservationSpec:
    """A plain [dim] float32 observation (what specs saved before observation kinds describe)."""
    return ObservationSpec((Component("", "vector", (dim,), "float32"),))


def _component(key: str, space, image_layout: str, where: str) -> Component:
    import gymnasium as gym

    if isinstance(space, gym.spaces.Box):
        rank = len(space.shape)
        dtype = np.dtype(space.dtype).name
        if rank <= 1:
            return Component(key, "vector", tuple(space.shape), dtype)
        if rank == 3:
            return Component(
                key,
                "image",
                tuple(space.shape),
                dtype,
                channels_first=_channels_first(space.shape, image_layout),
            )
        raise ConfigError(
            f"unsupported observation space {space}{where}: a Box of rank {rank} has no encoder; "
            f"expected {SUPPORTED} (flatten it with gymnasium.wrappers.FlattenObservation, or pass "
            "your own torso=)"
        )
    if isinstance(space, gym.spaces.Discrete):
        return Component(key, "discrete", (), "int64", (int(space.n),), (int(space.start),))
    if isinstance(space, gym.spaces.MultiDiscrete) and space.nvec.ndim == 1:
        return Component(
            key,
            "multi_discrete",
            tuple(space.shape),
            "int64",
            tuple(int(n) for n in space.nvec),
            tuple(int(s) for s in np.broadcast_to(space.start, space.nvec.shape)),
        )
    if isinstance(space, gym.spaces.MultiBinary):
        return Component(key, "binary", tuple(int(n) for n in np.atleast_1d(space.shape)), "int8")
    raise ConfigError(f"unsupported observation space {space}{where}; expected {SUPPORTED}")


def _channels_first(shape: tuple[int, ...], image_layout: str) -> bool:
    """CHW when the flag says so; with "auto", when the first axis is small (<= 4, a frame stack
    or RGB) and smaller than the last: (4, 84, 84) is CHW, (84, 84, 4) and (10, 10, 6) are HWC."""
    if image_layout != "auto":
        return image_layout == "chw"
    return shape[0] <= 4 and shape[0] < shape[-1]


def observation_spec(space, image_layout: str = "auto") -> tuple[ObservationSpec, bool]:
    """Returns (the ObservationSpec of the gymnasium space `space`, whether a Dict carries the
    action mask); ConfigError for a space no encoder reads."""
    import gymnasium as gym

    if isinstance(space, gym.spaces.Dict):
        keys = [k for k in space.spaces if k != MASK_KEY]
        if not keys:
            raise ConfigError(f"Dict observation space {space} has only the '{MASK_KEY}' key")
        components = tuple(
            _component(str(k), space.spaces[k], image_layout, f" (Dict key {k!r})") for k in keys
        )
        return ObservationSpec(components, "dict"), MASK_KEY in space.spaces
    if isinstance(space, gym.spaces.Tuple):
        if not space.spaces:
            raise ConfigError("empty Tuple observation space; expected at least one part")
        components = tuple(
            _component(str(i), s, image_layout, f" (Tuple index {i})") for i, s in enumerate(space.spaces)
        )
        return ObservationSpec(components, "tuple"), False
    return ObservationSpec((_component("", space, image_layout, ""),)), False


RESERVED_INPUT_NAMES = ("mask", "seed")


def export_inputs(spec: ObservationSpec) -> list[dict]:
    """The exported model's observation inputs, one per component, each in the env's own shape:
    {"name", "key", "dtype", "shape"} (shape without the batch axis). dtype: float32 for vectors,
    uint8 for images of uint8 or bool (float32 for float images), int64 for indices, int8 for bits.
    One component is named "observation"; a Dict's are named by their keys (as Python
    identifiers: other characters become "_"; "observation_" is put before a key that is not one,
    or is "mask" or "seed"), a Tuple's "observation_<index>"."""
    inputs = []
    for component in spec.components:
        if spec.single is not None:
            name = "observation"
        elif spec.container == "dict":
            name = "".join(
                ch if ch.isascii() and (ch.isalnum() or ch == "_") else "_" for ch in component.key
            )
            if name in RESERVED_INPUT_NAMES or not name[:1].isalpha() or keyword.iskeyword(name):
                name = f"observation_{name}"
        else:
            name = f"observation_{component.key}"
        if component.kind == "vector":
            dtype, shape = "float32", tuple(component.shape) or (1,)
        elif component.kind == "image":
            dtype = "uint8" if component.dtype in ("uint8", "bool") else "float32"
            shape = tuple(component.shape)
        elif component.kind == "binary":
            dtype, shape = "int8", tuple(component.shape)
        else:
            dtype, shape = "int64", tuple(component.shape)
        inputs.append({"name": name, "key": component.key, "dtype": dtype, "shape": list(shape)})
    return inputs


def export_feed(spec: ObservationSpec, stored: np.ndarray) -> dict[str, np.ndarray]:
    """The exported model's named inputs (export_inputs) from a stored batch [B, *storage_shape]:
    the inverse of ObservationSpec.pack, for runtimes that replay stored observations."""
    inputs = export_inputs(spec)
    stored = np.asarray(stored)
    batch = stored.shape[0]
    single = spec.single
    if single is not None and single.kind in ("vector", "image"):
        info = inputs[0]
        return {info["name"]: stored.reshape(batch, *info["shape"]).astype(info["dtype"], copy=False)}
    feed, offset = {}, 0
    for component, info in zip(spec.components, inputs, strict=True):
        values = stored[:, offset : offset + component.size]
        offset += component.size
        if component.kind in ("discrete", "multi_discrete"):
            values = values.astype(np.int64) + np.asarray(component.start, np.int64)
        feed[info["name"]] = values.reshape(batch, *info["shape"]).astype(info["dtype"], copy=False)
    return feed
