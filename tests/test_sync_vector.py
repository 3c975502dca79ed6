"""--vector_mode=sync's LeanSyncVectorEnv against gymnasium's SyncVectorEnv (SAME_STEP autoreset).

Same envs, seeds and actions, step for step: the same observations, rewards and flags, the same
action mask, final observations and final infos; only the per-step info keys training never
reads are left out. The envs cover episode ends inside the steps, masks in the info (one array
and MultiDiscrete's tuple), Tuple actions (the iterate path), Dict and Tuple observations (the
concatenate path) and Hopper's per-step info.
"""

import re

import gymnasium as gym
import numpy as np
from absl.testing import absltest, parameterized
from gymnasium.vector import AutoresetMode

from tests import fake_envs  # noqa: F401  (registers the test envs)
from tfppo import envs as envs_lib
from tfppo.config import ConfigError
from tfppo.sync_vector import LeanSyncVectorEnv


def assert_same(test, expected, actual, path="value"):
    """Exact equality of nested dicts / tuples / arrays (object arrays element by element)."""
    if isinstance(expected, dict):
        test.assertEqual(sorted(expected), sorted(actual), path)
        for key in expected:
            assert_same(test, expected[key], actual[key], f"{path}[{key!r}]")
    elif isinstance(expected, tuple):
        test.assertEqual(len(expected), len(actual), path)
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same(test, e, a, f"{path}[{index}]")
    elif isinstance(expected, np.ndarray) and expected.dtype == object:
        test.assertEqual(expected.shape, actual.shape, path)
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same(test, e, a, f"{path}[{index}]")
    else:
        expected, actual = np.asarray(expected), np.asarray(actual)
        test.assertEqual(expected.dtype, actual.dtype, path)
        np.testing.assert_array_equal(expected, actual, err_msg=path)


class FixedStep(gym.Env):
    """Every step returns observation(action) (a row of the Box by default) and `reward`."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, observation=lambda action: np.full(3, 0.5), reward=1.0):
        self.observation, self.reward = observation, reward

    def reset(self, seed=None, options=None):
        return np.zeros(3, np.float32), {}

    def step(self, action):
        return self.observation(action), self.reward, False, False, {}


class LeanSyncVectorEnvTest(parameterized.TestCase):
    @parameterized.parameters(
        ("CartPole-v1", 3, 120),
        ("Hopper-v5", 2, 150),
        ("tfppo/MaskedGrid-v0", 3, 120),
        ("tfppo/MaskedMultiDiscrete-v0", 2, 60),
        ("tfppo/HybridMoving-v0", 2, 250),
        ("DictObservation-v0", 2, 20),
        ("TupleObservation-v0", 2, 20),
    )
    def test_same_steps_as_gymnasium(self, env_id, num_envs, steps):
        source = envs_lib.source_from_id(env_id)
        reference = gym.vector.SyncVectorEnv([source.make] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)
        lean = LeanSyncVectorEnv([source.make] * num_envs)
        assert_same(self, reference.reset(seed=3), lean.reset(seed=3), "reset")
        reference.action_space.seed(5)
        ends, previous = 0, None
        for t in range(steps):
            action = reference.action_space.sample()
            expected, actual = reference.step(action), lean.step(action)
            if previous is not None:  # A returned observation is the caller's: the next step keeps it.
                assert_same(self, previous[0], previous[1], f"step {t - 1} observation after step {t}")
            previous = expected[0], actual[0]
            for name, e, a in zip(
                ("observation", "reward", "terminated", "truncated"), expected[:4], actual[:4], strict=True
            ):
                assert_same(self, e, a, f"step {t} {name}")
            info, lean_info = expected[4], actual[4]
            ended = np.logical_or(expected[2], expected[3])
            ends += int(ended.sum())
            kept = [k for k in info if k.lstrip("_") == envs_lib.MASK_KEY]
            if ended.any():
                kept += ["final_obs", "_final_obs", "final_info", "_final_info"]
            assert_same(self, {k: info[k] for k in kept}, lean_info, f"step {t} info")
        self.assertGreater(ends, 0, "the steps should cover an episode end")
        if env_id.startswith("tfppo/Masked"):
            self.assertIn(envs_lib.MASK_KEY, lean_info)
        reference.close()
        lean.close()

    def test_observations_that_are_not_arrays_of_the_row_shape(self):
        # A floating Box's rows are assigned as they arrive; a list is stacked as gymnasium does,
        # and a wrong shape still fails as gymnasium's np.stack does (no silent broadcast).
        listed = LeanSyncVectorEnv([lambda: FixedStep(lambda action: [0.25, 0.5, float(action)]), FixedStep])
        listed.reset(seed=0)
        observation = listed.step(np.array([1, 0]))[0]
        np.testing.assert_array_equal(observation, [[0.25, 0.5, 1.0], [0.5, 0.5, 0.5]])
        self.assertEqual(observation.dtype, np.float32)
        for make in (gym.vector.SyncVectorEnv, LeanSyncVectorEnv):
            wrong = make([FixedStep, lambda: FixedStep(lambda action: np.full(1, 0.5))])
            wrong.reset(seed=0)
            with self.assertRaises(ValueError, msg=make.__name__):
                wrong.step(np.array([0, 0]))
        wrong = LeanSyncVectorEnv([FixedStep, lambda: FixedStep(lambda action: np.full(1, 0.5))])
        wrong.reset(seed=0)
        with self.assertRaisesRegex(  # which env, what it returned and what was expected
            ConfigError,
            r"^env 1 returned an observation of shape \(1,\); its observation_space has shape \(3,\)$",
        ):
            wrong.step(np.array([0, 0]))

    def test_rewards_that_are_not_real_numbers(self):
        # Real scalars of any kind (and a 0-d array) give gymnasium's reward row; None would be
        # stored as nan and a string parsed ("1.5" -> 1.5), so both are refused naming the env.
        good = [1.5, 2, True, np.float32(0.25), np.int64(-3), np.array(4.0)]
        lean = LeanSyncVectorEnv([lambda r=r: FixedStep(reward=r) for r in good])
        lean.reset(seed=0)
        rewards = lean.step(np.zeros(len(good), np.int64))[1]
        np.testing.assert_array_equal(rewards, [1.5, 2.0, 1.0, 0.25, -3.0, 4.0])
        self.assertEqual(rewards.dtype, np.float64)
        for bad, shown in (
            (None, "None (NoneType)"),
            ("1.5", "'1.5' (str)"),
            (np.array([1.0]), "array([1.]) (ndarray)"),
        ):
            lean = LeanSyncVectorEnv([FixedStep, lambda b=bad: FixedStep(reward=b)])
            lean.reset(seed=0)
            with self.assertRaisesRegex(
                ConfigError, f"^{re.escape(f'env 1 returned reward {shown}; expected a real number')}$"
            ):
                lean.step(np.zeros(2, np.int64))

    def test_leaves_out_the_keys_training_does_not_read(self):
        lean = LeanSyncVectorEnv([envs_lib.source_from_id("Hopper-v5").make])
        lean.reset(seed=0)
        self.assertEqual(lean.step(np.zeros((1, 3), np.float32))[4], {})
        lean.close()

    def test_is_what_training_builds_for_sync(self):
        from tfppo.config import Config

        source = envs_lib.source_from_id("CartPole-v1")
        probed = envs_lib.probe(source)
        vector_env = envs_lib.make_vector_env(Config(env="CartPole-v1", num_envs=2), source, probed)
        self.assertIsInstance(vector_env, LeanSyncVectorEnv)
        vector_env.close()


if __name__ == "__main__":
    absltest.main()
