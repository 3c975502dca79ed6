"""MultiDiscrete and hybrid (parameterised) actions: closed forms, masks, mirror, update, export."""

import math

import gymnasium as gym
import numpy as np
import tensorflow as tf

from tfppo import distributions, envs, networks
from tfppo.config import Config
from tfppo.envs import EnvSpec
from tfppo.numpy_policy import NumpyPolicy

NVEC = (3, 5, 2)
MULTI = EnvSpec((4,), envs.action_spec(gym.spaces.MultiDiscrete(NVEC)), True)
PARAMETER_MASK = np.array([[True, False], [False, True], [False, False]])
HYBRID_SPACE = gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,), np.float32)))
HYBRID = EnvSpec((5,), envs.action_spec(HYBRID_SPACE, PARAMETER_MASK), False)


def log_softmax(logits, mask=None):
    logits = np.where(mask, logits, -np.inf) if mask is not None else logits
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def normal_log_prob(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * math.log(2 * math.pi)


class SpecTest(tf.test.TestCase):
    def test_specs(self):
        self.assertEqual((MULTI.action.mask_width, MULTI.action.action_shape), (10, (3,)))
        self.assertEqual(HYBRID.action.param_dims(), {"logits": 3, "loc": 2, "scale": 2})
        self.assertEqual(HYBRID.action.action_shape, (3,))
        as_dict = gym.spaces.Dict(
            {"action_type": gym.spaces.Discrete(3), "parameters": gym.spaces.Box(-1, 1, (2,))}
        )
        spec = envs.action_spec(as_dict)
        self.assertEqual((spec.kind, spec.dict_keys), ("hybrid", ("action_type", "parameters")))
        self.assertTrue(np.all(spec.parameter_mask))  # no mask given: every type uses every parameter
        batched = envs.env_action(spec, np.array([[2.0, 3.0, -0.5]], np.float32))
        self.assertEqual(batched["action_type"].tolist(), [2])
        self.assertAllClose(batched["parameters"], [[1.0, -0.5]])  # clipped to the Box

    def test_multi_discrete_mask_checks_each_dimension(self):
        mask = np.ones((2, 10), bool)
        mask[1, 3:8] = False  # env 1: no valid choice in the second dimension
        with self.assertRaisesRegex(ValueError, "allows no action in action dimension 1 in env 1"):
            envs.check_mask(mask, MULTI.action, 12)
        per_dimension = np.empty(1, dtype=object)
        per_dimension[0] = (np.array([1, 0, 1], bool), np.ones(5, bool), np.array([0, 1], bool))
        self.assertEqual(
            envs.split_observation(np.zeros((1, 4)), {"action_mask": per_dimension}, MULTI)[1].shape, (1, 10)
        )


class MultiCategoricalTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.logits = rng.normal(size=(6, 10)).astype(np.float32)
        self.mask = rng.random((6, 10)) < 0.6
        for start, size in zip((0, 3, 8), NVEC, strict=True):
            self.mask[np.arange(6), start + rng.integers(0, size, 6)] = True

    def test_log_prob_and_entropy_are_sums_over_dimensions(self):
        distribution = distributions.MultiCategorical(self.logits, self.mask, NVEC)
        action = distribution.sample(seed=(1, 2)).numpy()
        expected_log_prob, expected_entropy = np.zeros(6), np.zeros(6)
        for i, (start, size) in enumerate(zip((0, 3, 8), NVEC, strict=True)):
            part = log_softmax(self.logits[:, start : start + size], self.mask[:, start : start + size])
            expected_log_prob += part[np.arange(6), action[:, i]]
            probs = np.exp(part)
            expected_entropy -= np.sum(np.where(probs > 0, probs * np.where(probs > 0, part, 0.0), 0.0), -1)
        self.assertAllClose(distribution.log_prob(action), expected_log_prob, atol=1e-5)
        self.assertAllClose(distribution.entropy(), expected_entropy, atol=1e-5)

    def test_masked_choices_are_never_sampled_and_get_no_gradient(self):
        logits = tf.Variable(self.logits)
        samples = distributions.MultiCategorical(self.logits, self.mask, NVEC).sample(seed=(3, 4))
        for seed in range(50):
            samples = (
                distributions.MultiCategorical(self.logits, self.mask, NVEC).sample(seed=(seed, 1)).numpy()
            )
            for i, start in enumerate((0, 3, 8)):
                self.assertTrue(np.all(self.mask[np.arange(6), start + samples[:, i]]))
        with tf.GradientTape() as tape:
            distribution = distributions.MultiCategorical(logits, self.mask, NVEC)
            loss = -tf.reduce_sum(distribution.log_prob(samples)) - tf.reduce_sum(distribution.entropy())
        gradient = tape.gradient(loss, logits).numpy()
        self.assertTrue(np.all(np.isfinite(gradient)))
        self.assertAllEqual(gradient[~self.mask], np.zeros(np.sum(~self.mask)))


class HybridTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(1)
        self.logits = rng.normal(size=(4, 3)).astype(np.float32)
        self.loc = rng.normal(size=(4, 2)).astype(np.float32)
        self.scale = rng.uniform(0.3, 1.5, size=(4, 2)).astype(np.float32)
        self.distribution = distributions.Hybrid(self.logits, None, self.loc, self.scale, PARAMETER_MASK)

    def test_log_prob_counts_only_the_chosen_types_parameters(self):
        action = np.array([[0, 0.3, 0.9], [1, -0.2, 0.4], [2, 0.5, 0.5], [0, -1.0, 2.0]], np.float32)
        type_log_prob = log_softmax(self.logits)[np.arange(4), action[:, 0].astype(int)]
        parameter_log_prob = normal_log_prob(action[:, 1:], self.loc, self.scale)
        used = PARAMETER_MASK[action[:, 0].astype(int)]
        self.assertAllClose(
            self.distribution.log_prob(action),
            type_log_prob + np.sum(used * parameter_log_prob, -1),
            atol=1e-5,
        )
        changed = action.copy()
        changed[0, 2] = 7.0  # type 0 does not use parameter 1
        changed[2, 1:] = -3.0  # type 2 uses none
        self.assertAllClose(self.distribution.log_prob(changed), self.distribution.log_prob(action))

    def test_entropy_and_kl_weight_parameters_by_type_probability(self):
        probs = np.exp(log_softmax(self.logits))
        normal_entropy = 0.5 * np.log(2 * math.pi * math.e * self.scale**2)
        expected = -np.sum(probs * np.log(probs), -1) + np.sum((probs @ PARAMETER_MASK) * normal_entropy, -1)
        self.assertAllClose(self.distribution.entropy(), expected, atol=1e-5)
        other = distributions.Hybrid(
            self.logits * 0.5, None, self.loc + 0.3, self.scale * 1.2, PARAMETER_MASK
        )
        other_probs = np.exp(log_softmax(self.logits * 0.5))
        s1, s2 = self.scale, self.scale * 1.2
        normal_kl = np.log(s2 / s1) + (s1**2 + 0.3**2) / (2 * s2**2) - 0.5
        expected_kl = np.sum(probs * np.log(probs / other_probs), -1) + np.sum(
            (probs @ PARAMETER_MASK) * normal_kl, -1
        )
        self.assertAllClose(self.distribution.kl_divergence(other), expected_kl, atol=1e-5)

    def test_sample_and_mode(self):
        sample = self.distribution.sample(seed=(5, 6)).numpy()
        self.assertEqual(sample.shape, (4, 3))
        self.assertTrue(set(sample[:, 0].tolist()) <= {0.0, 1.0, 2.0})
        mode = self.distribution.mode().numpy()
        self.assertAllEqual(mode[:, 0], np.argmax(self.logits, -1))
        self.assertAllClose(mode[:, 1:], self.loc)


class NetworksTest(tf.test.TestCase):
    def test_numpy_mirror_matches_and_masks_hold(self):
        for spec, overrides in ((MULTI, {}), (HYBRID, {"sigma": "state_dependent"})):
            actor, critic = networks.build(spec, Config(env="x", hidden_sizes=(16,), **overrides))
            policy = NumpyPolicy(actor, critic, spec, seed=0)
            observation = (
                np.random.default_rng(2).normal(size=(8,) + spec.observation_shape).astype(np.float32)
            )
            expected = actor.params(observation)
            for key, value in policy.params(observation).items():
                self.assertAllClose(value, expected[key], atol=1e-5)
            mask = None
            if spec.has_mask:
                mask = np.ones((8, 10), bool)
                mask[:, [0, 1, 3, 4, 5, 6, 9]] = False  # only 2, 7 and 8 remain
            action = policy.step(observation, mask)["action"]
            self.assertEqual(action.shape, (8,) + spec.action.action_shape)
            if mask is not None:
                self.assertAllEqual(action, np.tile([2, 4, 0], (8, 1)))
            live = actor(observation, action_mask=mask)
            self.assertAllClose(
                policy.mode(observation, mask), distributions.mode(spec.action, live), atol=1e-5
            )


if __name__ == "__main__":
    tf.test.main()


class HybridUpdateTest(tf.test.TestCase):
    def test_joint_and_per_head_ratios(self):
        # At the first step both ratios are 1: the joint loss is -mean(A) and the per-head loss,
        # one clipped surrogate per head, is -2 mean(A).
        import dataclasses

        from tfppo import learner as learner_lib

        base = Config(
            env="x",
            num_envs=2,
            num_steps=8,
            actor_epochs=1,
            critic_epochs=1,
            norm_adv="none",
            hidden_sizes=(8,),
        )
        rng = np.random.default_rng(0)
        observation = rng.normal(size=(16, 5)).astype(np.float32)
        advantage = rng.normal(size=16).astype(np.float32)
        losses = {}
        for ratio in ("joint", "per_head"):
            config = dataclasses.replace(base, hybrid_ratio=ratio)
            actor, critic = networks.build(HYBRID, config)
            policy = NumpyPolicy(actor, critic, HYBRID, seed=0)
            out = policy.step(observation)
            batch = {
                "observation": observation,
                "action": out["action"],
                "behavior_value": out["value"].astype(np.float32),
                "advantage": advantage,
                "return": advantage,
            }
            batch.update({f"behavior_{k}": out[k] for k in HYBRID.action.param_dims()})
            metrics, _ = learner_lib.Learner(actor, critic, HYBRID, config).update(batch, 0.0)
            self.assertTrue(all(np.isfinite(v) for v in metrics.values()))
            losses[ratio] = metrics["policy_loss"]
        self.assertAllClose(losses["joint"], -advantage.mean(), atol=1e-4)
        self.assertAllClose(losses["per_head"], -2 * advantage.mean(), atol=1e-4)
