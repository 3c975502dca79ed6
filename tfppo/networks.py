"""Keras actor (returns a tfp distribution) and critic (returns V(s)).

Shapes: B batch, D observation dim, A action dim (or number of discrete actions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from tfppo import distributions
from tfppo.config import Config, ConfigError, call_user
from tfppo.envs import ActionSpec, EnvSpec


def _initializer(ortho: bool, gain: float) -> keras.initializers.Initializer:
    if ortho:
        return keras.initializers.Orthogonal(gain=gain)
    return keras.initializers.GlorotUniform()


def make_torso(hidden_sizes: Sequence[int], activation: str, ortho_init: bool, name: str) -> keras.Sequential:
    """An MLP [B, D] -> [B, hidden_sizes[-1]]."""
    gain = math.sqrt(2.0) if ortho_init else 1.0
    layers = [
        keras.layers.Dense(
            size,
            activation=activation,
            kernel_initializer=_initializer(ortho_init, gain),
            name=f"dense_{i}",
        )
        for i, size in enumerate(hidden_sizes)
    ]
    return keras.Sequential(layers, name=name)


class CategoricalHead(keras.layers.Layer):
    """features [B, H] -> {"logits": [B, A]}."""

    def __init__(self, num_actions: int, ortho_init: bool, **kwargs):
        super().__init__(**kwargs)
        self.logits = keras.layers.Dense(
            num_actions, kernel_initializer=_initializer(ortho_init, 0.01), name="logits"
        )

    def call(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self.logits(features)}


class GaussianHead(keras.layers.Layer):
    """features [B, H] -> {"loc": [B, A], "scale": [B, A]}, with scale >= sigma_min.

    sigma modes: "fixed" (sigma_init, never trained), "state_independent" (a trained log-std
    vector, the usual PPO choice) or "state_dependent" (a softplus head on the torso, as in the
    Morvan tutorial).
    """

    def __init__(self, spec: ActionSpec, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.sigma_mode = config.sigma
        self.sigma_init = config.sigma_init
        self.sigma_min = config.sigma_min
        self.squash_mean = config.squash_mean
        dim = spec.dim
        self.loc = keras.layers.Dense(
            dim, kernel_initializer=_initializer(config.ortho_init, 0.01), name="loc"
        )
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
                kernel_initializer=_initializer(config.ortho_init, 0.01),
                bias_initializer=keras.initializers.Constant(softplus_inverse),
                name="scale",
            )

    def call(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        loc = self.loc(features)
        if self.squash_mean:
            loc = self.center + self.half_range * tf.tanh(loc)
        if self.sigma_mode == "fixed":
            scale = tf.fill(tf.shape(loc), tf.constant(self.sigma_init, loc.dtype))
        elif self.sigma_mode == "state_independent":
            scale = tf.broadcast_to(tf.exp(self.log_std) + self.sigma_min, tf.shape(loc))
        else:
            scale = tf.nn.softplus(self.scale_head(features)) + self.sigma_min
        return {"loc": loc, "scale": scale}


class HybridHead(keras.layers.Layer):
    """features -> {"logits": [B, K], "loc": [B, P], "scale": [B, P]}: action type and parameters."""

    def __init__(self, spec: ActionSpec, config: Config, **kwargs):
        super().__init__(**kwargs)
        self.action_type = CategoricalHead(spec.num_actions, config.ortho_init, name="action_type")
        self.parameters = GaussianHead(spec, config, name="parameters")

    def call(self, features: tf.Tensor) -> dict[str, tf.Tensor]:
        return {**self.action_type(features), **self.parameters(features)}


def make_head(spec: ActionSpec, config: Config) -> keras.layers.Layer:
    if spec.kind == "discrete":
        return CategoricalHead(spec.num_actions, config.ortho_init, name="head")
    if spec.kind == "multi_discrete":
        return CategoricalHead(sum(spec.nvec), config.ortho_init, name="head")
    if spec.kind == "hybrid":
        return HybridHead(spec, config, name="head")
    return GaussianHead(spec, config, name="head")


class Actor(keras.Model):
    """observation [B, D] (and action_mask [B, W]) -> the policy distribution, batch shape [B]."""

    def __init__(self, spec: EnvSpec, config: Config, torso: keras.Layer | None = None, **kwargs):
        super().__init__(**kwargs)
        self.action_spec = spec.action
        self.kind = spec.action.kind
        if torso is None:
            torso = make_torso(config.hidden_sizes, config.activation, config.ortho_init, "torso")
        self.torso = torso
        self.head = make_head(spec.action, config)

    def params(self, observation: tf.Tensor) -> dict[str, tf.Tensor]:
        """The distribution's parameters (ActionSpec.param_dims()), each [B, width]."""
        return self.head(self.torso(observation))

    def call(self, observation: tf.Tensor, action_mask: tf.Tensor | None = None):
        # Not named `mask`: Keras 3 reserves that argument name for its own masking.
        return distributions.from_params(self.action_spec, self.params(observation), action_mask)


class Critic(keras.Model):
    """observation [B, D] -> V(s) [B]."""

    def __init__(self, config: Config, torso: keras.Layer | None = None, **kwargs):
        super().__init__(**kwargs)
        if torso is None:
            torso = make_torso(config.critic_sizes, config.activation, config.ortho_init, "torso")
        self.torso = torso
        self.value = keras.layers.Dense(
            1, kernel_initializer=_initializer(config.ortho_init, 1.0), name="value"
        )

    def call(self, observation: tf.Tensor) -> tf.Tensor:
        return tf.squeeze(self.value(self.torso(observation)), axis=-1)


TorsoBuilder = Callable[[tuple[int, ...]], keras.Layer]


def check_torso(builder: TorsoBuilder, observation_shape: tuple[int, ...], role: str) -> keras.Layer:
    """A user's torso, checked: a Keras layer or model mapping [B, *observation_shape] to [B, F]."""
    name = getattr(builder, "__qualname__", type(builder).__qualname__)
    torso = call_user(f"the {role} torso builder {name}", builder, tuple(observation_shape))
    if not isinstance(torso, keras.Layer):
        raise ConfigError(
            f"the {role} torso builder {name} returned {type(torso).__name__}; expected a keras.Model or layer"
        )
    dummy = tf.zeros((2,) + tuple(observation_shape), tf.float32)
    features = call_user(
        f"the {role} torso from {name}, on observations of shape {dummy.shape},", torso, dummy
    )
    if not isinstance(features, tf.Tensor) or features.shape.rank != 2 or features.shape[0] != 2:
        shape = getattr(features, "shape", type(features).__name__)
        raise ConfigError(
            f"the {role} torso from {name} returns {shape} for observations of shape {dummy.shape}; "
            "expected [B, features]"
        )
    return torso


def build(spec: EnvSpec, config: Config, torso: TorsoBuilder | None = None, critic_torso=None):
    """Returns (actor, critic) with their variables created.

    torso: a builder `observation_shape -> keras.Model` for the actor's torso (default: the
    MLP of --hidden_sizes); critic_torso: the critic's (default: `torso` again, a second
    instance, or the MLP of --critic_hidden_sizes). With --shared_torso the critic uses the actor's.
    """
    shape = spec.observation_shape
    actor_torso = check_torso(torso, shape, "actor") if torso is not None else None
    actor = Actor(spec, config, actor_torso, name="actor")
    if config.shared_torso:
        critic_net = actor.torso
    else:
        builder = critic_torso or torso
        critic_net = check_torso(builder, shape, "critic") if builder is not None else None
    critic = Critic(config, torso=critic_net, name="critic")
    dummy = tf.zeros((1,) + shape, tf.float32)
    actor.params(dummy)
    critic(dummy)
    return actor, critic
