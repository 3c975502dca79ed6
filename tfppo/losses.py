"""Pure PPO loss functions. Each returns (loss, metrics) where metrics is a dict of scalars.

Shapes: M minibatch. All inputs are [M] float32 unless noted.
"""

from __future__ import annotations

import tensorflow as tf

Metrics = dict[str, tf.Tensor]


def normalize_advantages(advantage: tf.Tensor, std_floor: float = 1e-6, moments=None) -> tf.Tensor:
    """(A - mean) / max(std, std_floor): a batch with no spread gives zeros, never NaN.

    moments: x -> (mean, variance); default this batch's. Multi-worker training passes the
    all-reduced statistics of every worker's batch (tfppo.distributed.Replicas.moments).
    """
    mean, variance = tf.nn.moments(advantage, axes=[0]) if moments is None else moments(advantage)
    return (advantage - mean) / tf.maximum(tf.sqrt(variance), std_floor)


def probability_ratio(
    log_prob: tf.Tensor, behavior_log_prob: tf.Tensor, mode: str = "log_prob"
) -> tuple[tf.Tensor, tf.Tensor]:
    """(log r, r) for r = pi / pi_old.

    log_prob: exp(log_prob - behavior_log_prob), exact for any density.
    prob_eps: pi / (pi_old + 1e-5), the Morvan tutorial's; biased where pi_old is small and
    0 / 0-prone where densities underflow (kept for tutorial parity only).
    """
    if mode == "prob_eps":
        ratio = tf.exp(log_prob) / (tf.exp(behavior_log_prob) + 1e-5)
        return tf.math.log(tf.maximum(ratio, 1e-30)), ratio
    log_ratio = log_prob - behavior_log_prob
    return log_ratio, tf.exp(log_ratio)


def _ratio_metrics(log_ratio: tf.Tensor, ratio: tf.Tensor, clip_epsilon) -> Metrics:
    return {
        # k1 = E[-log r] and k3 = E[(r - 1) - log r] estimate KL(behaviour || current) from
        # samples of the behaviour policy (Schulman, "Approximating KL divergence", 2020).
        "approx_kl_k1": tf.reduce_mean(-log_ratio),
        "approx_kl_k3": tf.reduce_mean((ratio - 1.0) - log_ratio),
        "clip_fraction": tf.reduce_mean(tf.cast(tf.abs(ratio - 1.0) > clip_epsilon, tf.float32)),
        "ratio_max": tf.reduce_max(ratio),
    }


def clipped_surrogate_loss(
    log_prob: tf.Tensor,
    behavior_log_prob: tf.Tensor,
    advantage: tf.Tensor,
    clip_epsilon,
    ratio_mode: str = "log_prob",
) -> tuple[tf.Tensor, Metrics]:
    """-E[min(r A, clip(r, 1 - eps, 1 + eps) A)], r from `probability_ratio`.

    Where the clipped term is the smaller one, the gradient is exactly zero.
    """
    log_ratio, ratio = probability_ratio(log_prob, behavior_log_prob, ratio_mode)
    unclipped = ratio * advantage
    clipped = tf.clip_by_value(ratio, 1.0 - clip_epsilon, 1.0 + clip_epsilon) * advantage
    loss = -tf.reduce_mean(tf.minimum(unclipped, clipped))
    metrics = _ratio_metrics(log_ratio, ratio, clip_epsilon)
    metrics["policy_loss"] = loss
    return loss, metrics


def kl_penalty_loss(
    log_prob: tf.Tensor,
    behavior_log_prob: tf.Tensor,
    advantage: tf.Tensor,
    kl: tf.Tensor,
    kl_lambda,
    clip_epsilon=0.2,
    ratio_mode: str = "log_prob",
) -> tuple[tf.Tensor, Metrics]:
    """-(E[r A] - lambda E[KL(behaviour || current)]) (PPO paper, eq. 8).

    `kl` is [M], the exact per-sample KL; `clip_epsilon` is only used for the clip-fraction metric.
    """
    log_ratio, ratio = probability_ratio(log_prob, behavior_log_prob, ratio_mode)
    surrogate = tf.reduce_mean(ratio * advantage)
    mean_kl = tf.reduce_mean(kl)
    loss = -(surrogate - kl_lambda * mean_kl)
    metrics = _ratio_metrics(log_ratio, ratio, clip_epsilon)
    metrics["policy_loss"] = loss
    return loss, metrics


def value_loss(
    value: tf.Tensor, target: tf.Tensor, behavior_value: tf.Tensor | None = None, clip=0.0
) -> tuple[tf.Tensor, Metrics]:
    """E[(V(s) - R)^2], the tutorial's critic loss.

    With clip > 0 (PPO2's value clipping), E[max((V - R)^2, (V_clip - R)^2)] where
    V_clip = V_behavior + clip(V - V_behavior, -clip, clip).
    """
    loss = tf.square(target - value)
    if clip:
        clipped = behavior_value + tf.clip_by_value(value - behavior_value, -clip, clip)
        loss = tf.maximum(loss, tf.square(target - clipped))
    loss = tf.reduce_mean(loss)
    return loss, {"value_loss": loss}


def kl_hinge(kl: tf.Tensor, kl_target, coef) -> tf.Tensor:
    """coef * E[max(0, KL - 2 target)^2]: the extra penalty of Heess et al. (2017)."""
    return coef * tf.reduce_mean(tf.square(tf.maximum(0.0, kl - 2.0 * kl_target)))


def explained_variance(value: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
    """1 - Var[R - V] / Var[R]: 1 is a perfect critic, 0 no better than a constant."""
    target_variance = tf.math.reduce_variance(target)
    residual_variance = tf.math.reduce_variance(target - value)
    return tf.where(target_variance > 0, 1.0 - residual_variance / tf.maximum(target_variance, 1e-12), 0.0)


def adapt_kl_lambda(kl_lambda, kl, kl_target, rule: str, lambda_min, lambda_max):
    """The adaptive KL coefficient, clipped to [lambda_min, lambda_max].

    rule "ppo" (PPO paper and the Morvan tutorial): halve when kl < target / 1.5, double when
    kl > 1.5 * target. rule "dppo" (Heess et al. 2017): x0.5 when kl < 0.5 * target, x1.5 when
    kl > 2 * target. Works on Python floats and on tensors.
    """
    if rule == "ppo":
        low, high, down, up = kl_target / 1.5, kl_target * 1.5, 0.5, 2.0
    elif rule == "dppo":
        low, high, down, up = kl_target * 0.5, kl_target * 2.0, 0.5, 1.5
    else:
        raise ValueError(f"unknown kl rule {rule!r}; expected 'ppo' or 'dppo'")
    factor = tf.where(kl < low, down, tf.where(kl > high, up, 1.0))
    return tf.clip_by_value(kl_lambda * factor, lambda_min, lambda_max)
