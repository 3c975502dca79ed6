"""PPO losses against hand-computed values, the clip's zero gradients, the lambda rule."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tfppo import losses

RATIO = np.array([1.5, 0.5, 1.0, 1.1], np.float32)
ADVANTAGE = np.array([1.0, 1.0, -1.0, -2.0], np.float32)
BEHAVIOR_LOG_PROB = np.array([-1.0, -2.0, -0.5, -3.0], np.float32)


class ClippedSurrogateTest(tf.test.TestCase):
    def test_value_by_hand(self):
        # min(r A, clip(r) A): 1.2, 0.5, -1.0, -2.2 -> mean -0.375.
        log_prob = BEHAVIOR_LOG_PROB + np.log(RATIO)
        loss, metrics = losses.clipped_surrogate_loss(log_prob, BEHAVIOR_LOG_PROB, ADVANTAGE, 0.2)
        self.assertAllClose(loss, 0.375, atol=1e-6)
        self.assertAllClose(metrics["clip_fraction"], 0.5)
        self.assertAllClose(metrics["approx_kl_k1"], -np.mean(np.log(RATIO)), atol=1e-6)
        self.assertAllClose(metrics["approx_kl_k3"], np.mean(RATIO - 1 - np.log(RATIO)), atol=1e-6)

    def test_clip_zeroes_the_gradient_outside_the_range(self):
        log_prob = tf.Variable(BEHAVIOR_LOG_PROB + np.log(RATIO))
        with tf.GradientTape() as tape:
            loss, _ = losses.clipped_surrogate_loss(log_prob, BEHAVIOR_LOG_PROB, ADVANTAGE, 0.2)
        gradient = tape.gradient(loss, log_prob).numpy()
        # d loss / d log_prob = -r A / M where the unclipped term is the minimum, else 0.
        self.assertAllClose(gradient, [0.0, -0.125, 0.25, 0.55], atol=1e-6)

    def test_negative_advantage_clips_below(self):
        # r = 0.5 < 1 - eps with A < 0: the clipped term (0.8 * -1) is smaller, so no gradient.
        log_prob = tf.Variable(np.log([0.5]).astype(np.float32))
        with tf.GradientTape() as tape:
            loss, _ = losses.clipped_surrogate_loss(
                log_prob, np.zeros(1, np.float32), -np.ones(1, np.float32), 0.2
            )
        self.assertAllClose(loss, 0.8)
        self.assertAllEqual(tape.gradient(loss, log_prob), [0.0])


class TutorialRatioTest(tf.test.TestCase):
    def test_prob_eps_ratio_by_hand(self):
        # pi / (pi_old + 1e-5): 0.5 / (0.25 + 1e-5) = 1.99992; the exact ratio is 2.
        log_ratio, ratio = losses.probability_ratio(
            np.log([0.5, 1e-6], dtype=np.float32), np.log([0.25, 1e-6], dtype=np.float32), "prob_eps"
        )
        self.assertAllClose(ratio, [0.5 / (0.25 + 1e-5), 1e-6 / (1e-6 + 1e-5)], rtol=1e-5)
        self.assertAllClose(log_ratio, np.log(ratio), rtol=1e-5)
        # With a small old density the tutorial's ratio is far from the exact 1.
        self.assertLess(float(ratio[1]), 0.1)

    def test_clip_loss_with_the_tutorial_ratio(self):
        # r = 1.99992 clips to 1.2 with A = 1: loss -1.2; r ~ 0.0909 with A = -1: min(-0.0909, -0.8).
        loss, _ = losses.clipped_surrogate_loss(
            np.log([0.5, 1e-6], dtype=np.float32),
            np.log([0.25, 1e-6], dtype=np.float32),
            np.array([1.0, -1.0], np.float32),
            0.2,
            "prob_eps",
        )
        self.assertAllClose(loss, -(1.2 - 0.8) / 2, atol=1e-5)


class KlPenaltyTest(tf.test.TestCase):
    def test_value_by_hand(self):
        # -(mean(r A) - lambda mean(kl)) = -(-0.3 - 0.5 * 0.25) = 0.425.
        log_prob = BEHAVIOR_LOG_PROB + np.log(RATIO)
        kl = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
        loss, _ = losses.kl_penalty_loss(log_prob, BEHAVIOR_LOG_PROB, ADVANTAGE, kl, 0.5)
        self.assertAllClose(loss, 0.425, atol=1e-6)

    def test_gradient_is_not_clipped(self):
        log_prob = tf.Variable(BEHAVIOR_LOG_PROB + np.log(RATIO))
        with tf.GradientTape() as tape:
            loss, _ = losses.kl_penalty_loss(
                log_prob, BEHAVIOR_LOG_PROB, ADVANTAGE, np.zeros(4, np.float32), 0.5
            )
        self.assertAllClose(tape.gradient(loss, log_prob), -RATIO * ADVANTAGE / 4, atol=1e-6)


class KlLambdaRuleTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        # (rule, lambda, kl, expected) with target 0.01, bounds [1e-4, 10].
        ("ppo", 0.5, 0.001, 0.25),  # kl < target / 1.5: halve
        ("ppo", 0.5, 0.0067, 0.5),  # just above target / 1.5: keep
        ("ppo", 0.5, 0.01, 0.5),
        ("ppo", 0.5, 0.016, 1.0),  # kl > 1.5 x target: double
        ("ppo", 8.0, 1.0, 10.0),  # clipped to the maximum
        ("ppo", 1.5e-4, 0.0, 1e-4),  # clipped to the minimum
        ("dppo", 0.5, 0.004, 0.25),  # kl < target / 2: x0.5
        ("dppo", 0.5, 0.006, 0.5),
        ("dppo", 0.5, 0.015, 0.5),  # between 1.5x and 2x: the ppo rule would double
        ("dppo", 0.5, 0.021, 0.75),  # kl > 2 x target: x1.5
    )
    def test_rule(self, rule, kl_lambda, kl, expected):
        result = losses.adapt_kl_lambda(tf.constant(kl_lambda), tf.constant(kl), 0.01, rule, 1e-4, 10.0)
        self.assertAllClose(result, expected, rtol=1e-6)


class HelpersTest(tf.test.TestCase):
    def test_normalize_advantages_without_spread_gives_zeros(self):
        self.assertAllEqual(losses.normalize_advantages(tf.fill([8], 3.7)), np.zeros(8))

    def test_normalize_advantages(self):
        advantage = np.random.default_rng(0).normal(5.0, 3.0, 1000).astype(np.float32)
        normalized = losses.normalize_advantages(advantage).numpy()
        self.assertAllClose([normalized.mean(), normalized.std()], [0.0, 1.0], atol=1e-5)

    def test_clipped_value_loss_by_hand(self):
        # V_b = 0, clip 0.5: V = 2 -> V_clip = 0.5; R = 1: max(1, 0.25) = 1. V = 0.2 -> unclipped
        # and clipped agree: 0.64. V = -1, R = 1: V_clip = -0.5: max(4, 2.25) = 4.
        value = np.array([2.0, 0.2, -1.0], np.float32)
        loss, _ = losses.value_loss(value, np.ones(3, np.float32), np.zeros(3, np.float32), 0.5)
        self.assertAllClose(loss, (1.0 + 0.64 + 4.0) / 3)
        # The max picks the clipped term when it is larger: V = 0.3 -> V_clip = 0.3; R = 2, V = 3
        # -> V_clip = 0.5: max(1, 2.25) = 2.25.
        loss, _ = losses.value_loss(
            np.array([3.0], np.float32), np.array([2.0], np.float32), np.zeros(1, np.float32), 0.5
        )
        self.assertAllClose(loss, 2.25)

    def test_kl_hinge_by_hand(self):
        kl = np.array([0.01, 0.03, 0.05], np.float32)  # target 0.01: excess 0, 0.01, 0.03
        self.assertAllClose(losses.kl_hinge(kl, 0.01, 1000.0), 1000.0 * (0.0001 + 0.0009) / 3)

    def test_value_loss_and_explained_variance(self):
        target = np.array([1.0, 2.0, 3.0], np.float32)
        loss, _ = losses.value_loss(np.array([1.0, 1.0, 1.0], np.float32), target)
        self.assertAllClose(loss, 5.0 / 3.0)
        self.assertAllClose(losses.explained_variance(target, target), 1.0)
        self.assertAllClose(losses.explained_variance(np.zeros(3, np.float32), np.ones(3, np.float32)), 0.0)


if __name__ == "__main__":
    tf.test.main()
