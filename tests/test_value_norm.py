"""--norm_value: running return statistics, the value head rescaled so V(s) is preserved, the
value loss in normalised units, and every consumer of V(s) (mirror, checkpoint) agreeing."""

import dataclasses
import io
import json
import os
from contextlib import redirect_stdout

import numpy as np
import tensorflow as tf

import tfppo
from tests.helpers import make_tempdir, tiny_config
from tests.test_learner import BOX, SMALL, make, random_batch
from tfppo import agent as agent_lib
from tfppo import learner as learner_lib
from tfppo import losses
from tfppo.numpy_policy import NumpyPolicy

NORM = dataclasses.replace(SMALL, norm_value=True)


class StatisticsTest(tf.test.TestCase):
    def test_running_moments_and_preserved_outputs(self):
        _, critic, _, learner = make(BOX, NORM)
        rng = np.random.default_rng(0)
        features = tf.constant(rng.normal(size=(5, 8)), tf.float32)
        first = rng.normal(10.0, 3.0, size=16).astype(np.float32)
        second = rng.normal(-4.0, 0.5, size=16).astype(np.float32)
        for seen in (first, np.concatenate([first, second])):
            before = critic.value_of(features).numpy()
            learner._renormalize_values(tf.constant(seen[-16:]))
            # Every return seen so far: the exact count, mean and (population) variance.
            data = seen.astype(np.float64)
            self.assertAllClose(critic.value_moments.numpy(), [len(data), data.mean(), data.var()], rtol=1e-9)
            self.assertAllClose(critic.value_mean.numpy(), data.mean(), rtol=1e-6)
            self.assertAllClose(critic.value_std.numpy(), data.std(), rtol=1e-6)
            # PopArt: new statistics, the same V(s); the head now predicts (V - mean) / std.
            self.assertAllClose(critic.value_of(features), before, atol=1e-4)
            head = tf.squeeze(critic.value(features), -1)
            self.assertAllClose(head, (before - data.mean()) / data.std(), atol=1e-5)

    def test_spread_below_the_floor_is_scaled_by_the_floor(self):
        _, critic, _, learner = make(BOX, NORM)
        learner._renormalize_values(tf.fill([16], 3.0))
        self.assertAllClose(critic.value_std.numpy(), learner_lib.VALUE_STD_FLOOR)
        self.assertAllClose(critic.value_mean.numpy(), 3.0)

    def test_value_loss_is_taken_in_normalised_units(self):
        _, critic, _, learner = make(BOX, dataclasses.replace(NORM, clip_value=0.5))
        critic.value_mean.assign(10.0)
        critic.value_std.assign(2.0)
        minibatch = {
            "return": tf.constant([16.0, 10.0]),
            "behavior_value": tf.constant([12.0, 9.0]),
        }
        value = tf.constant([12.0, 14.0])
        loss, _ = learner._critic_loss(minibatch, value)
        # Normalised: V (1, 2), R (3, 0), V_old (1, -0.5); clip 0.5 in those units:
        # row 1: max((3-1)^2, (3-1)^2) = 4; row 2: max((0-2)^2, (0-0)^2) = 4 -> mean 4.
        self.assertAllClose(loss, 4.0)
        plain, _ = losses.value_loss(value, minibatch["return"], minibatch["behavior_value"], 0.5)
        self.assertNotAllClose(loss, plain)

    def test_off_by_default(self):
        _, critic, policy, learner = make(BOX, SMALL)
        self.assertFalse(hasattr(critic, "value_mean"))
        metrics, _ = learner.update(random_batch(BOX, SMALL, policy, 0), 0.0)
        self.assertNotIn("value_target_std", metrics)


class ConsumersTest(tf.test.TestCase):
    def test_update_mirror_and_checkpoint_agree_on_v(self):
        actor, critic, policy, learner = make(BOX, NORM)
        batch = random_batch(BOX, NORM, policy, 0)
        batch["return"] = batch["return"] * 50.0 + 200.0
        metrics, weights = learner.update(batch, 0.0)
        self.assertAllClose(metrics["value_target_mean"], batch["return"].mean(), rtol=1e-5)
        mirror = NumpyPolicy(actor, critic, BOX, seed=0)
        mirror.sync(weights)
        observation = np.random.default_rng(1).normal(size=(6, 3)).astype(np.float32)
        self.assertAllClose(mirror.value(observation), critic(observation), atol=1e-4)

    def test_a_run_restores_its_statistics(self):
        config = tiny_config(env="Pendulum-v1", norm_value=True)
        logdir = os.path.join(make_tempdir(self), "run")
        with redirect_stdout(io.StringIO()):
            tfppo.train(config, logdir=logdir)
        with open(os.path.join(logdir, "metrics.jsonl"), encoding="utf-8") as f:
            last = json.loads(f.read().splitlines()[-1])
        restored, _ = agent_lib.from_run(logdir)
        critic = restored.critic
        self.assertEqual(critic.value_moments.numpy()[0], 256)  # every return of the run
        self.assertEqual(critic.value_mean.numpy(), np.float32(last["value_target_mean"]))
        self.assertEqual(critic.value_std.numpy(), np.float32(last["value_target_std"]))
        mirror = NumpyPolicy(restored.actor, critic, restored.spec, seed=0)
        observation = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
        self.assertAllClose(mirror.value(observation), critic(observation), atol=1e-4)


if __name__ == "__main__":
    tf.test.main()
