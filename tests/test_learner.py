"""The compiled update: golden first-step losses, the KL lambda rule in the loop, no retracing."""

import dataclasses

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context

from tfppo import learner as learner_lib
from tfppo import networks
from tfppo.config import Config
from tfppo.envs import ActionSpec, EnvSpec
from tfppo.numpy_policy import NumpyPolicy
from tfppo.policy import Policy

DISCRETE = EnvSpec(observation_shape=(4,), action=ActionSpec("discrete", num_actions=3), has_mask=False)
BOX = EnvSpec(
    (3,), ActionSpec("box", shape=(2,), low=-np.ones(2, np.float32), high=np.ones(2, np.float32)), False
)
SMALL = Config(
    env="x", num_envs=2, num_steps=8, num_minibatches=2, actor_epochs=2, critic_epochs=2, hidden_sizes=(8,)
)


def zero_weights(model):
    for variable in model.variables:
        variable.assign(tf.zeros_like(variable))


def make(spec, config):
    actor, critic = networks.build(spec, config)
    return (
        actor,
        critic,
        Policy(actor, critic, spec, seed=1),
        learner_lib.Learner(actor, critic, spec, config),
    )


def random_batch(spec, config, policy, seed):
    rng = np.random.default_rng(seed)
    n = config.batch_size
    observation = rng.normal(size=(n,) + spec.observation_shape).astype(np.float32)
    out = policy.step(observation)
    batch = {
        "observation": observation,
        "action": out["action"],
        "behavior_value": out["value"],
        "advantage": rng.normal(size=n).astype(np.float32),
        "return": rng.normal(size=n).astype(np.float32),
    }
    batch.update({f"behavior_{k}": out[k] for k in spec.action.param_dims()})
    return batch


class LearnerTest(tf.test.TestCase):
    def test_first_step_losses_on_zero_networks(self):
        # Zero weights: uniform policy over 3 actions, V = 0. With one epoch of one minibatch the
        # reported losses are those before the only gradient step: ratio 1, so the surrogate is
        # -mean(A); the value loss is mean(R^2); the entropy is log 3.
        config = dataclasses.replace(
            SMALL, actor_epochs=1, critic_epochs=1, num_minibatches=1, norm_adv="none", ent_coef=0.0
        )
        actor, critic, policy, learner = make(DISCRETE, config)
        zero_weights(actor)
        zero_weights(critic)
        batch = random_batch(DISCRETE, config, policy, seed=0)
        self.assertAllClose(batch["behavior_logits"], np.zeros((16, 3)))
        metrics, _ = learner.update(batch, 0.0)
        self.assertAllClose(metrics["policy_loss"], -batch["advantage"].mean(), atol=1e-6)
        self.assertAllClose(metrics["value_loss"], np.mean(batch["return"] ** 2), atol=1e-5)
        self.assertAllClose(metrics["entropy"], np.log(3.0), atol=1e-6)
        self.assertAllClose(metrics["approx_kl_k3"], 0.0, atol=1e-7)
        self.assertEqual(metrics["clip_fraction"], 0.0)

    def test_kl_lambda_doubles_and_the_actor_stops_early_when_kl_is_high(self):
        config = dataclasses.replace(SMALL, method="kl_pen", kl_target=1e-9, actor_epochs=5, actor_lr=1e-2)
        _, _, policy, learner = make(BOX, config)
        metrics, _ = learner.update(random_batch(BOX, config, policy, 0), 0.0)
        self.assertEqual(metrics["actor_epochs_run"], 1.0)  # KL > 4 x target after the first epoch
        self.assertAllClose(metrics["kl_lambda_used"], 0.5)
        self.assertAllClose(metrics["kl_lambda"], 1.0)
        self.assertAllClose(learner.kl_lambda.numpy(), 1.0)

    def test_the_critic_keeps_training_after_the_actor_stops(self):
        config = dataclasses.replace(
            SMALL, method="kl_pen", kl_target=1e-9, actor_epochs=4, critic_epochs=3, actor_lr=1e-2
        )
        _, _, policy, learner = make(BOX, config)
        metrics, _ = learner.update(random_batch(BOX, config, policy, 0), 0.0)
        self.assertEqual((metrics["actor_epochs_run"], metrics["critic_epochs_run"]), (1.0, 3.0))

    def test_shared_torso_trains_one_loss_with_one_optimizer(self):
        config = dataclasses.replace(SMALL, shared_torso=True, actor_epochs=2, critic_epochs=2, vf_coef=0.5)
        actor, critic, policy, learner = make(DISCRETE, config)
        self.assertIs(actor.torso, critic.torso)
        self.assertLen(learner.critic_variables, 2)  # the value head only
        torso_before = [v.numpy() for v in actor.torso.variables]
        head_before = [v.numpy() for v in critic.value.variables]
        metrics, _ = learner.update(random_batch(DISCRETE, config, policy, 0), 0.0)
        self.assertEqual(metrics["actor_grad_norm"], metrics["critic_grad_norm"])
        for before, variable in zip(
            torso_before + head_before, actor.torso.variables + critic.value.variables, strict=True
        ):
            self.assertNotAllClose(before, variable.numpy())
        self.assertEqual(int(learner.critic_optimizer.iterations.numpy()), 0)

    def test_shared_torso_runs_once_per_gradient_step_and_acting_step(self):
        # Counted while the update traces: one torso call for the gradient step (actor head and
        # value head read the same features) and one for the batch KL after the epochs; a
        # second call per step would double a CNN's cost (the Atari presets share the torso).
        config = dataclasses.replace(SMALL, shared_torso=True)
        # Acting likewise: one call for the action and the value.
        actor, _, policy, learner = make(DISCRETE, config)
        calls, call = [], actor.torso.call
        actor.torso.call = lambda *args, **kwargs: calls.append(1) or call(*args, **kwargs)
        batch = random_batch(DISCRETE, config, policy, 0)
        self.assertLen(calls, 1)
        learner.update(batch, 0.0)
        self.assertLen(calls, 3)

    def test_jit_compiled_update_matches_the_default_one(self):
        # --jit_compile (XLA) only changes how the update runs: same weights and batch, the same
        # metrics and weights after it, up to float rounding.
        config = dataclasses.replace(SMALL, num_minibatches=1)
        actor, critic, policy, plain = make(BOX, config)
        xla_actor, xla_critic, _, xla = make(BOX, dataclasses.replace(config, jit_compile=True))
        xla_actor.set_weights(actor.get_weights())
        xla_critic.set_weights(critic.get_weights())
        batch, initial = random_batch(BOX, config, policy, 0), actor.get_weights()[0]
        (expected, expected_weights), (got, got_weights) = plain.update(batch, 0.0), xla.update(batch, 0.0)
        self.assertNotAllClose(actor.get_weights()[0], initial)  # the update trained
        for name in ("policy_loss", "value_loss", "entropy", "kl", "actor_grad_norm"):
            self.assertAllClose(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
        self.assertAllClose(list(got_weights.values()), list(expected_weights.values()), rtol=1e-4, atol=1e-6)

    def test_single_threaded_update_runs_on_that_executor_and_matches_the_default_one(self):
        # --single_threaded_update only changes the executor: the compiled update is called with
        # TF's single-threaded executor selected, and gives the default's metrics and weights up
        # to float rounding (minibatches, so the inner loop runs on it too).
        actor, critic, policy, plain = make(BOX, SMALL)
        inline_actor, inline_critic, _, inline = make(
            BOX, dataclasses.replace(SMALL, single_threaded_update=True)
        )
        inline_actor.set_weights(actor.get_weights())
        inline_critic.set_weights(critic.get_weights())
        seen, compiled = [], inline.compiled_update

        def spy(*args):
            seen.append(context.context().function_call_options.executor_type)
            return compiled(*args)

        inline.compiled_update = spy
        batch, initial = random_batch(BOX, SMALL, policy, 0), actor.get_weights()[0]
        (expected, expected_weights), (got, got_weights) = plain.update(batch, 0.0), inline.update(batch, 0.0)
        self.assertEqual(seen, ["SINGLE_THREADED_EXECUTOR"])
        self.assertFalse(context.context().function_call_options.executor_type)  # restored
        self.assertNotAllClose(actor.get_weights()[0], initial)  # the update trained
        for name in ("policy_loss", "value_loss", "entropy", "kl", "actor_grad_norm", "clip_fraction"):
            self.assertAllClose(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
        self.assertAllClose(list(got_weights.values()), list(expected_weights.values()), rtol=1e-4, atol=1e-6)

    def test_joint_grad_norm_is_one_norm_over_actor_and_weighted_critic(self):
        # One step of one minibatch on the same weights and batch: the joint norm must be
        # sqrt(|g_actor|^2 + (vf_coef |g_critic|)^2) of the separate norms, as SB3 clips.
        base = dataclasses.replace(
            SMALL, actor_epochs=1, critic_epochs=1, num_minibatches=1, vf_coef=0.5, max_grad_norm=1e-3
        )
        actor, critic, policy, separate = make(BOX, base)
        joint_actor, joint_critic, _, joint = make(BOX, dataclasses.replace(base, joint_grad_norm=True))
        joint_actor.set_weights(actor.get_weights())
        joint_critic.set_weights(critic.get_weights())
        batch = random_batch(BOX, base, policy, 0)
        apart, _ = separate.update(batch, 0.0)
        together, _ = joint.update(batch, 0.0)
        expected = np.hypot(apart["actor_grad_norm"], 0.5 * apart["critic_grad_norm"])
        self.assertAllClose(together["actor_grad_norm"], expected, rtol=1e-5)
        self.assertAllClose(together["critic_grad_norm"], expected, rtol=1e-5)
        self.assertGreater(expected, apart["actor_grad_norm"])
        self.assertEqual(int(joint.actor_optimizer.iterations.numpy()), 1)
        self.assertEqual(int(joint.critic_optimizer.iterations.numpy()), 1)

    def test_kl_lambda_halves_when_kl_is_low_and_all_epochs_run(self):
        config = dataclasses.replace(SMALL, method="kl_pen", kl_target=1e3, actor_epochs=3, kl_lambda_max=1e4)
        _, _, policy, learner = make(BOX, config)
        for expected in (0.25, 0.125):
            metrics, _ = learner.update(random_batch(BOX, config, policy, 0), 0.0)
            self.assertEqual(metrics["actor_epochs_run"], 3.0)
            self.assertAllClose(metrics["kl_lambda"], expected)

    def test_target_kl_stops_the_clip_method_too(self):
        config = dataclasses.replace(SMALL, target_kl=1e-9, actor_epochs=4)
        _, _, policy, learner = make(DISCRETE, config)
        self.assertEqual(
            learner.update(random_batch(DISCRETE, config, policy, 0), 0.0)[0]["actor_epochs_run"], 1.0
        )

    def test_update_and_policy_step_trace_once(self):
        _, _, policy, learner = make(BOX, SMALL)
        for seed in range(4):
            metrics, _ = learner.update(random_batch(BOX, SMALL, policy, seed), seed / 4)
            self.assertTrue(all(np.isfinite(v) for v in metrics.values()))
            policy.step(np.zeros((2, 3), np.float32))
            policy.value(np.zeros((5, 3), np.float32))
        self.assertEqual(learner.compiled_update.experimental_get_tracing_count(), 1)
        self.assertEqual(policy.compiled_step.experimental_get_tracing_count(), 1)
        self.assertEqual(policy.compiled_value.experimental_get_tracing_count(), 1)

    def test_the_update_hands_back_the_new_weights_for_the_numpy_mirror(self):
        # The update returns every weight after its last step in the same vector as the
        # metrics; NumpyPolicy syncs from them instead of reading each variable.
        for shared in (False, True):
            config = dataclasses.replace(SMALL, shared_torso=shared, sigma="state_independent")
            actor, critic, policy, learner = make(BOX, config)
            _, weights = learner.update(random_batch(BOX, config, policy, 0), 0.0)
            variables = {id(v): v for v in actor.variables + critic.variables}
            self.assertEqual(set(weights), set(variables))
            for key, value in weights.items():
                self.assertAllEqual(value, variables[key].numpy())
            mirror = NumpyPolicy(actor, critic, BOX, seed=0)
            actor.head.log_std.assign_add([1.0, 1.0])  # the mirror must take the handed-back values
            mirror.sync(weights)
            observation = np.ones((4, 3), np.float32)
            actor.head.log_std.assign_add([-1.0, -1.0])
            self.assertAllClose(mirror.params(observation)["scale"], actor.params(observation)["scale"])
            self.assertAllClose(mirror.value(observation), critic(observation), atol=1e-6)

    def test_annealing_sets_the_learning_rate(self):
        config = dataclasses.replace(SMALL, anneal_lr=True, actor_lr=0.1, critic_lr=0.2)
        _, _, policy, learner = make(DISCRETE, config)
        metrics, _ = learner.update(random_batch(DISCRETE, config, policy, 0), 0.75)
        self.assertAllClose([metrics["actor_lr"], metrics["critic_lr"]], [0.025, 0.05])

    def test_the_update_improves_the_surrogate(self):
        config = dataclasses.replace(SMALL, actor_epochs=5, actor_lr=3e-3)
        actor, _, policy, learner = make(DISCRETE, config)
        batch = random_batch(DISCRETE, config, policy, 3)
        before = actor(batch["observation"]).log_prob(batch["action"]).numpy()
        learner.update(batch, 0.0)
        after = actor(batch["observation"]).log_prob(batch["action"]).numpy()
        advantage = (batch["advantage"] - batch["advantage"].mean()) / batch["advantage"].std()
        self.assertGreater(np.mean(np.exp(after - before) * advantage), 0.0)


if __name__ == "__main__":
    tf.test.main()
