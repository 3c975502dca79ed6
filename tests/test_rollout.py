"""GAE by hand and against an independent loop; the collector's truncation and raw actions."""

import gymnasium as gym
import numpy as np
from absl.testing import absltest, parameterized
from gymnasium.vector import AutoresetMode

import tests.fake_envs  # noqa: F401  (registers the test envs)
from tests.fake_envs import RecordingBoxEnv
from tfppo import envs as envs_lib
from tfppo import rollout, sync_vector
from tfppo.config import ConfigError


def gae_by_definition(rewards, values, terminated, truncated, truncation_values, last_value, gamma, lam):
    """A_t = sum_k (gamma lam)^k delta_{t+k}, summed forward until the episode ends."""
    T, B = rewards.shape
    advantages = np.zeros((T, B))
    for b in range(B):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                if terminated[k, b]:
                    next_value = 0.0
                elif truncated[k, b]:
                    next_value = truncation_values[k, b]
                else:
                    next_value = values[k + 1, b] if k + 1 < T else last_value[b]
                total += weight * (rewards[k, b] + gamma * next_value - values[k, b])
                if terminated[k, b] or truncated[k, b]:
                    break
                weight *= gamma * lam
            advantages[t, b] = total
    return advantages


def gae(
    rewards,
    values=None,
    terminated=None,
    truncated=None,
    truncation_values=None,
    last_value=None,
    gamma=0.5,
    lam=1.0,
):
    rewards = np.asarray(rewards, np.float32)[:, None]
    zeros = np.zeros_like(rewards)
    falses = zeros.astype(bool)

    def column(x, default):
        return default if x is None else np.asarray(x)[:, None].astype(default.dtype)

    return rollout.compute_gae(
        rewards,
        column(values, zeros),
        column(terminated, falses),
        column(truncated, falses),
        column(truncation_values, zeros),
        np.asarray([0.0 if last_value is None else last_value], np.float32),
        gamma,
        lam,
    )


class GaeTest(parameterized.TestCase):
    def test_discounted_return_by_hand(self):
        advantages, returns = gae([1, 1, 1], last_value=4.0)
        self.assertSequenceAlmostEqual(
            returns[:, 0], [1 + 0.5 + 0.25 + 0.125 * 4, 1 + 0.5 + 0.25 * 4, 1 + 0.5 * 4]
        )

    def test_termination_stops_bootstrapping(self):
        _, returns = gae([1, 1, 1], terminated=[False, True, False], last_value=4.0)
        self.assertSequenceAlmostEqual(returns[:, 0], [1.5, 1.0, 3.0])

    def test_truncation_bootstraps_from_the_final_observation(self):
        _, returns = gae(
            [1, 1, 1], truncated=[False, True, False], truncation_values=[0, 10, 0], last_value=4.0
        )
        self.assertSequenceAlmostEqual(returns[:, 0], [1 + 0.5 * (1 + 0.5 * 10), 6.0, 3.0])

    def test_terminated_wins_over_truncated(self):
        _, returns = gae([1, 1], terminated=[True, False], truncated=[True, False], truncation_values=[10, 0])
        self.assertAlmostEqual(returns[0, 0], 1.0)

    def test_lambda_zero_is_one_step_td(self):
        advantages, _ = gae([1, 2], values=[3, 5], last_value=7.0, gamma=0.9, lam=0.0)
        self.assertSequenceAlmostEqual(advantages[:, 0], [1 + 0.9 * 5 - 3, 2 + 0.9 * 7 - 5], places=5)

    @parameterized.parameters((0.99, 0.95), (0.9, 1.0), (0.5, 0.0))
    def test_matches_an_independent_loop_with_mid_rollout_ends(self, gamma, lam):
        rng = np.random.default_rng(0)
        T, B = 17, 5
        rewards = rng.normal(size=(T, B)).astype(np.float32)
        values = rng.normal(size=(T, B)).astype(np.float32)
        terminated = rng.random((T, B)) < 0.1
        truncated = rng.random((T, B)) < 0.1
        truncation_values = rng.normal(size=(T, B)).astype(np.float32)
        last_value = rng.normal(size=B).astype(np.float32)
        advantages, returns = rollout.compute_gae(
            rewards, values, terminated, truncated, truncation_values, last_value, gamma, lam
        )
        expected = gae_by_definition(
            rewards, values, terminated, truncated, truncation_values, last_value, gamma, lam
        )
        np.testing.assert_allclose(advantages, expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(returns, expected + values, rtol=1e-5, atol=1e-5)


def gae_step_by_step(rewards, values, terminated, truncated, truncation_values, last_value, gamma, lam):
    """compute_gae as it was written before it vectorised all but the recursion (commit 2992367):
    one NumPy row operation after another, the golden values of the bit-for-bit test below."""
    advantages = np.zeros_like(values, dtype=np.float32)
    next_advantage = np.zeros_like(last_value, dtype=np.float32)
    next_value = last_value.astype(np.float32)
    for t in reversed(range(rewards.shape[0])):
        bootstrap = np.where(truncated[t], truncation_values[t], next_value)
        bootstrap = np.where(terminated[t], 0.0, bootstrap)
        delta = rewards[t] + gamma * bootstrap - values[t]
        episode_goes_on = ~(terminated[t] | truncated[t])
        next_advantage = delta + gamma * lam * episode_goes_on * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages, (advantages + values).astype(np.float32)


class GaeBitForBitTest(parameterized.TestCase):
    """The vectorised GAE gives the step-by-step loop's float32 bits (training stays the same)."""

    @parameterized.parameters(
        (2048, 1, 0.99, 0.95), (32, 8, 0.98, 0.8), (128, 4, 0.999, 1.0), (5, 3, 0.9, 0.0)
    )
    def test_same_bits_as_the_step_by_step_loop(self, T, B, gamma, lam):
        rng = np.random.default_rng(T + B)
        rewards = rng.normal(size=(T, B)).astype(np.float32) * 10
        values = rng.normal(size=(T, B)).astype(np.float32) * 30
        terminated = rng.random((T, B)) < 0.02
        truncated = rng.random((T, B)) < 0.02
        truncation_values = rng.normal(size=(T, B)).astype(np.float32)
        last_value = rng.normal(size=B).astype(np.float32)
        args = (rewards, values, terminated, truncated, truncation_values, last_value, gamma, lam)
        expected, actual = gae_step_by_step(*args), rollout.compute_gae(*args)
        for e, a in zip(expected, actual, strict=True):
            self.assertEqual(a.dtype, np.float32)
            self.assertTrue(a.flags.c_contiguous)
            np.testing.assert_array_equal(a.view(np.uint32), e.view(np.uint32))


def make_collector(
    env_id="RecordingBox-v0", num_envs=1, shift=0.0, scale=1.0, store_clipped=False, vector_env=None
):
    """vector_env: a vector env of your own in place of gymnasium's SyncVectorEnv of env_id."""
    if vector_env is None:
        vector_env = gym.vector.SyncVectorEnv(
            [lambda: gym.make(env_id)] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP
        )
    _, info = vector_env.reset(seed=0)
    spec = envs_lib.env_spec(
        vector_env.single_observation_space, vector_env.single_action_space, envs_lib.MASK_KEY in info
    )
    collector = rollout.Collector(
        vector_env,
        spec,
        seed=0,
        reward_shift=shift,
        reward_scale=scale,
        train_on_clipped_actions=store_clipped,
    )
    return collector, spec


def idle_policy(num_envs: int, num_actions: int = 2):
    """A policy_step for Discrete(num_actions) envs that always takes action 0."""

    def policy_step(observation, mask):
        return {
            "action": np.zeros(num_envs, np.int32),
            "log_prob": np.zeros(num_envs),
            "value": np.zeros(num_envs),
            "logits": np.zeros((num_envs, num_actions)),
        }

    return policy_step


class CollectorTest(absltest.TestCase):
    def test_raw_actions_are_stored_while_the_env_gets_clipped_ones(self):
        self._check_stored_actions(store_clipped=False)

    def test_tutorial_parity_stores_the_clipped_actions(self):
        self._check_stored_actions(store_clipped=True)

    def _check_stored_actions(self, store_clipped):
        collector, spec = make_collector(store_clipped=store_clipped)
        buffer = rollout.Rollout(4, 1, spec)
        raw = [np.array([[5.0, -0.5]], np.float32), np.array([[-3.0, 0.25]], np.float32)] * 2

        def policy_step(observation, mask):
            action = raw[len(RecordingBoxEnv.received) % 4]
            return {
                "action": action,
                "log_prob": np.zeros(1),
                "value": np.zeros(1),
                "loc": action,
                "scale": np.ones((1, 2)),
            }

        RecordingBoxEnv.received.clear()
        collector.collect(buffer, policy_step, lambda obs: np.zeros(len(obs), np.float32))
        stored = np.clip(np.concatenate(raw), -1, 1) if store_clipped else np.concatenate(raw)
        np.testing.assert_array_equal(buffer.action[:, 0], stored)
        np.testing.assert_array_equal(np.stack(RecordingBoxEnv.received), np.clip(np.concatenate(raw), -1, 1))

    def test_truncation_uses_the_final_observation_and_raw_episode_returns(self):
        # Time limit 3 inside a rollout of 5 steps; V(s) = sum of the observation.
        collector, spec = make_collector(shift=1.0, scale=2.0)
        buffer = rollout.Rollout(5, 1, spec)

        def policy_step(observation, mask):
            return {
                "action": np.zeros((1, 2), np.float32),
                "log_prob": np.zeros(1),
                "value": observation.sum(-1),
                "loc": np.zeros((1, 2)),
                "scale": np.ones((1, 2)),
            }

        collector.collect(buffer, policy_step, lambda obs: obs.sum(-1))
        np.testing.assert_array_equal(buffer.truncated[:, 0], [False, False, True, False, False])
        np.testing.assert_array_equal(buffer.terminated[:, 0], [False] * 5)
        np.testing.assert_array_equal(buffer.observation[:, 0, 0], [0, 1, 2, 0, 1])
        self.assertEqual(buffer.truncation_value[2, 0], 9.0)  # V([3, 3, 3]), not V(reset obs)
        self.assertEqual(buffer.last_value[0], 6.0)  # V([2, 2, 2]) after the rollout
        np.testing.assert_array_equal(buffer.reward[:, 0], [4.0] * 5)  # (1 + 1) * 2
        self.assertEqual(list(collector.recent_returns), [3.0])  # raw, undiscounted
        self.assertEqual(collector.env_steps, 5)

    def test_nan_reward_is_a_clear_error(self):
        collector, spec = make_collector("NanReward-v0")
        buffer = rollout.Rollout(8, 1, spec)
        with self.assertRaisesRegex(ValueError, r"env 0 returned reward nan at env step 4"):
            collector.collect(buffer, idle_policy(1), lambda obs: np.zeros(len(obs)))

    def test_a_refused_reward_names_the_env_step(self):
        class NoReward(tests.fake_envs.NanRewardEnv):
            def step(self, action):
                observation, reward, terminated, truncated, info = super().step(action)
                return observation, (None if self.t == 3 else reward), terminated, truncated, info

        collector, spec = make_collector(vector_env=sync_vector.LeanSyncVectorEnv([NoReward, NoReward]))
        message = r"^env 0 returned reward None \(NoneType\); expected a real number \(at env step 4\)$"
        with self.assertRaisesRegex(ConfigError, message):
            collector.collect(rollout.Rollout(8, 2, spec), idle_policy(2), lambda obs: np.zeros(len(obs)))

    def test_mask_from_info_is_stored_and_checked(self):
        collector, spec = make_collector("MaskedChain-v0", num_envs=2)
        self.assertTrue(spec.has_mask)
        buffer = rollout.Rollout(3, 2, spec)

        def policy_step(observation, mask):
            return {
                "action": np.argmax(mask, -1).astype(np.int32),
                "log_prob": np.zeros(2),
                "value": np.zeros(2),
                "logits": np.zeros((2, 4)),
            }

        collector.collect(buffer, policy_step, lambda obs: np.zeros(len(obs)))
        np.testing.assert_array_equal(buffer.mask[1, 0], [False, True, True, False])
        self.assertTrue(np.all(buffer.mask[np.arange(3), :, np.arange(3)]))  # action t % 4 is valid at t

    def test_mask_from_a_dict_observation(self):
        collector, spec = make_collector("MaskedChainDict-v0", num_envs=2)
        self.assertTrue(spec.has_mask)
        self.assertEqual(spec.observation_shape, (1,))
        buffer = rollout.Rollout(3, 2, spec)

        def policy_step(observation, mask):
            return {
                "action": np.argmax(mask, -1).astype(np.int32),
                "value": np.zeros(2),
                "logits": np.zeros((2, 4)),
            }

        collector.collect(buffer, policy_step, lambda obs: np.zeros(len(obs)))
        np.testing.assert_array_equal(buffer.observation[:, 0, 0], [0, 1, 2])
        np.testing.assert_array_equal(buffer.mask[2, 1], [False, False, True, True])
        spec = envs_lib.action_spec(gym.spaces.Discrete(4))
        with self.assertRaisesRegex(ValueError, "allows no action in env 1"):
            envs_lib.check_mask(np.array([[True, False, False, False], [False] * 4]), spec, 7)
        with self.assertRaisesRegex(ValueError, r"shape \(2, 3\)"):
            envs_lib.check_mask(np.ones((2, 3), bool), spec, 7)


if __name__ == "__main__":
    absltest.main()
