"""Running statistics, reward scaling, FusedAdam, and normalisation through training and export."""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from tests.helpers import make_tempdir
from tfppo import trainer
from tfppo.config import Config
from tfppo.normalization import Normalizers, RunningMeanStd, SyncedMeanStd
from tfppo.optimizers import FusedAdam


class RunningMeanStdTest(tf.test.TestCase):
    def test_matches_numpy_over_uneven_batches(self):
        data = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 3))
        stats = RunningMeanStd((3,))
        for chunk in np.split(data, [1, 10, 300, 301]):
            stats.update(chunk)
        self.assertAllClose(stats.mean, data.mean(0), atol=1e-5)
        self.assertAllClose(stats.var, data.var(0), atol=1e-3)

    def test_one_row_batches_give_the_bits_of_the_reductions(self):
        # One env per step (the MuJoCo presets) skips mean(0) and var(0): same statistics, bit for bit.
        rows = np.random.default_rng(1).normal(3.0, 2.0, size=(200, 1, 3))
        stats, reference = RunningMeanStd((3,)), RunningMeanStd((3,))
        for row in rows:
            stats.update(row)
            delta = row.mean(0) - reference.mean
            total = reference.count + 1
            m2 = reference.var * reference.count + row.var(0) * 1 + delta**2 * reference.count * 1 / total
            reference.mean, reference.var = reference.mean + delta * 1 / total, m2 / total
            reference.count = total
        np.testing.assert_array_equal(stats.mean, reference.mean)
        np.testing.assert_array_equal(stats.var, reference.var)
        synced = SyncedMeanStd((3,))
        for row in rows:
            synced.update(row)
        self.assertAllClose(synced.mean, stats.mean, rtol=1e-12)
        self.assertAllClose(synced.var, stats.var, rtol=1e-9)

    def test_reward_scaling_uses_the_discounted_return(self):
        config = Config(env="x", norm_reward=True, gamma=0.5, num_envs=1)
        normalizers = Normalizers((2,), 1, config)
        done = np.array([False])
        for reward in (1.0, 1.0, 1.0):
            scaled = normalizers.reward(np.array([reward]), done)
        returns = np.array([1.0, 1.5, 1.75])  # R <- 0.5 R + 1
        expected_var = (1e-4 * 1.0 + 3 * returns.var() + 1e-4 * 3 * returns.mean() ** 2 / (3 + 1e-4)) / (
            3 + 1e-4
        )
        self.assertAllClose(scaled, [1.0 / np.sqrt(expected_var + 1e-8)], rtol=1e-3)
        normalizers.reward(np.array([1.0]), np.array([True]))
        self.assertAllEqual(normalizers.discounted_return, [0.0])  # restarts with the episode

    def test_observation_clip_and_push_pull(self):
        config = Config(env="x", norm_obs=True, norm_obs_clip=2.0)
        normalizers = Normalizers((1,), 2, config)
        normalizers.observation(np.array([[0.0], [2.0]]), update=True)
        self.assertAllClose(normalizers.observation(np.array([[100.0]]), update=False), [[2.0]])
        normalizers.push()
        other = Normalizers((1,), 2, config)
        for source, target in zip(normalizers.variables, other.variables, strict=True):
            target.assign(source)
        other.pull()
        self.assertAllClose(other.obs_stats.mean, normalizers.obs_stats.mean)


class FusedAdamTest(tf.test.TestCase):
    def test_matches_keras_adam(self):
        rng = np.random.default_rng(0)
        shapes = [(3, 4), (4,)]
        keras_vars = [keras.Variable(rng.normal(size=s).astype(np.float32)) for s in shapes]
        fused_vars = [keras.Variable(v.numpy()) for v in keras_vars]
        reference = keras.optimizers.Adam(0.01, epsilon=1e-5)
        reference.build(keras_vars)
        fused = FusedAdam(fused_vars, 0.01)
        for step in range(6):
            gradients = [tf.constant(rng.normal(size=s).astype(np.float32)) for s in shapes]
            if step == 3:
                reference.learning_rate = 0.003
                fused.learning_rate.assign(0.003)
            reference.apply_gradients(zip(gradients, keras_vars, strict=True))
            fused.apply_gradients(gradients, fused_vars)
        for expected, actual in zip(keras_vars, fused_vars, strict=True):
            self.assertAllClose(actual, expected, atol=2e-6)
        self.assertEqual(int(fused.iterations.numpy()), 6)


class NormalizedRunTest(tf.test.TestCase):
    def test_statistics_are_checkpointed_and_baked_into_the_export(self):
        logdir = make_tempdir(self)
        config = Config(
            env="Pendulum-v1",
            total_timesteps=256,
            num_envs=2,
            num_steps=64,
            norm_obs=True,
            norm_reward=True,
            eval_episodes=1,
            actor_epochs=1,
            critic_epochs=1,
        )
        run = trainer.Trainer(config, logdir)
        summary = run.train()
        stats = run.normalizers.obs_stats
        self.assertGreater(stats.count, 256)
        self.assertNotAllClose(stats.mean, np.zeros(3))
        resumed = trainer.Trainer(dataclasses.replace(config, resume=True, total_timesteps=512), logdir)
        # Restored as saved (the resumed collector has since added its first observations).
        self.assertAllClose(resumed.normalizers.obs_mean, stats.mean)
        self.assertAllClose(resumed.normalizers.return_var, run.normalizers.return_stats.var)
        self.assertGreater(resumed.normalizers.obs_stats.count, stats.count)
        # The SavedModel takes raw observations.
        model = tf.saved_model.load(summary["saved_model"])
        raw = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32) * 5
        expected = np.clip(run.policy.mode(run.normalizers.observation(raw, update=False)), -2, 2)
        self.assertAllClose(model.action(raw)["action"], expected, atol=1e-5)
        self.assertAllClose(
            model.value(raw)["value"], run.critic(run.normalizers.observation(raw, update=False)), atol=1e-5
        )


if __name__ == "__main__":
    tf.test.main()
