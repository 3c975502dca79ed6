"""The policy distributions, in tfp only: masked Categorical and Independent Normal.

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


def from_params(
    kind: str, params: Mapping[str, tf.Tensor], mask: tf.Tensor | None = None
) -> tfd.Distribution:
    """Builds the distribution of an action kind ("discrete" or "box") from its parameters."""
    if kind == "discrete":
        return categorical(params["logits"], mask)
    if kind == "box":
        return gaussian(params["loc"], params["scale"])
    raise ValueError(f"unknown action kind {kind!r}; expected 'discrete' or 'box'")


def mode(kind: str, distribution: tfd.Distribution) -> tf.Tensor:
    """The deterministic action: the most likely discrete action, or the Gaussian mean."""
    if kind == "discrete":
        return tf.argmax(distribution.logits_parameter(), axis=-1, output_type=tf.int32)
    return distribution.mean()
