"""The NumPy acting mirror gives the Keras networks' parameters and values, and valid samples."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tfppo import networks
from tfppo.config import Config
from tfppo.envs import ActionSpec, EnvSpec
from tfppo.numpy_policy import NumpyPolicy

BOX = EnvSpec(
    (3,),
    ActionSpec("box", shape=(2,), low=np.array([-1, -2], np.float32), high=np.array([1, 2], np.float32)),
    False,
)
MASKED = EnvSpec((4,), ActionSpec("discrete", num_actions=5), True)


class NumpyPolicyTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        dict(spec=BOX, sigma="fixed"),
        dict(spec=BOX, sigma="state_independent", activation="relu"),
        dict(spec=BOX, sigma="state_dependent", squash_mean=True, activation="elu"),
        dict(spec=BOX, sigma="state_dependent", shared_torso=True),
        dict(spec=MASKED),
        dict(spec=BOX, critic_hidden_sizes=(5, 3, 2)),
    )
    def test_params_and_values_match_the_keras_models(self, spec, **overrides):
        config = Config(env="x", hidden_sizes=(16, 8), ortho_init=False, **overrides)
        actor, critic = networks.build(spec, config)
        if spec.action.kind == "box" and config.sigma == "state_independent":
            actor.head.log_std.assign([-0.5, 0.3])
        policy = NumpyPolicy(actor, critic, spec, seed=0)
        observation = (
            np.random.default_rng(0).normal(size=(9,) + spec.observation_shape).astype(np.float32) * 2
        )
        expected = actor.params(observation)
        for key, value in policy.params(observation).items():
            self.assertAllClose(value, expected[key], atol=1e-5)
        self.assertAllClose(policy.value(observation), critic(observation), atol=1e-5)
        kernels = [layer.kernel.shape[1] for layer in critic.torso.layers]
        self.assertEqual(tuple(kernels), config.critic_hidden_sizes or config.hidden_sizes)

    def test_a_shared_torso_runs_once_per_step_with_the_values_of_two_passes(self):
        actor, critic = networks.build(BOX, Config(env="x", shared_torso=True))
        policy = NumpyPolicy(actor, critic, BOX, seed=0)
        observation = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
        policy.step(observation)  # the first step also checks parity against the Keras models
        calls, torso = [], policy.actor_torso
        policy.actor_torso = policy.critic_torso = lambda x: calls.append(1) or torso(x)
        out = policy.step(observation)
        self.assertLen(calls, 1)
        self.assertAllClose(out["value"], critic(observation), atol=1e-5)
        self.assertAllClose(out["loc"], actor.params(observation)["loc"], atol=1e-5)

    def test_sync_follows_the_weights(self):
        actor, critic = networks.build(BOX, Config(env="x"))
        policy = NumpyPolicy(actor, critic, BOX, seed=0)
        actor.head.loc.bias.assign([0.7, -0.7])
        critic.value.bias.assign([3.0])
        policy.sync()
        observation = np.zeros((2, 3), np.float32)
        self.assertAllClose(policy.mode(observation), actor.params(observation)["loc"])
        self.assertAllClose(policy.value(observation), critic(observation))

    def test_masked_actions_are_never_sampled_and_the_mode_is_valid(self):
        actor, critic = networks.build(MASKED, Config(env="x"))
        policy = NumpyPolicy(actor, critic, MASKED, seed=0)
        rng = np.random.default_rng(1)
        observation = rng.normal(size=(64, 4)).astype(np.float32)
        mask = rng.random((64, 5)) < 0.3
        mask[np.arange(64), rng.integers(0, 5, 64)] = True
        for _ in range(200):
            action = policy.step(observation, mask)["action"]
            self.assertTrue(np.all(mask[np.arange(64), action]))
        self.assertTrue(np.all(mask[np.arange(64), policy.mode(observation, mask)]))

    def test_sample_statistics(self):
        actor, critic = networks.build(BOX, Config(env="x", sigma="fixed", sigma_init=0.5))
        policy = NumpyPolicy(actor, critic, BOX, seed=0)
        observation = np.zeros((20_000, 3), np.float32)
        action = policy.step(observation)["action"]
        loc = actor.params(observation[:1])["loc"].numpy()[0]
        self.assertAllClose(action.mean(0), loc, atol=0.02)
        self.assertAllClose(action.std(0), [0.5, 0.5], atol=0.02)
        # Categorical frequencies follow the softmax.
        actor, critic = networks.build(MASKED, Config(env="x"))
        actor.head.logits.bias.assign([1.0, 0.0, -1.0, 0.5, 2.0])
        actor.head.logits.kernel.assign(np.zeros((64, 5), np.float32))
        policy = NumpyPolicy(actor, critic, MASKED, seed=0)
        action = policy.step(np.zeros((50_000, 4), np.float32))["action"]
        probs = tf.nn.softmax([1.0, 0.0, -1.0, 0.5, 2.0]).numpy()
        self.assertAllClose(np.bincount(action, minlength=5) / 50_000, probs, atol=0.01)


if __name__ == "__main__":
    tf.test.main()
