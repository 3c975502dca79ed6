"""The policy distributions, in tfp only: masked Categorical, Independent Normal and Bernoulli.

A distribution is rebuilt from its parameters (a dict of tensors) both when acting and when
training, so the rollout can store the behaviour policy's parameters and the learner can
compute the exact KL(behaviour || current) from them.
"""

from __future__ import annotations

from collections.abc import Mapping

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def masked_logits(logits: tf.Tensor, mask: tf.Tensor | None) -> tf.Tensor:
    """Sets the logits of invalid actions to the most negative finite float.

    Args:
      logits: [..., A] float.
      mask: [..., A] bool, True where the action is valid, or None for no mask.

    Returns:
      [..., A] logits whose invalid entries have probability exactly 0 under a softmax and
      receive exactly zero gradient (tf.where routes no gradient to the unselected branch).

    Raises:
      InvalidArgumentError: a row of `mask` allows no action at all (which a plain softmax
      would silently turn into a uniform distribution over invalid actions).
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    if mask is None:
        return logits
    mask = tf.convert_to_tensor(mask, tf.bool)
    any_valid = tf.reduce_all(tf.reduce_any(mask, axis=-1))
    with tf.control_dependencies(
        [tf.debugging.Assert(any_valid, ["action mask with no valid action in some row"])]
    ):
        return tf.where(mask, logits, tf.constant(logits.dtype.min, logits.dtype))


def categorical(logits: tf.Tensor, mask: tf.Tensor | None = None) -> tfd.Distribution:
    """A Categorical over A actions with batch shape [...]; invalid actions get probability 0."""
    return tfd.Categorical(logits=masked_logits(logits, mask))


def gaussian(loc: tf.Tensor, scale: tf.Tensor) -> tfd.Distribution:
    """A diagonal Gaussian with event shape [A]: tfd.Independent(tfd.Normal(loc, scale), 1)."""
    scale = tf.broadcast_to(scale, tf.shape(loc))
    return tfd.Independent(tfd.Normal(loc=loc, scale=scale), reinterpreted_batch_ndims=1)


def bernoulli(logits: tf.Tensor) -> tfd.Distribution:
    """Independent bits (MultiBinary actions, as SB3's BernoulliDistribution): event shape [n],
    actions int32 in {0, 1}; log-prob, entropy and KL are sums over the bits."""
    logits = tf.convert_to_tensor(logits, tf.float32)
    return tfd.Independent(tfd.Bernoulli(logits=logits, dtype=tf.int32), reinterpreted_batch_ndims=1)


def _split_seed(seed, n: int):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), n))


class MultiCategorical:
    """Independent masked Categoricals, one per MultiDiscrete dimension (sizes nvec).

    logits and mask are [B, sum(nvec)], the dimensions side by side; actions are [B, len(nvec)]
    int32. The joint log-prob, entropy and KL are sums over the dimensions.
    """

    def __init__(self, logits, mask, nvec):
        self.nvec = tuple(nvec)
        parts = tf.split(tf.convert_to_tensor(logits, tf.float32), self.nvec, axis=-1)
        masks = (
            [None] * len(parts)
            if mask is None
            else tf.split(tf.convert_to_tensor(mask, tf.bool), self.nvec, axis=-1)
        )
        self.parts = [categorical(p, m) for p, m in zip(parts, masks, strict=True)]

    def log_prob(self, action):
        action = tf.convert_to_tensor(action, tf.int32)
        return tf.add_n([part.log_prob(action[..., i]) for i, part in enumerate(self.parts)])

    def entropy(self):
        return tf.add_n([part.entropy() for part in self.parts])

    def kl_divergence(self, other: MultiCategorical):
        return tf.add_n([a.kl_divergence(b) for a, b in zip(self.parts, other.parts, strict=True)])

    def sample(self, seed):
        seeds = _split_seed(seed, len(self.parts))
        return tf.stack([part.sample(seed=s) for part, s in zip(self.parts, seeds, strict=True)], axis=-1)

    def mode(self):
        return tf.stack([tf.argmax(p.logits_parameter(), -1, output_type=tf.int32) for p in self.parts], -1)


class Hybrid:
    """A parameterised action (H-PPO, Fan et al. 2019): an action type k ~ Categorical(logits,
    mask) and parameters x ~ Normal(loc, scale) [B, P], of which type k uses only
    parameter_mask[k] ([K, P] bool).

    Actions are [B, 1 + P] float32: the type, then all P parameters (unused ones are sampled but
    count nowhere). log p(k, x) = log p(k) + sum_j m[k, j] log N(x_j); the entropy and the KL
    weight each parameter by the probability that the type drawn uses it, which makes them the
    exact entropy and KL of this joint distribution.
    """

    def __init__(self, logits, mask, loc, scale, parameter_mask):
        self.type = categorical(logits, mask)
        self.parameters = tfd.Normal(loc=loc, scale=tf.broadcast_to(scale, tf.shape(loc)))
        self.parameter_mask = tf.constant(parameter_mask, tf.float32)

    def log_prob_parts(self, action):
        """(log p(type) [B], log p(used parameters | type) [B])."""
        action = tf.convert_to_tensor(action, tf.float32)
        action_type = tf.cast(action[..., 0], tf.int32)
        used = tf.gather(self.parameter_mask, action_type)
        return self.type.log_prob(action_type), tf.reduce_sum(
            used * self.parameters.log_prob(action[..., 1:]), -1
        )

    def log_prob(self, action):
        type_log_prob, parameter_log_prob = self.log_prob_parts(action)
        return type_log_prob + parameter_log_prob

    def _usage(self):
        """[B, P]: the probability that the drawn type uses each parameter."""
        return tf.matmul(self.type.probs_parameter(), self.parameter_mask)

    def entropy(self):
        return self.type.entropy() + tf.reduce_sum(self._usage() * self.parameters.entropy(), -1)

    def kl_divergence(self, other: Hybrid):
        parameter_kl = self.parameters.kl_divergence(other.parameters)
        return self.type.kl_divergence(other.type) + tf.reduce_sum(self._usage() * parameter_kl, -1)

    def sample(self, seed):
        type_seed, parameter_seed = _split_seed(seed, 2)
        action_type = tf.cast(self.type.sample(seed=type_seed), tf.float32)
        return tf.concat([action_type[..., None], self.parameters.sample(seed=parameter_seed)], -1)

    def mode(self):
        action_type = tf.argmax(self.type.logits_parameter(), -1, output_type=tf.int32)
        return tf.concat([tf.cast(action_type, tf.float32)[..., None], self.parameters.loc], -1)


def from_params(spec, params: Mapping[str, tf.Tensor], mask: tf.Tensor | None = None):
    """The distribution of an ActionSpec (tfppo.envs) from its parameters (spec.param_dims())."""
    kind = spec.kind
    if kind == "discrete":
        return categorical(params["logits"], mask)
    if kind == "box":
        return gaussian(params["loc"], params["scale"])
    if kind == "multi_discrete":
        return MultiCategorical(params["logits"], mask, spec.nvec)
    if kind == "binary":
        return bernoulli(params["logits"])
    if kind == "hybrid":
        return Hybrid(params["logits"], mask, params["loc"], params["scale"], spec.parameter_mask)
    raise ValueError(f"unknown action kind {kind!r}")


def mode(spec, distribution) -> tf.Tensor:
    """The deterministic action: most likely discrete choices, Gaussian means."""
    if spec.kind == "discrete":
        return tf.argmax(distribution.logits_parameter(), axis=-1, output_type=tf.int32)
    if spec.kind == "box":
        return distribution.mean()
    if spec.kind == "binary":  # The more likely value of each bit (a tie, logit 0, gives 0).
        return tf.cast(distribution.distribution.logits > 0, tf.int32)
    return distribution.mode()


def scale_of(spec, distribution):
    """The Gaussian scale [B, A] of box and hybrid distributions, else None."""
    if spec.kind == "box":
        return distribution.distribution.scale
    if spec.kind == "hybrid":
        return distribution.parameters.scale
    return None
