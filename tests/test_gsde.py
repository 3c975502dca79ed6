"""gSDE (generalized state-dependent exploration, Raffin et al. 2021): the scale, log-prob and
entropy against a NumPy reference, acting noise = features @ the env's weights, the resampling
schedule, the NumPy mirror, checkpoints and the export (whose deterministic action ignores the
noise)."""

import dataclasses
import io
import os
from contextlib import redirect_stdout

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import tfppo
from tests.helpers import make_tempdir
from tfppo import distributions, networks, numpy_policy, rollout
from tfppo.config import Config, ConfigError
from tfppo.envs import ActionSpec, EnvSpec
from tfppo.policy import Policy

BOX = EnvSpec(
    (3,),
    ActionSpec("box", shape=(2,), low=np.array([-2, -2], np.float32), high=np.array([2, 2], np.float32)),
    False,
)
CONFIG = Config(hidden_sizes=(8,), sigma="gsde", sigma_init=0.5, sigma_min=1e-6, num_envs=3)


def reference_scale(latent, log_std, sigma_min=1e-6, epsilon=1e-6):
    """SB3's StateDependentNoiseDistribution: sqrt(latent^2 @ exp(log_std)^2 + eps) (+ our floor)."""
    std = np.broadcast_to(np.exp(log_std), (log_std.shape[0], 2))
    return np.sqrt(np.square(latent) @ np.square(std) + epsilon) + sigma_min


class GsdeTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        tf.random.set_seed(0)
        self.actor, self.critic = networks.build(BOX, CONFIG)
        head = self.actor.head
        head.log_std.assign(np.random.default_rng(0).normal(-0.5, 0.3, head.log_std.shape))
        self.observation = np.random.default_rng(1).normal(size=(3, 3)).astype(np.float32)

    def test_scale_log_prob_and_entropy_match_a_numpy_reference(self):
        params = self.actor.params(self.observation)
        latent = self.actor.torso(self.observation).numpy()
        self.assertAllClose(params["latent"], latent)
        scale = reference_scale(latent, self.actor.head.log_std.numpy())
        self.assertAllClose(params["scale"], scale, rtol=1e-5)
        distribution = distributions.from_params(BOX.action, params)
        action = np.array([[0.3, -1.0], [1.5, 0.0], [-0.2, 0.7]], np.float32)
        expected = stats.norm.logpdf(action, params["loc"].numpy(), scale).sum(axis=1)
        self.assertAllClose(distribution.log_prob(action), expected, rtol=1e-5)
        entropy = (0.5 * np.log(2 * np.pi * np.e * np.square(scale))).sum(axis=1)
        self.assertAllClose(distribution.entropy(), entropy, rtol=1e-5)

    def test_per_feature_std_is_shared_over_actions(self):
        actor, _ = networks.build(BOX, dataclasses.replace(CONFIG, gsde_full_std=False))
        self.assertEqual(actor.head.log_std.shape, (8, 1))
        params = actor.params(self.observation)
        self.assertAllClose(
            params["scale"], reference_scale(params["latent"].numpy(), actor.head.log_std.numpy())
        )

    def test_the_log_std_gets_gradients_and_the_features_do_not_through_the_scale(self):
        with tf.GradientTape() as tape:
            scale = self.actor.params(self.observation)["scale"]
            loss = tf.reduce_sum(scale)
        torso_and_std = self.actor.torso.trainable_variables + [self.actor.head.log_std]
        gradients = tape.gradient(loss, torso_and_std)
        self.assertGreater(float(tf.reduce_max(tf.abs(gradients[-1]))), 0.0)
        self.assertTrue(all(g is None for g in gradients[:-1]))

    def test_acting_noise_is_the_features_through_each_envs_weights(self):
        for policy in (
            Policy(self.actor, self.critic, BOX, seed=3, num_envs=3),
            numpy_policy.NumpyPolicy(self.actor, self.critic, BOX, seed=3, num_envs=3),
        ):
            out = policy.step(self.observation)
            exploration = np.asarray(policy.exploration)
            self.assertEqual(exploration.shape, (3, 8, 2))
            latent = self.actor.torso(self.observation).numpy()
            expected = out["loc"] + np.einsum("bf,bfa->ba", latent, exploration)
            self.assertAllClose(out["action"], expected, atol=1e-5)
            again = policy.step(self.observation)  # same weights until the next reset
            self.assertAllClose(again["action"], out["action"], atol=1e-6)
            policy.reset_noise()
            self.assertNotAllClose(policy.step(self.observation)["action"], out["action"])
            self.assertAllClose(policy.mode(self.observation), out["loc"], atol=1e-5)  # no noise

    def test_a_recurrent_policy_explores_through_the_features_after_its_memory(self):
        config = dataclasses.replace(CONFIG, recurrent="lstm", rnn_units=5, num_steps=8)
        actor, critic = networks.build(BOX, config)
        state = np.random.default_rng(2).normal(size=(3, 20)).astype(np.float32)  # actor's 10, critic's 10
        features, next_actor_state = actor.features(self.observation, state[:, :10])
        params = actor.head(features)
        self.assertAllClose(params["latent"], features)  # the memory's output is the latent
        self.assertAllClose(
            params["scale"], reference_scale(features.numpy(), actor.head.log_std.numpy()), rtol=1e-5
        )
        for policy in (
            Policy(actor, critic, BOX, seed=3, num_envs=3),
            numpy_policy.NumpyPolicy(actor, critic, BOX, seed=3, num_envs=3),
        ):
            out = policy.step(self.observation, None, state)
            expected = params["loc"] + np.einsum("bf,bfa->ba", features, np.asarray(policy.exploration))
            self.assertAllClose(out["action"], expected, atol=1e-5)
            self.assertAllClose(out["scale"], params["scale"], atol=1e-5)
            self.assertAllClose(out["state"][:, :10], next_actor_state, atol=1e-5)

    def test_weights_are_drawn_with_the_trained_std(self):
        policy = numpy_policy.NumpyPolicy(self.actor, self.critic, BOX, seed=3, num_envs=3)
        draws = []
        for _ in range(3000):
            policy.reset_noise()
            draws.append(policy.exploration)
        std = np.std(np.concatenate(draws), axis=0)
        self.assertAllClose(std, np.exp(self.actor.head.log_std.numpy()), rtol=0.05)

    def test_numpy_mirror_parity(self):
        mirror = numpy_policy.NumpyPolicy(self.actor, self.critic, BOX, seed=0, num_envs=3)
        mirror.check_parity(self.observation, atol=1e-5)
        self.assertTrue(mirror.checked)

    def test_collector_resamples_at_rollout_start_and_every_n_steps(self):
        calls = []

        class Env:
            num_envs = 1

            def reset(self, seed):
                return np.zeros((1, 3), np.float32), {}

            def step(self, action):
                return np.zeros((1, 3), np.float32), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool), {}

        collector = rollout.Collector(Env(), BOX, 0, 0.0, 1.0)
        storage = rollout.Rollout(10, 1, BOX)
        t = []

        def step(observation, mask):
            t.append(len(t))
            return {
                "action": np.zeros((1, 2), np.float32),
                "value": np.zeros(1),
                "loc": np.zeros((1, 2)),
                "scale": np.ones((1, 2)),
            }

        collector.collect(storage, step, lambda o: np.zeros(len(o)), lambda: calls.append(len(t)), 4)
        self.assertEqual(calls, [0, 4, 8])
        calls.clear()
        collector.collect(storage, step, lambda o: np.zeros(len(o)), lambda: calls.append(len(t)), -1)
        self.assertEqual(calls, [10])  # -1: at the rollout start only

    def test_only_box_actions(self):
        spec = EnvSpec((3,), ActionSpec("discrete", num_actions=2), False)
        for sigma in ("gsde", "fixed", "state_dependent"):  # a categorical head would ignore it
            with self.assertRaisesRegex(
                ConfigError, f"^--sigma={sigma} sets the noise of Box actions; the action space is discrete"
            ):
                networks.build(spec, dataclasses.replace(CONFIG, sigma=sigma))
        networks.build(spec, dataclasses.replace(CONFIG, sigma="state_independent"))  # the default
        hybrid = EnvSpec(
            (3,),
            ActionSpec(
                "hybrid",
                num_actions=2,
                shape=(1,),
                low=np.array([-1], np.float32),
                high=np.array([1], np.float32),
                parameter_mask=np.ones((2, 1), bool),
            ),
            False,
        )
        with self.assertRaisesRegex(ConfigError, "--sigma=gsde applies to Box actions"):
            networks.build(hybrid, CONFIG)
        with self.assertRaisesRegex(ConfigError, "--sde_sample_freq=0"):
            Config(sde_sample_freq=0)


@pytest.mark.slow  # a Pendulum run, resumed and exported: `pytest -m slow tests`
class GsdeRunTest(tf.test.TestCase):
    def test_train_resume_and_export(self):
        logdir = os.path.join(make_tempdir(self), "run")
        config = tfppo.Config(
            env="Pendulum-v1",
            total_timesteps=512,
            num_envs=2,
            num_steps=128,
            actor_epochs=2,
            critic_epochs=2,
            hidden_sizes=(16,),
            sigma="gsde",
            sde_sample_freq=4,
            eval_episodes=1,
        )
        with redirect_stdout(io.StringIO()):
            tfppo.train(config, logdir=logdir)
            summary = tfppo.train(
                dataclasses.replace(config, total_timesteps=1024, resume=True), logdir=logdir
            )
        self.assertEqual(summary["global_step"], 1024)
        from tfppo import agent as agent_lib

        agent, _ = agent_lib.from_run(logdir)
        initial = np.full((16, 1), np.log(1.0 - config.sigma_min))
        self.assertNotAllClose(agent.actor.head.log_std.numpy(), initial)  # trained, then restored
        model = tf.saved_model.load(summary["saved_model"])
        observation = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
        loc = agent.actor.params(observation)["loc"].numpy()
        self.assertAllClose(model.action(observation)["action"], np.clip(loc, -2, 2), atol=1e-5)
        scale = agent.actor.params(observation)["scale"].numpy()
        self.assertAllClose(model.distribution(observation)["scale"], scale, atol=1e-5)
        self.assertNotIn("latent", model.distribution(observation))


if __name__ == "__main__":
    tf.test.main()
