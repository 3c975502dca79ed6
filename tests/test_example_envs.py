"""tfppo.example_envs: API conformance, masks, documented optima, seeding. No TensorFlow."""

from __future__ import annotations

import copy
import unittest
import warnings
from collections import deque

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env

from tfppo import example_envs
from tfppo.example_envs import HybridMovingEnv, MaskedGridEnv, MaskedMultiDiscreteEnv

IDS = (
    "tfppo/MaskedGrid-v0",
    "tfppo/MaskedMultiDiscrete-v0",
    "tfppo/HybridMoving-v0",
    "tfppo/HybridMovingDict-v0",
)
UP, DOWN, LEFT, RIGHT = range(4)


def grid_action(direction: int, length: int) -> int:
    return direction * 5 + length - 1


def rollout(env: gym.Env, policy, seed: int) -> tuple[float, int, dict]:
    """Runs one episode; returns (return, steps, last info)."""
    observation, info = env.reset(seed=seed)
    total, steps, done = 0.0, 0, False
    while not done:
        observation, reward, terminated, truncated, info = env.step(policy(env, observation, info))
        total, steps, done = total + reward, steps + 1, terminated or truncated
    return total, steps, info


class RegistrationTest(unittest.TestCase):
    def test_ids_are_registered_with_time_limits(self):
        limits = {IDS[0]: 50, IDS[1]: 20, IDS[2]: 200, IDS[3]: 200}
        for env_id, limit in limits.items():
            with self.subTest(env_id=env_id):
                self.assertEqual(gym.spec(env_id).max_episode_steps, limit)

    def test_module_prefixed_id_and_reimport(self):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            env = gym.make("tfppo.example_envs:tfppo/MaskedGrid-v0")
            example_envs._register("tfppo/MaskedGrid-v0", "MaskedGridEnv", 50)
        self.assertIsInstance(env.unwrapped, MaskedGridEnv)

    def test_env_checker_passes_without_warnings(self):
        for env_id in IDS:
            with self.subTest(env_id=env_id), warnings.catch_warnings():
                warnings.simplefilter("error")
                env = gym.make(env_id)
                check_env(env.unwrapped)
                env.close()

    def test_spaces(self):
        for env_id in IDS:
            space = gym.make(env_id).observation_space
            self.assertIsInstance(space, gym.spaces.Box)
            self.assertEqual(space.dtype, np.float32)
        self.assertEqual(gym.make(IDS[0]).action_space, gym.spaces.Discrete(20))
        np.testing.assert_array_equal(gym.make(IDS[1]).action_space.nvec, [3, 5, 2])
        box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.assertEqual(gym.make(IDS[2]).action_space, gym.spaces.Tuple((gym.spaces.Discrete(3), box)))
        expected = gym.spaces.Dict({"action_type": gym.spaces.Discrete(3), "parameters": box})
        self.assertEqual(gym.make(IDS[3]).action_space, expected)

    def test_rendering_is_refused(self):
        with self.assertRaises(ValueError):
            MaskedGridEnv(render_mode="human")

    def test_same_seed_same_trajectory(self):
        for env_id in IDS:
            with self.subTest(env_id=env_id):
                runs = []
                for _ in range(2):
                    env = gym.make(env_id)
                    env.action_space.seed(7)
                    observations = [env.reset(seed=3)[0]]
                    rewards = []
                    for _ in range(30):
                        observation, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                        observations.append(observation)
                        rewards.append(reward)
                        if terminated or truncated:
                            observations.append(env.reset()[0])
                    runs.append((np.array(observations), np.array(rewards)))
                np.testing.assert_array_equal(runs[0][0], runs[1][0])
                np.testing.assert_array_equal(runs[0][1], runs[1][1])
                other = gym.make(env_id).reset(seed=4)[0]
                self.assertFalse(np.array_equal(runs[0][0][0], other))


class MaskedGridTest(unittest.TestCase):
    def setUp(self):
        self.env = gym.make("tfppo/MaskedGrid-v0")

    def test_mask_shape_and_consistency_with_dynamics(self):
        rng = np.random.default_rng(0)
        for seed in range(10):
            _, info = self.env.reset(seed=seed)
            for _ in range(15):
                mask = info["action_mask"]
                self.assertEqual((mask.shape, mask.dtype), ((20,), np.bool_))
                self.assertTrue(mask.any())
                self.assertLess(mask.sum(), 20)
                for action in range(20):  # The mask says exactly which actions the env treats as invalid.
                    probe = copy.deepcopy(self.env.unwrapped)
                    self.assertEqual(probe.step(action)[4]["invalid_action"], not mask[action])
                _, _, terminated, _, info = self.env.step(int(rng.choice(np.flatnonzero(mask))))
                if terminated:
                    break

    def test_invalid_actions_are_penalised_no_ops(self):
        observation, info = self.env.reset(seed=0, options={"agent": (2, 2), "goal": (5, 5)})
        invalid = [grid_action(UP, 3), grid_action(LEFT, 3), grid_action(RIGHT, 1), grid_action(RIGHT, 2)]
        valid = [grid_action(UP, 2), grid_action(DOWN, 3), grid_action(LEFT, 2), grid_action(DOWN, 1)]
        self.assertFalse(info["action_mask"][invalid].any())  # Off the grid (2), into the wall (2).
        self.assertTrue(info["action_mask"][valid].all())
        self.assertEqual(info["action_mask"].sum(), 7)  # Up 1-2, down 1-3, left 1-2.
        for action in invalid:
            after, reward, terminated, truncated, step_info = self.env.step(action)
            np.testing.assert_array_equal(after, observation)
            self.assertAlmostEqual(reward, -0.12)
            self.assertEqual((terminated, truncated, step_info["invalid_action"]), (False, False, True))
        _, reward, _, _, step_info = self.env.step(grid_action(DOWN, 3))
        self.assertEqual(self.env.unwrapped.agent, (5, 2))
        self.assertAlmostEqual(reward, -0.02)
        self.assertFalse(step_info["invalid_action"])

    def test_a_jump_may_not_pass_over_the_goal(self):
        _, info = self.env.reset(seed=0, options={"agent": (0, 0), "goal": (0, 2)})
        self.assertFalse(info["action_mask"][grid_action(RIGHT, 3)])
        _, reward, terminated, _, _ = self.env.step(grid_action(RIGHT, 2))
        self.assertTrue(terminated)
        self.assertAlmostEqual(reward, 0.98)

    def test_documented_optimum_around_the_wall(self):
        self.env.reset(seed=0, options={"agent": (2, 0), "goal": (2, 5)})
        self.assertAlmostEqual(self.env.unwrapped.optimal_return(), 0.94)
        path = [grid_action(UP, 2), grid_action(RIGHT, 5), grid_action(DOWN, 2)]
        total = sum(self.env.step(action)[1] for action in path)
        self.assertAlmostEqual(total, 0.94)
        self.assertEqual(self.env.unwrapped.agent, (2, 5))
        with self.assertRaises(ValueError):
            self.env.reset(options={"agent": (2, 3)})  # A wall cell.

    def shortest_path_by_search(self) -> list[int]:
        """Breadth-first search over copies of the env, using only its mask and step."""
        queue = deque([(copy.deepcopy(self.env.unwrapped), [])])
        seen = {self.env.unwrapped.agent}
        while queue:
            env, path = queue.popleft()
            for action in np.flatnonzero(env.action_mask()):
                child = copy.deepcopy(env)
                if child.step(int(action))[2]:
                    return [*path, int(action)]
                if child.agent not in seen:
                    seen.add(child.agent)
                    queue.append((child, [*path, int(action)]))
        raise AssertionError("goal unreachable")

    def test_scripted_optimal_policy_reaches_the_optimal_return(self):
        for seed in range(20):
            self.env.reset(seed=seed)
            optimum = self.env.unwrapped.optimal_return()
            self.assertTrue(0.94 - 1e-9 <= optimum <= 0.98 + 1e-9)
            path = self.shortest_path_by_search()
            total, terminated = 0.0, False
            for action in path:
                _, reward, terminated, _, _ = self.env.step(action)
                total += reward
            self.assertTrue(terminated)
            self.assertAlmostEqual(total, optimum)

    def test_random_policies_do_clearly_worse_and_masking_helps(self):
        rng = np.random.default_rng(0)
        unmasked = [rollout(self.env, lambda *_: int(rng.integers(20)), seed)[0] for seed in range(40)]
        masked = [
            rollout(self.env, lambda e, o, i: int(rng.choice(np.flatnonzero(i["action_mask"]))), seed)[0]
            for seed in range(40)
        ]
        self.assertLess(np.mean(unmasked), -1.0)  # About -2.8: many penalised invalid actions.
        self.assertLess(np.mean(masked), 0.6)  # About 0.26; the optimum is at least 0.94.
        self.assertGreater(np.mean(masked), np.mean(unmasked) + 1.0)


class MaskedMultiDiscreteTest(unittest.TestCase):
    def setUp(self):
        self.env = gym.make("tfppo/MaskedMultiDiscrete-v0")

    @staticmethod
    def targets(observation: np.ndarray) -> np.ndarray:
        return np.array([segment.argmax() for segment in np.split(observation, [3, 8])])

    def test_mask_is_a_tuple_of_bool_arrays_that_varies(self):
        _, info = self.env.reset(seed=0)
        seen = set()
        for _ in range(20):
            mask = info["action_mask"]
            self.assertIsInstance(mask, tuple)
            self.assertEqual([m.shape for m in mask], [(3,), (5,), (2,)])
            self.assertTrue(all(m.dtype == np.bool_ and m.any() for m in mask))
            seen.add(tuple(np.concatenate(mask)))
            info = self.env.step(self.env.action_space.sample())[4]
        self.assertGreater(len(seen), 5)

    def test_scripted_policy_scores_the_optimum_and_respects_the_mask(self):
        def policy(env, observation, info):
            action = self.targets(observation)
            self.assertTrue(all(mask[a] for mask, a in zip(info["action_mask"], action, strict=True)))
            return action

        for seed in range(5):
            total, steps, _ = rollout(self.env, policy, seed)
            self.assertEqual((total, steps), (MaskedMultiDiscreteEnv.OPTIMAL_RETURN, 20))

    def test_masked_out_values_are_wrong_and_score_zero(self):
        observation, info = self.env.reset(seed=1)
        for _ in range(20):
            target = self.targets(observation)
            masked_out = np.flatnonzero(~info["action_mask"][1])
            if masked_out.size:
                action = target.copy()
                action[1] = masked_out[0]
                self.assertNotEqual(masked_out[0], target[1])
                self.assertEqual(self.env.step(action)[1], 2.0)
                return
            observation, _, _, _, info = self.env.step(target)
        self.fail("no masked-out value in dimension 1 in 20 steps")

    def test_random_policies_do_clearly_worse(self):
        self.env.action_space.seed(0)
        space = self.env.action_space
        unmasked = [rollout(self.env, lambda *_: space.sample(), seed)[0] for seed in range(30)]
        as_int8 = lambda info: tuple(m.astype(np.int8) for m in info["action_mask"])
        masked = [
            rollout(self.env, lambda e, o, i: space.sample(mask=as_int8(i)), seed)[0] for seed in range(30)
        ]
        self.assertLess(np.mean(unmasked), 25.0)  # Expected 20.7.
        self.assertGreater(np.mean(masked), np.mean(unmasked) + 8.0)  # Expected 34.4.
        self.assertLess(np.mean(masked), 40.0)


def steer(env, observation, info):
    """Scripted near-optimal Moving policy: face the target, then accelerate straight at it."""
    moving = env.unwrapped
    bearing = float(np.arctan2(observation[9], observation[8]))
    if abs(bearing) > 0.01:
        return HybridMovingEnv.TURN, np.array([0.0, bearing / np.pi], np.float32)
    return HybridMovingEnv.ACCELERATE, np.array(
        [1.0 if moving.speed < moving.MAX_SPEED else 0.0, 0.0], np.float32
    )


def as_dict(action):
    return {"action_type": action[0], "parameters": action[1]}


class HybridMovingTest(unittest.TestCase):
    def setUp(self):
        self.env = gym.make("tfppo/HybridMoving-v0")

    def test_parameter_mask(self):
        expected = np.array([[True, False], [False, True], [False, False]])
        np.testing.assert_array_equal(HybridMovingEnv.PARAMETER_MASK, expected)
        _, info = self.env.reset(seed=0)
        np.testing.assert_array_equal(info["parameter_mask"], expected)
        info = self.env.step((2, np.zeros(2, np.float32)))[4]
        np.testing.assert_array_equal(info["parameter_mask"], expected)
        self.assertFalse(info["is_success"])

    def test_each_action_type_ignores_the_parameters_it_does_not_use(self):
        self.env.reset(seed=0)
        self.env.step((0, np.array([1.0, 0.0], np.float32)))  # Get moving, so braking matters.
        for action_type in range(3):
            outcomes = []
            for unused in (-1.0, 0.3, 1.0):
                parameters = np.array([0.5, -0.25], np.float32)
                parameters[~HybridMovingEnv.PARAMETER_MASK[action_type]] = unused
                outcomes.append(copy.deepcopy(self.env.unwrapped).step((action_type, parameters))[:2])
            for observation, reward in outcomes[1:]:
                np.testing.assert_array_equal(observation, outcomes[0][0])
                self.assertEqual(reward, outcomes[0][1])

    def test_scripted_policy_succeeds_with_the_documented_return(self):
        for seed in range(20):
            total, steps, info = rollout(self.env, steer, seed)
            optimum = self.env.unwrapped.optimal_return()
            self.assertTrue(info["is_success"])
            self.assertLess(steps, 80)
            self.assertGreaterEqual(total, optimum - 1e-6)
            self.assertLessEqual(total, optimum + HybridMovingEnv.MAX_SPEED + 1e-6)

    def test_random_policy_rarely_succeeds(self):
        self.env.action_space.seed(0)
        space = self.env.action_space
        results = [rollout(self.env, lambda *_: space.sample(), seed) for seed in range(10)]
        self.assertLessEqual(np.mean([info["is_success"] for _, _, info in results]), 0.1)
        self.assertLess(np.mean([total for total, _, _ in results]), 5.0)  # A success returns more than 10.

    def test_dict_variant_matches_the_tuple_variant(self):
        dict_env = gym.make("tfppo/HybridMovingDict-v0")
        tuple_run = rollout(self.env, steer, 5)
        dict_run = rollout(dict_env, lambda e, o, i: as_dict(steer(e, o, i)), 5)
        self.assertEqual(tuple_run[:2], dict_run[:2])
        self.assertTrue(dict_run[2]["is_success"])


if __name__ == "__main__":
    unittest.main()
