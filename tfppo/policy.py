"""Acting: one compiled call per env step serves all B envs.

`step` samples actions and returns, in one call, what the rollout stores: the action, its
log-prob, V(s) and the distribution's parameters. Sampling uses stateless seeds drawn from a
checkpointed `tf.random.Generator`, so the same seed gives the same actions.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfppo import distributions
from tfppo.envs import EnvSpec
from tfppo.networks import gsde_std


class Policy(tf.Module):
    def __init__(self, actor, critic, spec: EnvSpec, seed: int, num_envs: int = 1):
        """num_envs: the batch `step` acts for (gSDE keeps one exploration matrix per env)."""
        super().__init__(name="policy")
        self.actor, self.critic, self.spec = actor, critic, spec
        self.kind = spec.action.kind
        self.rng = tf.random.Generator.from_seed(seed)
        self.gsde = getattr(actor.head, "sigma_mode", None) == "gsde"
        if self.gsde:  # [B, F, A] weights: env b's noise is latent_b @ exploration[b]
            shape = (num_envs, *actor.head.log_std.shape[:1], spec.action.dim)
            self.exploration = tf.Variable(tf.zeros(shape), trainable=False, name="exploration")
            self.compiled_reset_noise = tf.function(self._reset_noise, input_signature=[])
            self.reset_noise()
        observation = tf.TensorSpec(
            (None,) + spec.observation_shape, tf.as_dtype(spec.observation_dtype), "observation"
        )
        signature = [observation]
        if spec.has_mask:
            signature.append(tf.TensorSpec((None, spec.action.mask_width), tf.bool, "mask"))
        self.compiled_step = tf.function(self._step, input_signature=signature)
        self.compiled_mode = tf.function(self._mode, input_signature=signature)
        self.compiled_value = tf.function(self._value, input_signature=[observation])

    def _reset_noise(self):
        std = gsde_std(self.actor.head.log_std, self.spec.action.dim)
        seed = tf.cast(self.rng.make_seeds(1)[:, 0], tf.int32)
        self.exploration.assign(tf.random.stateless_normal(tf.shape(self.exploration), seed) * std)
        return tf.constant(0)

    def reset_noise(self) -> None:
        """gSDE: new exploration weights for every env (a no-op for the other sigma modes)."""
        if self.gsde:
            self.compiled_reset_noise()

    def _step(self, observation, mask=None) -> dict[str, tf.Tensor]:
        params = dict(self.actor.params(observation))
        latent = params.pop("latent", None)
        distribution = distributions.from_params(self.spec.action, params, mask)
        if latent is None:
            seed = tf.cast(self.rng.make_seeds(1)[:, 0], tf.int32)
            action = distribution.sample(seed=seed)
        else:  # gSDE: the noise is a function of the features, fixed between resamples.
            action = params["loc"] + tf.einsum("bf,bfa->ba", latent, self.exploration)
        out = {
            "action": action,
            "log_prob": distribution.log_prob(action),
            "value": self.critic(observation),
        }
        out.update(params)
        return out

    def _mode(self, observation, mask=None) -> tf.Tensor:
        distribution = self.actor(observation, action_mask=mask)
        return distributions.mode(self.spec.action, distribution)

    def _value(self, observation) -> tf.Tensor:
        return self.critic(observation)

    def _args(self, observation: np.ndarray, mask: np.ndarray | None):
        return (observation, mask) if self.spec.has_mask else (observation,)

    def step(self, observation: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Samples actions for a batch of observations [B, D]; returns NumPy arrays."""
        out = self.compiled_step(*self._args(observation, mask))
        return {key: value.numpy() for key, value in out.items()}

    def mode(self, observation: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The deterministic (most likely / mean) action, raw (not clipped)."""
        return self.compiled_mode(*self._args(observation, mask)).numpy()

    def value(self, observation: np.ndarray) -> np.ndarray:
        return self.compiled_value(observation).numpy()

    def sync(self, weights: dict | None = None) -> None:
        """Nothing to do: the compiled functions read the Keras variables directly."""
