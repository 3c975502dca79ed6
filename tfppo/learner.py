"""The optimizers, the KL coefficient as a tf.Variable, and the compiled PPO update.

One `update` call runs every actor epoch and minibatch, then every critic epoch and minibatch,
in graph loops with in-graph shuffling: the batch crosses into TensorFlow once per update.

Shapes: N batch (num_steps * num_envs), M minibatch, D observation dim, A action dim.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfppo import distributions, losses
from tfppo.config import Config
from tfppo.envs import EnvSpec

ACTOR_METRICS = (
    "policy_loss",
    "entropy",
    "approx_kl_k1",
    "approx_kl_k3",
    "clip_fraction",
    "ratio_max",
    "actor_grad_norm",
)
CRITIC_METRICS = ("value_loss", "critic_grad_norm")


def param_dims(spec: EnvSpec) -> dict[str, int]:
    """The behaviour distribution's parameters the rollout stores, with their widths."""
    if spec.action.kind == "discrete":
        return {"logits": spec.action.num_actions}
    return {"loc": spec.action.dim, "scale": spec.action.dim}


def batch_signature(spec: EnvSpec, config: Config) -> dict[str, tf.TensorSpec]:
    n = config.batch_size
    signature = {
        "observation": tf.TensorSpec((n,) + spec.observation_shape, tf.float32),
        "behavior_log_prob": tf.TensorSpec((n,), tf.float32),
        "behavior_value": tf.TensorSpec((n,), tf.float32),
        "advantage": tf.TensorSpec((n,), tf.float32),
        "return": tf.TensorSpec((n,), tf.float32),
    }
    if spec.action.kind == "discrete":
        signature["action"] = tf.TensorSpec((n,), tf.int32)
    else:
        signature["action"] = tf.TensorSpec((n, spec.action.dim), tf.float32)
    for key, dim in param_dims(spec).items():
        signature[f"behavior_{key}"] = tf.TensorSpec((n, dim), tf.float32)
    if spec.has_mask:
        signature["mask"] = tf.TensorSpec((n, spec.action.num_actions), tf.bool)
    return signature


class Learner(tf.Module):
    """Owns the optimizers and the adaptive KL coefficient; `update(batch, progress)` trains."""

    def __init__(self, actor, critic, spec: EnvSpec, config: Config):
        super().__init__(name="learner")
        self.actor, self.critic, self.spec, self.config = actor, critic, spec, config
        self.kind = spec.action.kind
        self.actor_optimizer = keras.optimizers.Adam(config.actor_lr, epsilon=1e-5)
        self.critic_optimizer = keras.optimizers.Adam(config.critic_lr, epsilon=1e-5)
        # Built now so a checkpoint restores their slots instead of deferring them.
        self.actor_optimizer.build(actor.trainable_variables)
        self.critic_optimizer.build(critic.trainable_variables)
        self.kl_lambda = tf.Variable(
            config.kl_lambda_init, dtype=tf.float32, trainable=False, name="kl_lambda"
        )
        self.rng = tf.random.Generator.from_seed(config.seed + 7919)
        self.param_keys = tuple(param_dims(spec))
        self.compiled_update = tf.function(
            self._update,
            input_signature=[batch_signature(spec, config), tf.TensorSpec((), tf.float32)],
        )

    def update(self, batch: dict[str, np.ndarray], progress: float) -> dict[str, float]:
        """Trains on one flat batch; progress in [0, 1] drives learning-rate annealing."""
        metrics = self.compiled_update(batch, tf.constant(progress, tf.float32))
        return {key: float(value) for key, value in metrics.items()}

    # --- compiled code below: no Python side effects, no .numpy() ---

    def _behavior(self, batch, mask):
        params = {key: batch[f"behavior_{key}"] for key in self.param_keys}
        return distributions.from_params(self.kind, params, mask)

    def _permutation(self):
        seed = tf.cast(self.rng.make_seeds(1)[:, 0], tf.int32)
        return tf.argsort(tf.random.stateless_uniform([self.config.batch_size], seed))

    def _minibatch(self, batch, advantage, indices):
        minibatch = {key: tf.gather(value, indices) for key, value in batch.items()}
        minibatch["advantage"] = tf.gather(advantage, indices)
        if self.config.norm_adv == "minibatch":
            minibatch["advantage"] = losses.normalize_advantages(minibatch["advantage"])
        return minibatch

    def _apply(self, optimizer, loss_fn, variables):
        with tf.GradientTape() as tape:
            loss, metrics = loss_fn()
        gradients = tape.gradient(loss, variables)
        if self.config.max_grad_norm > 0:
            gradients, norm = tf.clip_by_global_norm(gradients, self.config.max_grad_norm)
        else:
            norm = tf.linalg.global_norm(gradients)
        optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return metrics, norm

    def _actor_step(self, minibatch):
        mask = minibatch.get("mask")
        config = self.config

        def loss_fn():
            distribution = self.actor(minibatch["observation"], action_mask=mask)
            log_prob = distribution.log_prob(minibatch["action"])
            entropy = tf.reduce_mean(distribution.entropy())
            if config.method == "clip":
                loss, metrics = losses.clipped_surrogate_loss(
                    log_prob, minibatch["behavior_log_prob"], minibatch["advantage"], config.clip_epsilon
                )
            else:
                kl = self._behavior(minibatch, mask).kl_divergence(distribution)
                loss, metrics = losses.kl_penalty_loss(
                    log_prob,
                    minibatch["behavior_log_prob"],
                    minibatch["advantage"],
                    kl,
                    self.kl_lambda,
                    config.clip_epsilon,
                )
            metrics["entropy"] = entropy
            return loss - config.ent_coef * entropy, metrics

        metrics, norm = self._apply(self.actor_optimizer, loss_fn, self.actor.trainable_variables)
        metrics["actor_grad_norm"] = norm
        return tf.stack([metrics[name] for name in ACTOR_METRICS])

    def _critic_step(self, minibatch):
        def loss_fn():
            return losses.value_loss(self.critic(minibatch["observation"]), minibatch["return"])

        metrics, norm = self._apply(self.critic_optimizer, loss_fn, self.critic.trainable_variables)
        metrics["critic_grad_norm"] = norm
        return tf.stack([metrics[name] for name in CRITIC_METRICS])

    def _batch_kl(self, batch, behavior):
        """Exact mean KL(behaviour || current) over the whole batch."""
        current = self.actor(batch["observation"], action_mask=batch.get("mask"))
        return tf.reduce_mean(behavior.kl_divergence(current)), current

    def _update(self, batch, progress):
        config = self.config
        num_minibatches = config.num_minibatches
        size = config.minibatch_size
        decay = (1.0 - progress) if config.anneal_lr else tf.constant(1.0)
        self.actor_optimizer.learning_rate.assign(config.actor_lr * decay)
        self.critic_optimizer.learning_rate.assign(config.critic_lr * decay)
        advantage = batch["advantage"]
        if config.norm_adv == "batch":
            advantage = losses.normalize_advantages(advantage)
        behavior = self._behavior(batch, batch.get("mask"))
        # Stop the actor epochs early: the tutorial's 4 x target for kl_pen, --target_kl for both.
        stop_kl = tf.constant(np.inf, tf.float32)
        if config.method == "kl_pen":
            stop_kl = tf.minimum(stop_kl, 4.0 * config.kl_target)
        if config.target_kl > 0:
            stop_kl = tf.minimum(stop_kl, config.target_kl)

        actor_sums = tf.zeros([len(ACTOR_METRICS)])
        actor_epochs_run = tf.constant(0)
        kl = tf.constant(0.0)
        for _ in tf.range(config.actor_epochs):
            permutation = self._permutation()
            for i in tf.range(num_minibatches):
                indices = permutation[i * size : (i + 1) * size]
                actor_sums += self._actor_step(self._minibatch(batch, advantage, indices))
            actor_epochs_run += 1
            kl, _ = self._batch_kl(batch, behavior)
            if kl > stop_kl:
                break
        kl_lambda_used = tf.identity(self.kl_lambda)
        if config.method == "kl_pen":
            self.kl_lambda.assign(
                losses.adapt_kl_lambda(
                    self.kl_lambda,
                    kl,
                    config.kl_target,
                    config.kl_rule,
                    config.kl_lambda_min,
                    config.kl_lambda_max,
                )
            )

        critic_sums = tf.zeros([len(CRITIC_METRICS)])
        for _ in tf.range(config.critic_epochs):
            permutation = self._permutation()
            for i in tf.range(num_minibatches):
                indices = permutation[i * size : (i + 1) * size]
                critic_sums += self._critic_step(self._minibatch(batch, advantage, indices))

        actor_steps = tf.cast(tf.maximum(actor_epochs_run * num_minibatches, 1), tf.float32)
        critic_steps = tf.cast(tf.maximum(config.critic_epochs * num_minibatches, 1), tf.float32)
        metrics = {name: actor_sums[i] / actor_steps for i, name in enumerate(ACTOR_METRICS)}
        metrics.update({name: critic_sums[i] / critic_steps for i, name in enumerate(CRITIC_METRICS)})
        metrics["kl"] = kl
        metrics["kl_lambda"] = self.kl_lambda.read_value()
        metrics["kl_lambda_used"] = kl_lambda_used
        metrics["actor_epochs_run"] = tf.cast(actor_epochs_run, tf.float32)
        metrics["explained_variance"] = losses.explained_variance(batch["behavior_value"], batch["return"])
        metrics["actor_lr"] = tf.convert_to_tensor(config.actor_lr * decay, tf.float32)
        metrics["critic_lr"] = tf.convert_to_tensor(config.critic_lr * decay, tf.float32)
        if self.kind == "box":
            _, current = self._batch_kl(batch, behavior)
            scale = current.distribution.scale
            metrics["sigma_mean"] = tf.reduce_mean(scale)
            metrics["sigma_min"] = tf.reduce_min(scale)
            metrics["sigma_max"] = tf.reduce_max(scale)
        return metrics
