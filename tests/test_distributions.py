"""Distribution and network shapes, log-probs and entropies against closed forms."""

import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tfppo import distributions, networks, observations
from tfppo.config import Config, ConfigError
from tfppo.envs import ActionSpec, EnvSpec

BOX = EnvSpec(
    observation_shape=(3,),
    action=ActionSpec("box", shape=(2,), low=-np.ones(2, np.float32), high=np.ones(2, np.float32)),
    has_mask=False,
)


def normal_log_prob(x, loc, scale):
    return np.sum(-0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi), axis=-1)


def normal_entropy(scale):
    return np.sum(0.5 * np.log(2 * math.pi * math.e * scale**2), axis=-1)


class GaussianActorTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters("fixed", "state_independent", "state_dependent")
    def test_log_prob_and_entropy_match_closed_form(self, sigma):
        config = Config(env="x", sigma=sigma, sigma_init=0.6, sigma_min=1e-3)
        actor, _ = networks.build(BOX, config)
        observation = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
        distribution = actor(observation)
        self.assertEqual(distribution.batch_shape, (5,))
        self.assertEqual(distribution.event_shape, (2,))
        params = {k: v.numpy() for k, v in actor.params(observation).items()}
        action = np.random.default_rng(1).normal(size=(5, 2)).astype(np.float32)
        self.assertAllClose(
            distribution.log_prob(action), normal_log_prob(action, params["loc"], params["scale"]), atol=1e-5
        )
        self.assertAllClose(distribution.entropy(), normal_entropy(params["scale"]), atol=1e-5)
        self.assertAllClose(params["scale"], np.full((5, 2), 0.6), atol=0.02)

    def test_fixed_sigma_is_not_trained(self):
        actor, _ = networks.build(BOX, Config(env="x", sigma="fixed", sigma_init=0.3))
        self.assertEqual(len(actor.trainable_variables), 4 + 2)  # two hidden layers, loc head
        self.assertAllEqual(
            actor.params(np.zeros((2, 3), np.float32))["scale"], np.full((2, 2), 0.3, np.float32)
        )

    def test_state_independent_sigma_gets_a_gradient(self):
        actor, _ = networks.build(BOX, Config(env="x", sigma="state_independent"))
        observation = np.ones((4, 3), np.float32)
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(actor(observation).log_prob(np.full((4, 2), 0.5, np.float32)))
        log_std = actor.head.log_std
        gradient = tape.gradient(loss, log_std)
        self.assertIsNotNone(gradient)
        self.assertTrue(np.all(np.abs(gradient.numpy()) > 0))

    def test_state_dependent_sigma_varies_with_the_state(self):
        actor, _ = networks.build(BOX, Config(env="x", sigma="state_dependent", ortho_init=False))
        scale = actor.params(np.array([[0, 0, 0], [5, -5, 5]], np.float32))["scale"].numpy()
        self.assertNotAllClose(scale[0], scale[1])

    def test_sigma_floor(self):
        actor, _ = networks.build(BOX, Config(env="x", sigma="state_independent", sigma_min=0.05))
        actor.head.log_std.assign([-200.0, -200.0])
        scale = actor.params(np.zeros((1, 3), np.float32))["scale"].numpy()
        self.assertAllClose(scale, [[0.05, 0.05]])

    def test_squashed_mean_stays_inside_the_bounds(self):
        spec = EnvSpec(
            (3,),
            ActionSpec("box", shape=(1,), low=np.array([-2.0], np.float32), high=np.array([2.0], np.float32)),
            False,
        )
        actor, _ = networks.build(spec, Config(env="x", squash_mean=True))
        observation = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
        self.assertTrue(np.all(np.abs(actor.params(observation)["loc"].numpy()) < 2.0))
        for bias, bound in ((50.0, 2.0), (-50.0, -2.0), (0.0, 0.0)):
            actor.head.loc.kernel.assign(np.zeros((64, 1), np.float32))
            actor.head.loc.bias.assign([bias])
            self.assertAllClose(actor.params(observation)["loc"], np.full((4, 1), bound))


class MaskedCategoricalTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.logits = rng.normal(size=(6, 5)).astype(np.float32)
        self.mask = rng.random((6, 5)) < 0.5
        self.mask[np.arange(6), rng.integers(0, 5, 6)] = True  # at least one valid per row

    def test_masked_actions_are_never_sampled(self):
        samples = distributions.categorical(self.logits, self.mask).sample(20_000, seed=(1, 2)).numpy()
        chosen_valid = np.take_along_axis(np.broadcast_to(self.mask, (20_000, 6, 5)), samples[..., None], -1)
        self.assertTrue(np.all(chosen_valid))

    def test_log_prob_and_entropy_match_closed_form(self):
        distribution = distributions.categorical(self.logits, self.mask)
        exp = np.where(self.mask, np.exp(self.logits), 0.0)
        probs = exp / exp.sum(-1, keepdims=True)
        actions = np.argmax(self.mask, axis=-1)
        self.assertAllClose(distribution.log_prob(actions), np.log(probs[np.arange(6), actions]), atol=1e-5)
        expected_entropy = -np.sum(
            np.where(self.mask, probs * np.log(np.where(self.mask, probs, 1.0)), 0.0), -1
        )
        self.assertAllClose(distribution.entropy(), expected_entropy, atol=1e-5)
        self.assertAllClose(distribution.probs_parameter(), probs, atol=1e-6)

    def test_gradient_of_masked_logits_is_exactly_zero_and_finite(self):
        logits = tf.Variable(self.logits)
        actions = np.argmax(self.mask, axis=-1)
        with tf.GradientTape() as tape:
            distribution = distributions.categorical(logits, self.mask)
            loss = -tf.reduce_sum(distribution.log_prob(actions)) - tf.reduce_sum(distribution.entropy())
        gradient = tape.gradient(loss, logits).numpy()
        self.assertTrue(np.all(np.isfinite(gradient)))
        self.assertAllEqual(gradient[~self.mask], np.zeros(np.sum(~self.mask)))
        self.assertTrue(np.any(gradient[self.mask] != 0))

    def test_kl_between_masked_distributions_is_finite(self):
        old = distributions.categorical(self.logits, self.mask)
        new = distributions.categorical(self.logits * 0.5, self.mask)
        kl = old.kl_divergence(new).numpy()
        self.assertTrue(np.all(np.isfinite(kl)) and np.all(kl >= -1e-6))

    def test_all_invalid_mask_is_an_error(self):
        mask = self.mask.copy()
        mask[2] = False
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "no valid action"):
            distributions.categorical(self.logits, mask).sample(seed=(1, 2))


if __name__ == "__main__":
    tf.test.main()


class InitializationTest(tf.test.TestCase):
    """--dense_init=torch draws every Dense and Conv2D layer tfppo builds as PyTorch does."""

    def _layers(self, model):
        return [
            layer
            for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D))
        ]

    def test_torch_init_is_uniform_over_one_over_sqrt_fan_in(self):
        config = Config(
            env="x", hidden_sizes=(256, 256), activation="relu", ortho_init=False, dense_init="torch"
        )
        tf.keras.utils.set_random_seed(3)
        actor, critic = networks.build(BOX, config)
        layers = self._layers(actor) + self._layers(critic)
        # torso 3 -> 256 -> 256 and the head 256 -> 2, twice.
        self.assertEqual(
            sorted(tuple(layer.kernel.shape) for layer in layers),
            sorted([(3, 256), (256, 256), (256, 2), (3, 256), (256, 256), (256, 1)]),
        )
        for layer in layers:
            bound = 1.0 / math.sqrt(layer.kernel.shape[0])
            for weights in (layer.kernel.numpy(), layer.bias.numpy()):
                self.assertLessEqual(np.abs(weights).max(), bound, msg=layer.name)
                if weights.size >= 256:  # U(-b, b): std b / sqrt(3), the range nearly reached.
                    self.assertAllClose(weights.std(), bound / math.sqrt(3), rtol=0.15, msg=layer.name)
                    self.assertGreater(np.abs(weights).max(), 0.9 * bound, msg=layer.name)

    def test_glorot_default_keeps_zero_biases_and_torch_changes_them(self):
        glorot = Config(env="x", hidden_sizes=(64,), ortho_init=False)
        torch = Config(env="x", hidden_sizes=(64,), ortho_init=False, dense_init="torch")
        for config, zero_bias in ((glorot, True), (torch, False)):
            tf.keras.utils.set_random_seed(0)
            actor, _ = networks.build(BOX, config)
            dense = self._layers(actor)[0]
            self.assertEqual(np.all(dense.bias.numpy() == 0), zero_bias)
            bound = math.sqrt(6 / (3 + 64)) if zero_bias else 1 / math.sqrt(3)
            self.assertLessEqual(np.abs(dense.kernel.numpy()).max(), bound)

    def test_same_seed_same_weights(self):
        config = Config(env="x", hidden_sizes=(16,), ortho_init=False, dense_init="torch")
        weights = []
        for _ in range(2):
            tf.keras.utils.set_random_seed(5)
            actor, critic = networks.build(BOX, config)
            weights.append([v.numpy() for v in actor.variables + critic.variables])
        for first, second in zip(*weights, strict=True):
            self.assertAllEqual(first, second)

    def test_conv_fan_in_and_state_dependent_scale_bias(self):
        config = Config(env="x", ortho_init=False, dense_init="torch", cnn="small")
        component = observations.Component("", "image", (10, 10, 4), "uint8")
        tf.keras.utils.set_random_seed(1)
        net = networks.make_cnn(component, config, "cnn")
        net(tf.zeros((1, 10, 10, 4)))
        conv = net.layers[0]
        bound = 1 / math.sqrt(3 * 3 * 4)
        self.assertLessEqual(np.abs(conv.kernel.numpy()).max(), bound)
        self.assertGreater(np.abs(conv.kernel.numpy()).max(), 0.9 * bound)
        self.assertLessEqual(np.abs(conv.bias.numpy()).max(), bound)
        self.assertGreater(np.abs(conv.bias.numpy()).max(), 0.0)
        # A state-dependent sigma's head keeps its constant bias (the softplus inverse of sigma_init).
        actor, _ = networks.build(
            BOX, Config(env="x", sigma="state_dependent", ortho_init=False, dense_init="torch")
        )
        self.assertAllClose(actor.head.scale_head.bias, np.full(2, math.log(math.expm1(1.0 - 1e-3))))

    def test_torch_with_orthogonal_init_is_an_error(self):
        with self.assertRaisesRegex(ConfigError, "--dense_init=torch .* add --noortho_init"):
            Config(env="x", dense_init="torch")
