"""Keras actor (returns a tfp distribution) and critic (returns V(s)).

Shapes: B batch, D observation dim, A action dim (or number of discrete actions).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfppo import distributions
from tfppo.config import Config, ConfigError, call_user
from tfppo.envs import ActionSpec, EnvSpec
from tfppo.memory import Memory, split_state, state_sizes
from tfppo.numpy_policy import GSDE_EPSILON
from tfppo.observations import Component, ObservationSpec


class _TorchUniform:
    """PyTorch's default initialisation of nn.Linear and nn.Conv2d, for one layer: kernel and
    bias both U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (kaiming_uniform with a = sqrt(5)). Keras
    builds a layer's kernel before its bias, so the bias takes the fan-in the kernel's shape
    gave; the draws come from Keras' seeded global generator, as its own initializers'."""

    def __init__(self):
        self.fan_in = None

    def _uniform(self, shape, dtype):
        bound = 1.0 / math.sqrt(self.fan_in)
        return keras.initializers.RandomUniform(-bound, bound)(shape, dtype=dtype)

    def kernel(self, shape, dtype=None):
        self.fan_in = int(np.prod(shape[:-1]))  # Dense [in, out]; Conv2D [h, w, in, out].
        return self._uniform(shape, dtype)

    def bias(self, shape, dtype=None):
        if self.fan_in is None:
            raise RuntimeError("the torch bias initialiser ran before its layer's kernel")
        return self._uniform(shape, dtype)


def initializers(config: Config, gain: float) -> dict:
    """The kernel_initializer and bias_initializer keyword arguments of a Dense or Conv2D layer
    that tfppo builds: orthogonal with `gain` (--ortho_init), else Keras' Glorot uniform with
    zero biases (--dense_init=glorot) or PyTorch's default (--dense_init=torch, what SB3's
    presets with ortho_init=False start from). A fresh pair per layer."""
    if config.ortho_init:
        return {"kernel_initializer": keras.initializers.Orthogonal(gain=gain)}
    if config.dense_init == "torch":
        torch = _TorchUniform()
        return {"kernel_initializer": torch.kernel, "bias_initializer": torch.bias}
    return {"kernel_initializer": keras.initializers.GlorotUniform()}


def make_torso(hidden_sizes: Sequence[int], config: Config, name: str) -> keras.Sequential:
    """An MLP [B, D] -> [B, hidden_sizes[-1]] with config's activation and initialisation (no
    sizes: the identity, for a memory that reads the observation itself)."""
    if not hidden_sizes:
        return keras.Sequential([keras.layers.Identity(name="identity")], name=name)
    gain = math.sqrt(2.0) if config.ortho_init else 1.0
    layers = [
        keras.layers.Dense(
            size, activation=config.activation, **initializers(config, gain), name=f"dense_{i}"
        )
        for i, size in enumerate(hidden_sizes)
    ]
    return keras.Sequential(layers, name=name)


def make_cnn(component: Component, config: Config, name: str) -> keras.Sequential:
    """A CNN [B, H, W, C] float32 -> [B, F] for an image component (see Config.cnn)."""
    height, width, _ = component.image_hwc
    kind = config.cnn
    if kind == "auto":
        kind = "nature" if min(height, width) >= 36 else "small"
    # (filters, kernel, stride): Mnih et al. 2015 / CleanRL ppo_atari, or MinAtar's network.
    shapes = {"nature": ((32, 8, 4), (64, 4, 2), (64, 3, 1)), "small": ((16, 3, 1),), "flatten": ()}[kind]
    size = min(height, width)
    for _, kernel, stride in shapes:
        size = (size - kernel) // stride + 1
    if size < 1:
        raise ConfigError(
            f"--cnn={config.cnn} ({kind}) needs larger images than {component.image_hwc} (H, W, C); "
            "use --cnn=small"
        )
    gain = math.sqrt(2.0) if config.ortho_init else 1.0
    layers = [
        keras.layers.Conv2D(
            filters,
            kernel,
            strides=stride,
            activation="relu",
            **initializers(config, gain),
            name=f"conv_{i}",
        )
        for i, (filters, kernel, stride) in enumerate(shapes)
    ]
    return keras.Sequential([*layers, keras.layers.Flatten(name="flatten")], name=name)


def decode(spec: ObservationSpec, stored: tf.Tensor) -> list[tf.Tensor]:
    """The stored observation [B, *storage_shape] as one float32 tensor per component: vectors
    [B, D]; images [B, H, W, C] scaled to [0, 1] (uint8 / 255) and channels last; Discrete and
    MultiDiscrete indices one-hot [B, sum(nvec)]; bits [B, n]."""
    single = spec.single
    if single is not None and single.kind in ("vector", "image"):
        pieces = [tf.cast(stored, tf.float32)]
    else:
        flat = tf.cast(stored, tf.float32)
        pieces = tf.split(flat, [c.size for c in spec.components], axis=-1)
    decoded = []
    for component, piece in zip(spec.components, pieces, strict=True):
        if component.kind == "image":
            piece = tf.reshape(piece, [-1, *component.shape])  # flattened beside other components
            piece = piece * component.pixel_scale if component.pixel_scale != 1.0 else piece
            if component.channels_first:
                piece = tf.transpose(piece, [0, 2, 3, 1])
        elif component.kind in ("discrete", "multi_discrete"):
            indices = tf.cast(piece, tf.int32)
            piece = tf.concat(
                [tf.one_hot(indices[:, i], n, dtype=tf.float32) for i, n in enumerate(component.nvec)], -1
            )
        elif component.kind == "vector" and not component.shape:
            piece = tf.reshape(piece, [-1, 1])
        decoded.append(piece)
    return decoded


def decoded_shapes(spec: ObservationSpec):
    """The shapes (without batch) of what a custom torso receives: one tuple, or a dict / tuple
    of them for Dict / Tuple observations (see decode)."""
    shapes = []
    for c in spec.components:
        if c.kind == "image":
            shapes.append(tuple(c.image_hwc))
        elif c.kind in ("discrete", "multi_discrete"):
            shapes.append((sum(c.nvec),))
        else:
            shapes.append((max(c.size, 1),))
    return _structure(spec, shapes)


def _structure(spec: ObservationSpec, parts: list):
    if spec.container == "dict" and spec.single is None:
        return {c.key: part for c, part in zip(spec.components, parts, strict=True)}
    if spec.container == "tuple" and spec.single is None:
        return tuple(parts)
    return parts[0]


class ObservationTorso(keras.layers.Layer):
    """stored observation [B, *storage_shape] -> features [B, F], for every observation kind
    but a plain vector (whose torso is the MLP alone).

    Default: each component through its encoder (a CNN for images, one-hot for indices, the
    values for vectors and bits), concatenated, then `body` (the --hidden_sizes MLP). With a
    custom torso, `body` receives decode()'s tensors (a dict or tuple for Dict / Tuple spaces).
    """

    def __init__(self, spec: ObservationSpec, body: keras.Layer, config: Config | None, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.body = body
        self.encoded = config is not None  # False: the custom body gets the decoded structure.
        self.image_encoders = []
        for index, component in enumerate(spec.components):
            if self.encoded and component.kind == "image":
                # Named attributes: a checkpoint skips layers kept only in a Python list.
                setattr(self, f"cnn_{index}", make_cnn(component, config, f"cnn_{index}"))
                self.image_encoders.append(index)

    def call(self, stored: tf.Tensor) -> tf.Tensor:
        parts = decode(self.spec, stored)
        if not self.encoded:
            return self.body(_structure(self.spec, parts))
        for index in self.image_encoders:
            parts[index] = getattr(self, f"cnn_{index}")(parts[index])
        if len(parts) == 1:
            return self.body(parts[0])
        # --compute_dtype=bfloat16: a CNN's bfloat16 features beside float32 vectors.
        return self.body(tf.concat([tf.cast(part, tf.float32) for part in parts], axis=-1))


class CategoricalHead(keras.layers.Layer):
    """features [B, H] -> {"logits": [B, A]}."""

    def __init__(self, num_actions: int, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.logits = keras.layers.Dense(num_actions, **initializers(config, 0.01), name="logits")

    def call(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self.logits(features)}


class GaussianHead(keras.layers.Layer):
    """features [B, H] -> {"loc": [B, A], "scale": [B, A]}, with scale >= sigma_min.

    sigma modes: "fixed" (sigma_init, never trained), "state_independent" (a trained log-std
    vector, the usual PPO choice), "state_dependent" (a softplus head on the torso, as in the
    Morvan tutorial) or "gsde" (generalized state-dependent exploration, Raffin et al. 2021:
    the noise is features @ W with W ~ N(0, exp(log_std)^2) resampled now and then, so the
    action's marginal is Normal(loc, sqrt(features^2 @ exp(log_std)^2)); the head also returns
    the features as "latent", which acting multiplies by the sampled W).
    """

    def __init__(self, spec: ActionSpec, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.sigma_mode = config.sigma
        if self.sigma_mode == "gsde" and spec.kind != "box":
            raise ConfigError(f"--sigma=gsde applies to Box actions; the action space is {spec.kind}")
        self.gsde_full_std = config.gsde_full_std
        self.raw_init = max(config.sigma_init - config.sigma_min, 1e-6)
        self.sigma_init = config.sigma_init
        self.sigma_min = config.sigma_min
        self.squash_mean = config.squash_mean
        dim = spec.dim
        self.loc = keras.layers.Dense(dim, **initializers(config, 0.01), name="loc")
        low, high = spec.low, spec.high
        if self.squash_mean and not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
            raise ConfigError(f"--squash_mean needs finite Box bounds, got low={low} high={high}")
        self.center = (low + high) / 2.0 if self.squash_mean else None
        self.half_range = (high - low) / 2.0 if self.squash_mean else None
        # The parameter whose transform gives sigma_init at the start.
        raw_init = max(config.sigma_init - config.sigma_min, 1e-6)
        if self.sigma_mode == "state_independent":
            self.log_std = self.add_weight(
                shape=(dim,),
                initializer=keras.initializers.Constant(math.log(raw_init)),
                name="log_std",
            )
        elif self.sigma_mode == "state_dependent":
            softplus_inverse = math.log(math.expm1(raw_init))
            self.scale_head = keras.layers.Dense(
                dim,
                **initializers(config, 0.01)
                | {"bias_initializer": keras.initializers.Constant(softplus_inverse)},
                name="scale",
            )

    def build(self, input_shape) -> None:
        if self.sigma_mode == "gsde":  # [F, A] (or [F, 1]): F, the features' width, is known now
            columns = self.loc.units if self.gsde_full_std else 1
            self.log_std = self.add_weight(
                shape=(int(input_shape[-1]), columns),
                initializer=keras.initializers.Constant(math.log(self.raw_init)),
                name="log_std",
            )

    def call(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        loc = self.loc(features)
        if self.squash_mean:
            loc = self.center + self.half_range * tf.tanh(loc)
        if self.sigma_mode == "fixed":
            scale = tf.fill(tf.shape(loc), tf.constant(self.sigma_init, loc.dtype))
        elif self.sigma_mode == "state_independent":
            scale = tf.broadcast_to(tf.exp(self.log_std) + self.sigma_min, tf.shape(loc))
        elif self.sigma_mode == "gsde":
            # The features are not trained through the noise (SB3's learn_features=False).
            latent = tf.stop_gradient(features)
            variance = tf.matmul(tf.square(latent), tf.square(gsde_std(self.log_std, self.loc.units)))
            scale = tf.sqrt(variance + GSDE_EPSILON) + self.sigma_min
            return {"loc": loc, "scale": scale, "latent": latent}
        else:
            scale = tf.nn.softplus(self.scale_head(features)) + self.sigma_min
        return {"loc": loc, "scale": scale}


def gsde_std(log_std, num_actions: int):
    """gSDE: the exploration weights' std [F, A] (a per-feature log-std [F, 1] broadcast)."""
    std = tf.exp(log_std)
    return tf.broadcast_to(std, [tf.shape(std)[0], num_actions])


class HybridHead(keras.layers.Layer):
    """features -> {"logits": [B, K], "loc": [B, P], "scale": [B, P]}: action type and parameters."""

    def __init__(self, spec: ActionSpec, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.action_type = CategoricalHead(spec.num_actions, config, name="action_type")
        self.parameters = GaussianHead(spec, config, name="parameters")

    def call(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        return {**self.action_type(features), **self.parameters(features)}


def make_head(spec: ActionSpec, config: Config) -> keras.layers.Layer:
    # --sigma shapes a Normal's scale; a categorical head would ignore it without a word.
    if spec.kind in ("discrete", "multi_discrete", "binary") and config.sigma != "state_independent":
        raise ConfigError(
            f"--sigma={config.sigma} sets the noise of Box actions; the action space is {spec.kind} "
            "(leave --sigma at its default)"
        )
    if spec.kind == "discrete":
        return CategoricalHead(spec.num_actions, config, name="head")
    if spec.kind == "multi_discrete":
        return CategoricalHead(sum(spec.nvec), config, name="head")
    if spec.kind == "binary":  # one logit per bit
        return CategoricalHead(spec.num_actions, config, name="head")
    if spec.kind == "hybrid":
        return HybridHead(spec, config, name="head")
    return GaussianHead(spec, config, name="head")


def default_torso(spec: ObservationSpec, config: Config, sizes: Sequence[int]) -> keras.Layer:
    """The MLP of `sizes`; for observations other than one vector, behind their encoders."""
    mlp = make_torso(sizes, config, "torso" if spec.is_vector else "mlp")
    return mlp if spec.is_vector else ObservationTorso(spec, mlp, config, name="torso")


def _compute_in(models, policy: str) -> list:
    """Sets the Keras dtype policy of tfppo's torso layers in `models` (Actor, Critic: the
    layers make_torso and make_cnn built, none of a user's torso); returns (layer, old policy)
    for every layer it changed."""
    torsos = [model.torso for model in models if model.default_torso]
    layers = {id(layer): layer for torso in torsos for layer in torso_layers(torso)}.values()
    changed = [(layer, layer.dtype_policy) for layer in layers if layer.dtype_policy.name != policy]
    for layer, _ in changed:
        layer.dtype_policy = policy
    return changed


def torso_layers(torso) -> list:
    """The layers of a torso built as tfppo builds them (a Sequential, or an ObservationTorso):
    its CNNs' and its MLP's; none of any other model."""
    if isinstance(torso, ObservationTorso):
        cnns = [getattr(torso, f"cnn_{index}") for index in torso.image_encoders]
        return [layer for cnn in cnns for layer in cnn.layers] + torso_layers(torso.body)
    return list(torso.layers) if isinstance(torso, keras.Sequential) else []


@contextlib.contextmanager
def float32_compute(*models):
    """Inside, the torso layers of `models` compute in float32 whatever --compute_dtype says:
    what export traces, so a SavedModel runs on any CPU and converts to TFLite and ONNX (the
    weights are float32 either way)."""
    changed = _compute_in(models, "float32")
    try:
        yield
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


def _remember(memory: Memory | None, features, state, starts):
    """The torso's features through the memory and the MLP after it: (features, next state).
    state None: no memory; starts None: one step of B envs; else sequences (Memory.sequence)."""
    # --compute_dtype=bfloat16 computes the torso in bfloat16; memory and heads take float32
    # (a float32 tensor passes through tf.cast unchanged, no op added).
    features = tf.cast(features, tf.float32)
    if memory is None:
        return features, state
    if starts is None:
        features, state = memory(features, state)
    else:
        features, state = memory.sequence(features, starts, state)
    return memory.after(features) if memory.after is not None else features, state


class Actor(keras.Model):
    """observation [B, D] (and action_mask [B, W]) -> the policy distribution, batch shape [B].

    With --recurrent, a Memory between torso and head: the calls also take the recurrent state
    [B, S] (one step) or state [K, S] and episode starts [L*K] (K time-major sequences).
    """

    def __init__(
        self, spec: EnvSpec, config: Config, torso: keras.Layer | None = None, memory=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.action_spec = spec.action
        self.kind = spec.action.kind
        self.default_torso = torso is None  # tfppo's layers (float32_compute switches them)
        self.torso = torso or default_torso(spec.observation, config, config.hidden_sizes)
        self.memory = memory
        self.head = make_head(spec.action, config)

    def features(self, observation, state=None, starts=None):
        """(what the head reads: torso, memory and the MLP after it; the next state or None).
        With --shared_torso the critic's value head reads the same features."""
        return _remember(self.memory, self.torso(observation), state, starts)

    def params_and_state(self, observation, state=None, starts=None):
        """(the distribution's parameters, each [B, width]; the next recurrent state or None)."""
        features, state = self.features(observation, state, starts)
        return self.head(features), state

    def params(self, observation: tf.Tensor, state=None, starts=None) -> dict[str, tf.Tensor]:
        """The distribution's parameters (ActionSpec.param_dims()), each [B, width]."""
        return self.params_and_state(observation, state, starts)[0]

    def call(self, observation: tf.Tensor, action_mask: tf.Tensor | None = None, state=None, starts=None):
        # Not named `mask`: Keras 3 reserves that argument name for its own masking.
        params = self.params(observation, state, starts)
        return distributions.from_params(self.action_spec, params, action_mask)


class Critic(keras.Model):
    """observation [B, D] -> V(s) [B] (with a memory: and the state, as Actor)."""

    def __init__(
        self, spec: EnvSpec, config: Config, torso: keras.Layer | None = None, memory=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.default_torso = torso is None
        self.torso = torso or default_torso(spec.observation, config, config.critic_sizes)
        self.memory = memory
        self.value = keras.layers.Dense(1, **initializers(config, 1.0), name="value")
        self.norm_value = config.norm_value
        if self.norm_value:  # V(s) = head(s) * value_std + value_mean (tfppo.learner keeps them).
            self.value_mean = self.add_weight(
                shape=(), initializer="zeros", trainable=False, name="value_mean"
            )
            self.value_std = self.add_weight(shape=(), initializer="ones", trainable=False, name="value_std")
            # (count, mean, variance) of every return seen, in float64; value_mean and value_std
            # are its float32 copies (set with it, in one place: Learner._renormalize_values), so
            # the forward pass does no cast or square root.
            self.value_moments = self.add_weight(
                shape=(3,), initializer="zeros", trainable=False, dtype="float64", name="value_moments"
            )

    def value_and_state(self, observation, state=None, starts=None):
        features, state = _remember(self.memory, self.torso(observation), state, starts)
        return self.value_of(features), state

    def value_of(self, features: tf.Tensor) -> tf.Tensor:
        """V(s) [B] from the features the torso (and memory) gave."""
        value = tf.squeeze(self.value(features), axis=-1)
        return value * self.value_std + self.value_mean if self.norm_value else value

    def normalized(self, value: tf.Tensor) -> tf.Tensor:
        """--norm_value: values in the units the head predicts, (V - mean) / std."""
        return (value - self.value_mean) / self.value_std

    def call(self, observation: tf.Tensor, state=None, starts=None) -> tf.Tensor:
        return self.value_and_state(observation, state, starts)[0]


def shared_heads(actor: Actor, critic: Critic, observation, state=None, starts=None):
    """--shared_torso: (the actor's parameters, V(s) [B], the next state) from one pass of the
    torso and memory the two share (a CNN on pixels is most of the cost: never run it twice)."""
    features, state = actor.features(observation, state, starts)
    return actor.head(features), critic.value_of(features), state


TorsoBuilder = Callable[..., keras.Layer]


def check_torso(builder: TorsoBuilder, spec: ObservationSpec, role: str) -> keras.Layer:
    """A user's torso, checked: a Keras layer or model mapping what decode() gives for this
    observation (one [B, ...] tensor, or a dict / tuple of them) to features [B, F]. For anything
    but a plain vector it is wrapped in an ObservationTorso that decodes the stored observation."""
    name = getattr(builder, "__qualname__", type(builder).__qualname__)
    shapes = decoded_shapes(spec)
    torso = call_user(f"the {role} torso builder {name}", builder, shapes)
    if not isinstance(torso, keras.Layer):
        raise ConfigError(
            f"the {role} torso builder {name} returned {type(torso).__name__}; expected a keras.Model or layer"
        )
    if not spec.is_vector:
        torso = ObservationTorso(spec, torso, None, name="torso")
    dummy = tf.zeros((2,) + spec.storage_shape, spec.storage_dtype)
    features = call_user(f"the {role} torso from {name}, on observations of shape {shapes},", torso, dummy)
    if not isinstance(features, tf.Tensor) or features.shape.rank != 2 or features.shape[0] != 2:
        shape = getattr(features, "shape", type(features).__name__)
        raise ConfigError(
            f"the {role} torso from {name} returns {shape} for observations of shape {shapes}; "
            "expected [B, features]"
        )
    return torso


def build(spec: EnvSpec, config: Config, torso: TorsoBuilder | None = None, critic_torso=None):
    """Returns (actor, critic) with their variables created.

    torso: a builder `observation_shape -> keras.Model` for the actor's torso (default: the
    observation's encoders and the MLP of --hidden_sizes; see check_torso for what a custom one
    receives); critic_torso: the critic's (default: `torso` again, a second instance, or the
    encoders and the MLP of --critic_hidden_sizes). With --shared_torso the critic uses the actor's.
    """
    actor_torso = check_torso(torso, spec.observation, "actor") if torso is not None else None

    def memory(name):
        if config.recurrent == "none":
            return None
        sizes = config.rnn_hidden_sizes
        after = make_torso(sizes, config, "after") if sizes else None
        return Memory(config.recurrent, config.rnn_units, after, name=name)

    actor = Actor(spec, config, actor_torso, memory("memory"), name="actor")
    if config.shared_torso:
        critic_net, critic_memory = actor.torso, actor.memory
    else:
        builder = critic_torso or torso
        critic_net = check_torso(builder, spec.observation, "critic") if builder is not None else None
        critic_memory = memory("memory")
    critic = Critic(spec, config, torso=critic_net, memory=critic_memory, name="critic")
    dummy = tf.zeros((1,) + spec.observation_shape, spec.observation_dtype)
    actor_state, critic_state = split_state(tf.zeros([1, sum(state_sizes(actor, critic))]), actor, critic)
    actor.params(dummy, actor_state)
    critic(dummy, critic_state)
    if config.compute_dtype == "bfloat16":
        # Set after building: a Keras Sequential built on a bfloat16 first layer would cast its
        # input to bfloat16 for good (its InputLayer keeps that dtype), even in a float32 export.
        # Built in float32, each layer casts its own inputs, which float32_compute can undo.
        _compute_in((actor, critic), "mixed_bfloat16")
    return actor, critic
