"""The optimizers, the KL coefficient as a tf.Variable, and the compiled PPO update.

One `update` call runs every epoch and minibatch of actor and critic in graph loops with
in-graph shuffling: the batch crosses into TensorFlow once per update. While both train, one
gradient step serves both networks (one forward and backward pass); once the actor stops
(it has fewer epochs, or its KL passed the stop threshold) the critic trains alone.

Shapes: N batch (num_steps * num_envs), M minibatch, D observation dim, A action dim.
"""

from __future__ import annotations

import contextlib

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

from tfppo import distributions, losses, memory, networks
from tfppo.config import Config
from tfppo.distributed import Replicas
from tfppo.envs import EnvSpec
from tfppo.optimizers import FusedAdam

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
METRIC_NAMES = ACTOR_METRICS + CRITIC_METRICS
VALUE_STD_FLOOR = 1e-2  # --norm_value: returns with less spread are scaled as if they had this much.


def batch_signature(spec: EnvSpec, config: Config, state_size: int = 0) -> dict[str, tf.TensorSpec]:
    """The flat batch the update takes: N = num_steps * num_envs rows of every rollout array
    (with a recurrent policy's state [N, S] and episode starts [N])."""
    n, action = config.batch_size, spec.action
    signature = {
        "observation": tf.TensorSpec((n,) + spec.observation_shape, tf.as_dtype(spec.observation_dtype)),
        "action": tf.TensorSpec((n,) + action.action_shape, tf.as_dtype(action.action_dtype)),
        "behavior_value": tf.TensorSpec((n,), tf.float32),
        "advantage": tf.TensorSpec((n,), tf.float32),
        "return": tf.TensorSpec((n,), tf.float32),
    }
    for key, dim in action.param_dims().items():
        signature[f"behavior_{key}"] = tf.TensorSpec((n, dim), tf.float32)
    if spec.has_mask:
        signature["mask"] = tf.TensorSpec((n, action.mask_width), tf.bool)
    if state_size:
        signature["state"] = tf.TensorSpec((n, state_size), tf.float32)
        signature["start"] = tf.TensorSpec((n,), tf.bool)
    return signature


class Learner(tf.Module):
    """Owns the optimizers and the adaptive KL coefficient; `update(batch, progress)` trains.

    With separate torsos, the actor and the critic each have an Adam optimizer with their own
    learning rate (the tutorial's A_LR and C_LR). With a shared torso, one optimizer (actor_lr)
    minimises policy loss + vf_coef * value loss over all variables.
    """

    def __init__(self, actor, critic, spec: EnvSpec, config: Config, replicas: Replicas | None = None):
        """replicas: all-reduces across the workers of a multi-worker run (tfppo.distributed)."""
        super().__init__(name="learner")
        self.actor, self.critic, self.spec, self.config = actor, critic, spec, config
        self.kind = spec.action.kind
        self.shared = config.shared_torso
        self.actor_variables = list(actor.trainable_variables)
        actor_ids = {id(v) for v in self.actor_variables}
        self.critic_variables = [v for v in critic.trainable_variables if id(v) not in actor_ids]
        actor_group = self.actor_variables + (self.critic_variables if self.shared else [])
        self.actor_optimizer = FusedAdam(actor_group, config.actor_lr, name="actor_adam")
        self.critic_optimizer = FusedAdam(self.critic_variables, config.critic_lr, name="critic_adam")
        self.kl_lambda = tf.Variable(
            config.kl_lambda_init, dtype=tf.float32, trainable=False, name="kl_lambda"
        )
        self.rng = tf.random.Generator.from_seed(config.seed + 7919)
        self.param_keys = tuple(spec.action.param_dims())
        self._per_head = spec.action.kind == "hybrid" and config.hybrid_ratio == "per_head"
        self.replicas = replicas or Replicas()
        self.metric_names = None  # The names of the packed metric vector, set when tracing.
        # The weights the update also returns (each once, even when the torso is shared), so a
        # NumPy mirror of the networks syncs without reading every variable (tfppo.numpy_policy).
        # Float32 only: --norm_value's float64 running moments are no weight of the forward pass.
        every = {id(v): v for v in actor.variables + critic.variables}.values()
        self.mirrored = [v for v in every if tf.as_dtype(v.dtype) == tf.float32]
        self._splits = np.cumsum([int(np.prod(v.shape)) for v in self.mirrored])[:-1]
        self.state_size = sum(memory.state_sizes(actor, critic))
        # --single_threaded_update: the executor the update's graph runs on (None: TF's default).
        self._executor = "SINGLE_THREADED_EXECUTOR" if config.single_threaded_update else None
        self.compiled_update = tf.function(
            self._packed_update,
            input_signature=[batch_signature(spec, config, self.state_size), tf.TensorSpec((), tf.float32)],
            autograph=False,  # The loops are explicit (_epochs): no conversion cost.
            jit_compile=config.jit_compile or None,
        )

    def update(self, batch: dict[str, np.ndarray], progress: float) -> tuple[dict[str, float], dict]:
        """Trains on one flat batch; progress in [0, 1] drives the annealing schedules.

        Returns (metrics, weights): weights maps id(variable) to its value after the update, for
        every variable of actor and critic (what a NumPy mirror syncs from without reading them).
        """
        # The default executor needs no scope (entering one copies TF's call options every update).
        scope = context.function_executor_type(self._executor) if self._executor else contextlib.nullcontext()
        with scope:
            values = self.compiled_update(batch, tf.constant(progress, tf.float32)).numpy()
        count = len(self.metric_names)
        parts = np.split(values[count:], self._splits)
        weights = {id(v): p.reshape(v.shape) for v, p in zip(self.mirrored, parts, strict=True)}
        return dict(zip(self.metric_names, values[:count].tolist(), strict=True)), weights

    def _packed_update(self, batch, progress):
        """`_update`'s metrics, then the updated weights, as one vector: one tensor to read back."""
        metrics = self._update(batch, progress)
        self.metric_names = tuple(metrics)
        weights = [tf.reshape(v, [-1]) for v in self.mirrored]
        return tf.concat([tf.stack([metrics[name] for name in self.metric_names]), *weights], 0)

    # --- compiled code below: no Python side effects, no .numpy() ---

    def _behavior(self, batch, mask):
        params = {key: batch[f"behavior_{key}"] for key in self.param_keys}
        return distributions.from_params(self.spec.action, params, mask)

    def _permutation(self):
        """A shuffled order of the batch's rows, or of its sequences with --recurrent."""
        seed = tf.cast(self.rng.make_seeds(1)[:, 0], tf.int32)
        count = self.config.num_sequences if self.state_size else self.config.batch_size
        return tf.argsort(tf.random.stateless_uniform([count], seed))

    def _sequence_rows(self, sequences, num_sequences: int):
        """--recurrent: the rows [L*K] (time-major) of K sequences of a batch laid out as
        [L, num_sequences] time-major rows."""
        steps = tf.range(self.config.sequence_length)[:, None] * num_sequences
        return tf.reshape(steps + sequences[None, :], [-1])

    def _sequences(self, batch):
        """--recurrent: the rollout's batch (rows t * B + b) reordered into Q = num_sequences
        sequences of L steps, time-major (rows l * Q + q), with "initial_state" [Q, S], the
        state stored at each sequence's first step. Sequence q is env q % B from step
        (q // B) * L."""
        config = self.config
        num_envs, length = config.num_envs, config.sequence_length
        sequences = tf.range(config.num_sequences)
        first = (sequences // num_envs) * length * num_envs + sequences % num_envs
        rows = tf.reshape(tf.range(length)[:, None] * num_envs + first[None, :], [-1])
        ordered = {key: tf.gather(value, rows) for key, value in batch.items() if key != "state"}
        ordered["initial_state"] = tf.gather(batch["state"], first)
        return ordered

    def _minibatch(self, batch, indices):
        if indices is None:
            minibatch = dict(batch)
        elif self.state_size:  # indices: K sequences of the _sequences layout
            rows = self._sequence_rows(indices, self.config.num_sequences)
            minibatch = {
                key: tf.gather(value, indices if key == "initial_state" else rows)
                for key, value in batch.items()
            }
        else:
            minibatch = {key: tf.gather(value, indices) for key, value in batch.items()}
        if self.config.norm_adv == "minibatch":
            minibatch["advantage"] = self._normalize(minibatch["advantage"])
        return minibatch

    def _normalize(self, advantage):
        """Advantage normalisation with the global statistics of every worker's advantages."""
        if not self.replicas.active:
            return losses.normalize_advantages(advantage)
        return losses.normalize_advantages(advantage, moments=self.replicas.moments)

    def _memory(self, batch):
        """(the actor's, the critic's) keyword arguments for a batch of sequences: their initial
        states and episode starts; empty without --recurrent."""
        if not self.state_size:
            return {}, {}
        actor_state, critic_state = memory.split_state(batch["initial_state"], self.actor, self.critic)
        return (
            {"state": actor_state, "starts": batch["start"]},
            {"state": critic_state, "starts": batch["start"]},
        )

    def _policy(self, batch):
        """The current policy on a batch (of sequences with --recurrent)."""
        params = self.actor.params(batch["observation"], **self._memory(batch)[0])
        return distributions.from_params(self.spec.action, params, batch.get("mask"))

    def _actor_loss(self, minibatch, clip_epsilon, distribution=None):
        """distribution: the current policy on the minibatch, when the caller has it."""
        config, mask = self.config, minibatch.get("mask")
        if distribution is None:
            distribution = self._policy(minibatch)
        log_prob = distribution.log_prob(minibatch["action"])
        entropy = tf.reduce_mean(distribution.entropy())
        behavior_log_prob = minibatch["behavior_log_prob"]
        if config.method == "clip" and self._per_head:
            # H-PPO's ratio per head: the action type and its parameters are clipped separately.
            type_log_prob, parameter_log_prob = distribution.log_prob_parts(minibatch["action"])
            loss, metrics = losses.clipped_surrogate_loss(
                type_log_prob,
                minibatch["behavior_type_log_prob"],
                minibatch["advantage"],
                clip_epsilon,
                config.ratio,
            )
            parameter_loss, _ = losses.clipped_surrogate_loss(
                parameter_log_prob,
                minibatch["behavior_parameter_log_prob"],
                minibatch["advantage"],
                clip_epsilon,
                config.ratio,
            )
            loss += parameter_loss
            metrics["policy_loss"] = loss
        elif config.method == "clip":
            loss, metrics = losses.clipped_surrogate_loss(
                log_prob, behavior_log_prob, minibatch["advantage"], clip_epsilon, config.ratio
            )
        else:
            kl = self._behavior(minibatch, mask).kl_divergence(distribution)
            loss, metrics = losses.kl_penalty_loss(
                log_prob,
                behavior_log_prob,
                minibatch["advantage"],
                kl,
                self.kl_lambda,
                clip_epsilon,
                config.ratio,
            )
            if config.kl_hinge_coef > 0:
                loss += losses.kl_hinge(kl, config.kl_target, config.kl_hinge_coef)
        metrics["entropy"] = entropy
        # Without a bonus the entropy is a metric only: out of the loss, its backward pass (~10%
        # of a CartPole or Pendulum gradient step's kernels, all adding zeros) is not traced.
        return (loss - config.ent_coef * entropy if config.ent_coef else loss), metrics

    def _critic_loss(self, minibatch, value=None):
        if value is None:
            value = self.critic(minibatch["observation"], **self._memory(minibatch)[1])
        values = (value, minibatch["return"], minibatch["behavior_value"])
        if self.config.norm_value:  # The loss (and --clip_value) in the units the head predicts.
            values = [self.critic.normalized(v) for v in values]
        return losses.value_loss(*values, self.config.clip_value)

    def _renormalize_values(self, returns):
        """--norm_value: adds this batch's returns (every worker's) to the running statistics and
        rescales the value head so that V(s) = head(s) * std + mean is unchanged by the new ones
        (PopArt's "preserving outputs precisely"). std is floored at VALUE_STD_FLOOR."""
        critic = self.critic
        x = tf.reshape(tf.cast(returns, tf.float64), [-1])
        mean, variance = self.replicas.moments(x) if self.replicas.active else tf.nn.moments(x, [0])
        count = tf.cast(tf.size(x) * self.replicas.num_workers, tf.float64)
        old_count, old_mean, old_variance = tf.unstack(tf.identity(critic.value_moments))
        total = old_count + count
        delta = mean - old_mean
        new_mean = old_mean + delta * count / total
        new_variance = (
            old_variance * old_count + variance * count + delta**2 * old_count * count / total
        ) / total
        critic.value_moments.assign(tf.stack([total, new_mean, new_variance]))
        std = tf.cast(tf.maximum(tf.sqrt(new_variance), VALUE_STD_FLOOR), tf.float32)
        mean32 = tf.cast(new_mean, tf.float32)
        old_std, old_mean32 = tf.identity(critic.value_std), tf.identity(critic.value_mean)
        kernel, bias = critic.value.kernel, critic.value.bias
        kernel.assign(kernel * (old_std / std))
        bias.assign((bias * old_std + old_mean32 - mean32) / std)
        critic.value_std.assign(std)
        critic.value_mean.assign(mean32)

    def _clip(self, gradients):
        if self.config.max_grad_norm > 0:
            return tf.clip_by_global_norm(gradients, self.config.max_grad_norm)
        return gradients, tf.linalg.global_norm(gradients)

    def _step(self, minibatch, clip_epsilon, train_actor: bool, train_critic: bool):
        """One gradient step of the actor, the critic or both; returns the metric vector."""
        if self.shared:  # One loss over one set of variables: never half of it.
            train_actor = train_critic = True
        # One loss, pg + vf_coef * vf, clipped by one norm: a shared torso, or SB3's clipping.
        joint = self.shared or (self.config.joint_grad_norm and train_actor and train_critic)
        zero = tf.constant(0.0)
        with tf.GradientTape() as tape:
            distribution = value = None
            if self.shared:
                params, value, _ = networks.shared_heads(
                    self.actor, self.critic, minibatch["observation"], **self._memory(minibatch)[0]
                )
                distribution = distributions.from_params(self.spec.action, params, minibatch.get("mask"))
            actor_loss, actor_metrics = (
                self._actor_loss(minibatch, clip_epsilon, distribution) if train_actor else (zero, {})
            )
            critic_loss, critic_metrics = self._critic_loss(minibatch, value) if train_critic else (zero, {})
            coef = self.config.vf_coef if joint else 1.0
            total = actor_loss + coef * critic_loss
        variables = (self.actor_variables if train_actor or self.shared else []) + (
            self.critic_variables if train_critic or self.shared else []
        )
        gradients = tape.gradient(total, variables)
        if self.replicas.active:  # The mean gradient of all workers: replicas stay identical.
            gradients = self.replicas.mean(gradients)
        split = len(self.actor_variables) if (train_actor or self.shared) else 0
        if joint:
            gradients, norm = self._clip(gradients)
            if self.shared:
                self.actor_optimizer.apply_gradients(gradients, variables)
            else:  # Adam is per parameter: two Adams on these gradients take SB3's one step.
                self.actor_optimizer.apply_gradients(gradients[:split], variables[:split])
                self.critic_optimizer.apply_gradients(gradients[split:], variables[split:])
            actor_metrics["actor_grad_norm"] = critic_metrics["critic_grad_norm"] = norm
        else:
            if train_actor:
                clipped, actor_metrics["actor_grad_norm"] = self._clip(gradients[:split])
                self.actor_optimizer.apply_gradients(clipped, variables[:split])
            if train_critic:
                clipped, critic_metrics["critic_grad_norm"] = self._clip(gradients[split:])
                self.critic_optimizer.apply_gradients(clipped, variables[split:])
        metrics = {**actor_metrics, **critic_metrics}
        return tf.stack([metrics.get(name, zero) for name in METRIC_NAMES])

    def _batch_kl(self, batch, behavior):
        """Exact mean KL(behaviour || current) over the whole batch, and the current policy."""
        current = self._policy(batch)
        return self.replicas.mean(tf.reduce_mean(behavior.kl_divergence(current))), current

    def _stop_kl(self):
        """The actor stops once the batch KL passes this: 4 x target for kl_pen, --target_kl."""
        config, stop = self.config, np.inf
        if config.method == "kl_pen":
            stop = min(stop, 4.0 * config.kl_target)
        if config.target_kl is not None:
            stop = min(stop, config.target_kl)
        return stop

    def _epochs(self, batch, clip_epsilon):
        """All epochs; returns (metric sums, actor steps, critic steps, epochs the actor ran).

        Written with tf.while_loop and tf.cond, not AutoGraph: converting this function took
        ~0.3 s at the start of every run, as long as 20 CartPole updates.
        """
        config = self.config
        behavior = self._behavior(batch, batch.get("mask"))
        stop_kl = self._stop_kl()
        actor_epochs, critic_epochs = config.actor_epochs, config.critic_epochs
        if self.shared:  # One loss: the critic stops with the actor.
            critic_epochs = actor_epochs
        num_minibatches = config.num_minibatches
        # Rows per minibatch, or sequences with --recurrent (see _sequences).
        size = (config.num_sequences if self.state_size else config.batch_size) // num_minibatches
        # Equal epochs and no KL stop: every step trains both, so only that step is traced.
        always_joint = self.shared or (actor_epochs == critic_epochs and stop_kl == np.inf)

        def schedule(epoch, actor_on):
            train_actor = tf.logical_and(actor_on, epoch < actor_epochs)
            return train_actor, (train_actor if self.shared else epoch < critic_epochs)

        def step(minibatch, train_actor, train_critic):
            if always_joint:
                return self._step(minibatch, clip_epsilon, True, True)
            return tf.cond(
                tf.logical_and(train_actor, train_critic),
                lambda: self._step(minibatch, clip_epsilon, True, True),
                lambda: tf.cond(
                    train_actor,
                    lambda: self._step(minibatch, clip_epsilon, True, False),
                    lambda: self._step(minibatch, clip_epsilon, False, True),
                ),
            )

        def epoch_body(epoch, actor_on, sums, actor_steps, critic_steps, actor_epochs_run):
            train_actor, train_critic = schedule(epoch, actor_on)
            if num_minibatches == 1:  # The whole batch: no shuffle, no inner loop (~40 us an epoch).
                sums += step(self._minibatch(batch, None), train_actor, train_critic)
            else:
                # One row of indices per minibatch: a row has the static shape [size], so every
                # tensor of the step does and the gradient needs no shape arithmetic at run time.
                permutation = tf.reshape(self._permutation(), [num_minibatches, size])

                def minibatch_body(i, sums):
                    indices = permutation[i]
                    return i + 1, sums + step(self._minibatch(batch, indices), train_actor, train_critic)

                _, sums = tf.while_loop(
                    lambda i, _: i < num_minibatches, minibatch_body, (tf.constant(0), sums)
                )
            actor_steps += tf.cast(train_actor, tf.float32) * num_minibatches
            critic_steps += tf.cast(train_critic, tf.float32) * num_minibatches
            actor_epochs_run += tf.cast(train_actor, tf.int32)
            if stop_kl < np.inf:  # The actor stops for good once the batch KL passes stop_kl.
                passed = tf.cond(
                    train_actor,
                    lambda: self._batch_kl(batch, behavior)[0] > stop_kl,
                    lambda: tf.constant(False),
                )
                actor_on = tf.logical_and(actor_on, tf.logical_not(passed))
            return epoch + 1, actor_on, sums, actor_steps, critic_steps, actor_epochs_run

        def epoch_cond(epoch, actor_on, *_):
            return tf.logical_or(*schedule(epoch, actor_on))

        start = (tf.constant(0), tf.constant(True), tf.zeros([len(METRIC_NAMES)]), 0.0, 0.0, tf.constant(0))
        _, _, sums, actor_steps, critic_steps, actor_epochs_run = tf.while_loop(epoch_cond, epoch_body, start)
        return sums, actor_steps, critic_steps, actor_epochs_run, behavior

    def _update(self, batch, progress):
        config = self.config
        decay = (1.0 - progress) if config.anneal_lr else tf.constant(1.0)
        clip_epsilon = config.clip_epsilon * ((1.0 - progress) if config.anneal_clip else 1.0)
        self.actor_optimizer.learning_rate.assign(config.actor_lr * decay)
        self.critic_optimizer.learning_rate.assign(config.critic_lr * decay)
        batch = self._sequences(batch) if self.state_size else dict(batch)
        if config.norm_value:
            self._renormalize_values(batch["return"])
        if config.norm_adv == "batch":
            batch["advantage"] = self._normalize(batch["advantage"])
        behavior = self._behavior(batch, batch.get("mask"))
        batch["behavior_log_prob"] = behavior.log_prob(batch["action"])
        if self._per_head:
            parts = behavior.log_prob_parts(batch["action"])
            batch["behavior_type_log_prob"], batch["behavior_parameter_log_prob"] = parts
        sums, actor_steps, critic_steps, actor_epochs_run, behavior = self._epochs(batch, clip_epsilon)
        kl, current = self._batch_kl(batch, behavior)
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
        metrics = {}
        for i, name in enumerate(METRIC_NAMES):
            steps = actor_steps if name in ACTOR_METRICS else critic_steps
            metrics[name] = sums[i] / tf.maximum(steps, 1.0)
        metrics["kl"] = kl
        metrics["kl_lambda"] = self.kl_lambda.read_value()
        metrics["kl_lambda_used"] = kl_lambda_used
        metrics["actor_epochs_run"] = tf.cast(actor_epochs_run, tf.float32)
        metrics["critic_epochs_run"] = critic_steps / config.num_minibatches
        metrics["explained_variance"] = losses.explained_variance(batch["behavior_value"], batch["return"])
        metrics["actor_lr"] = tf.convert_to_tensor(config.actor_lr * decay, tf.float32)
        metrics["critic_lr"] = tf.convert_to_tensor(config.critic_lr * decay, tf.float32)
        metrics["clip_epsilon"] = tf.convert_to_tensor(clip_epsilon, tf.float32)
        if config.norm_value:
            metrics["value_target_mean"] = tf.identity(self.critic.value_mean)
            metrics["value_target_std"] = tf.identity(self.critic.value_std)
        scale = distributions.scale_of(self.spec.action, current)
        if scale is not None:
            metrics["sigma_mean"] = tf.reduce_mean(scale)
            metrics["sigma_min"] = tf.reduce_min(scale)
            metrics["sigma_max"] = tf.reduce_max(scale)
        if self.replicas.active:  # Every worker reports the mean over workers.
            names = sorted(metrics)
            values = tf.unstack(self.replicas.mean(tf.stack([metrics[n] for n in names])))
            metrics = dict(zip(names, values, strict=True))
        return metrics
