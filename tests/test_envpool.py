"""--vector_mode=envpool: the adapter that gives EnvPool's pools gymnasium's SAME_STEP autoreset.

EnvPool is optional. The adapter's contract is tested everywhere against FakePool, EnvPool's
autoreset rule played by gymnasium envs: same seeds and actions must give exactly what
gymnasium's SyncVectorEnv gives. The cases on the real package run where it is installed
(`.venv/bin/pip install envpool==1.2.5`; BUILD.md).
"""

import dataclasses
import importlib.util
import sys
import types
from unittest import mock

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from gymnasium.vector import AutoresetMode

import tfppo
from tests.helpers import make_tempdir, tiny_config
from tfppo import envpool_vector
from tfppo import envs as envs_lib
from tfppo.config import ConfigError

HAS_ENVPOOL = importlib.util.find_spec("envpool") is not None


class FakePool:
    """EnvPool's gymnasium-API contract over gymnasium envs: env i seeded with seed + i at its first
    reset; an env whose step ended its episode resets on its next step (that step's action
    ignored, reward 0); reset(env_id) resets the given envs; results may come in any env order
    (`reverse`: always in reverse order), with info["env_id"] saying which is which."""

    def __init__(self, env_id, num_envs, seed, reverse=False, **kwargs):
        self.envs = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
        self.seed, self.reverse = seed, reverse
        self.seeded = np.zeros(num_envs, bool)
        self.needs_reset = np.zeros(num_envs, bool)
        self.observation_space = self.envs[0].observation_space
        self.action_space = self.envs[0].action_space
        self.closed = False

    def _reset_one(self, i):
        observation, _ = self.envs[i].reset(seed=None if self.seeded[i] else int(self.seed + i))
        self.seeded[i], self.needs_reset[i] = True, False
        return observation

    def _out(self, ids, *arrays):
        ids = np.asarray(ids)
        if self.reverse:
            ids, arrays = ids[::-1], tuple(a[::-1] for a in arrays)
        return ids, arrays

    def reset(self, env_id=None):
        ids = np.arange(len(self.envs)) if env_id is None else np.asarray(env_id)
        ids, (observation,) = self._out(ids, np.stack([self._reset_one(i) for i in ids]))
        return observation, {"env_id": ids}

    def step(self, action):
        rows = []
        for i, env in enumerate(self.envs):
            if self.needs_reset[i]:
                rows.append((self._reset_one(i), 0.0, False, False))
            else:
                observation, reward, terminated, truncated, _ = env.step(action[i])
                self.needs_reset[i] = terminated or truncated
                rows.append((observation, reward, terminated, truncated))
        observation, reward, terminated, truncated = (np.array(column) for column in zip(*rows, strict=True))
        ids, arrays = self._out(np.arange(len(self.envs)), observation, reward, terminated, truncated)
        return (*arrays, {"env_id": ids})

    def close(self):
        self.closed = True


def fake_envpool(**pool_kwargs):
    """A stand-in for the envpool module (its list_all_envs and make_gymnasium) over FakePool."""
    pools = []

    def make_gymnasium(task_id, num_envs, batch_size, num_threads, seed, **kwargs):
        assert batch_size == num_envs and 1 <= num_threads <= num_envs
        pools.append(FakePool(task_id, num_envs, seed, **pool_kwargs, **kwargs))
        return pools[-1]

    return types.SimpleNamespace(
        list_all_envs=lambda: ["CartPole-v1", "Pendulum-v1"], make_gymnasium=make_gymnasium, pools=pools
    )


def run_both(pool_env, num_envs, seed, steps, env_kwargs):
    """Steps PoolVectorEnv and gymnasium's SyncVectorEnv (SAME_STEP) with the same random actions;
    returns both records: the first observation, then per step (observation, reward, terminated,
    truncated, final observations)."""
    reference = gym.vector.SyncVectorEnv(
        [lambda: gym.make("CartPole-v1", **env_kwargs)] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP
    )
    actions = np.random.default_rng(seed).integers(0, 2, (steps, num_envs))
    records = []
    for env in (pool_env, reference):
        observation, _ = env.reset(seed=[seed + i for i in range(num_envs)])
        record = [observation]
        for action in actions:
            observation, reward, terminated, truncated, info = env.step(action)
            final = info.get("final_obs", np.full(num_envs, None, object))
            record.append((observation, reward, terminated, truncated, list(final)))
        records.append(record)
        env.close()
    return records


class PoolVectorEnvTest(tf.test.TestCase):
    def assert_same_records(self, ours, reference):
        self.assertAllEqual(ours[0], reference[0])
        ended = 0
        for (o1, r1, te1, tr1, f1), (o2, r2, te2, tr2, f2) in zip(ours[1:], reference[1:], strict=True):
            self.assertAllEqual(o1, o2)
            self.assertAllEqual(np.asarray(r1, np.float64), np.asarray(r2, np.float64))
            self.assertAllEqual(te1, te2)
            self.assertAllEqual(tr1, tr2)
            for a, b in zip(f1, f2, strict=True):
                self.assertEqual(a is None, b is None)
                if a is not None:
                    self.assertAllEqual(a, b)
                    ended += 1
        return ended

    def test_same_steps_as_gymnasium_same_step_autoreset(self):
        """Terminations and truncations (max 12 steps) in 3 envs over 200 steps: observations,
        rewards, flags and final observations equal gymnasium's, step for step; results that
        arrive in reverse env order are put back in order."""
        kwargs = {"max_episode_steps": 12}
        for reverse in (False, True):
            pool_env = envpool_vector.PoolVectorEnv(
                lambda seed, reverse=reverse: FakePool("CartPole-v1", 3, seed, reverse=reverse, **kwargs),
                3,
                seed=5,
            )
            ours, reference = run_both(pool_env, 3, 5, 200, kwargs)
            ended = self.assert_same_records(ours, reference)
            self.assertGreater(ended, 40)  # 200 steps of <= 12-step episodes in 3 envs.
            truncations = sum(int(step[3].sum()) for step in reference[1:])
            terminations = sum(int(step[2].sum()) for step in reference[1:])
            self.assertGreater(truncations, 0)
            self.assertGreater(terminations, 0)

    def test_reset_with_other_seeds_makes_a_new_pool(self):
        made = []

        def make_pool(seed):
            made.append(FakePool("CartPole-v1", 2, seed))
            return made[-1]

        env = envpool_vector.PoolVectorEnv(make_pool, 2, seed=3)
        env.reset(seed=[3, 4])  # The pool made for seed 3 is used as it is.
        self.assertLen(made, 1)
        observation, _ = env.reset(seed=[7, 8])
        self.assertLen(made, 2)
        self.assertTrue(made[0].closed)
        expected = [gym.make("CartPole-v1").reset(seed=s)[0] for s in (7, 8)]
        self.assertAllEqual(observation, np.stack(expected))
        with self.assertRaisesRegex(ConfigError, r"seed \+ i; got seeds \[1, 5\]"):
            env.reset(seed=[1, 5])
        env.close()
        self.assertTrue(made[1].closed)


class MakeTest(tf.test.TestCase):
    def setUp(self):
        super().setUp()
        self.config = tiny_config(env="CartPole-v1", vector_mode="envpool", num_envs=3)
        self.source = envs_lib.source_from_id("CartPole-v1")
        self.probed = envs_lib.probe(self.source)

    def test_not_installed_names_the_install_command(self):
        with mock.patch.dict(sys.modules, {"envpool": None}):
            with self.assertRaisesRegex(
                ConfigError, r"needs the envpool package: pip install envpool==1\.2\.5"
            ):
                envpool_vector.make(self.config, self.source, self.probed)

    def test_errors_name_the_bad_value(self):
        fake = fake_envpool()
        cases = (
            ("Acrobot-v1", {}, r"'Acrobot-v1' is not an EnvPool env"),
            ("CartPole-v1", {"step_latency_ms": 1.0}, r"--step_latency_ms wraps gymnasium envs"),
        )
        with mock.patch.object(envpool_vector, "import_envpool", lambda: fake):
            for env_id, overrides, message in cases:
                config = dataclasses.replace(self.config, env=env_id, **overrides)
                with self.assertRaisesRegex(ConfigError, message):
                    envpool_vector.make(config, envs_lib.source_from_id(env_id), self.probed)
            factory = envs_lib.source_from_factory(lambda: gym.make("CartPole-v1"))
            with self.assertRaisesRegex(ConfigError, r"makes envs by id; the env <.*> is a Python factory"):
                envpool_vector.make(self.config, factory, self.probed)
            pendulum = envs_lib.probe(envs_lib.source_from_id("Pendulum-v1"))
            with self.assertRaisesRegex(ConfigError, r"EnvPool's CartPole-v1 has the observation space Box"):
                envpool_vector.make(self.config, self.source, pendulum)
            self.assertTrue(fake.pools[-1].closed)

    def test_train_runs_on_the_pool(self):
        """A training run through make_vector_env with the (fake) module: every env step on the pool."""
        fake = fake_envpool()
        logdir = make_tempdir(self)
        with mock.patch.object(envpool_vector, "import_envpool", lambda: fake):
            result = tfppo.train(self.config, logdir=logdir)
        self.assertGreaterEqual(result["global_step"], self.config.total_timesteps)
        self.assertLen(fake.pools, 1)  # Made once (spaces checked), then reset with the run's seeds.
        self.assertTrue(fake.pools[0].closed)


@pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool is not installed (pip install envpool==1.2.5)")
class RealEnvPoolTest(tf.test.TestCase):
    def test_episodes_end_and_restart_in_the_same_step(self):
        """CartPole cut at 15 steps: every episode ends by step 15 with its final observation in
        info, and the returned observation is a fresh episode's (CartPole resets within +-0.05)."""
        config = tiny_config(
            env="CartPole-v1", vector_mode="envpool", num_envs=4, env_kwargs={"max_episode_steps": 15}
        )
        source = envs_lib.source_from_id("CartPole-v1", config.env_kwargs_dict)
        env = envs_lib.make_vector_env(config, source, envs_lib.probe(source))
        observation, _ = env.reset(seed=[0, 1, 2, 3])
        length = np.zeros(4, int)
        ended = 0
        for _ in range(100):
            observation, reward, terminated, truncated, info = env.step(np.ones(4, np.int64))
            length += 1
            self.assertAllEqual(reward, np.ones(4))
            done = terminated | truncated
            for i in np.flatnonzero(done):
                self.assertIsNotNone(info["final_obs"][i])
                self.assertLessEqual(np.abs(observation[i]).max(), 0.05)
                self.assertGreater(np.abs(info["final_obs"][i] - observation[i]).max(), 0.05)
                ended += 1
            self.assertAllLessEqual(length, 15)
            length[done] = 0
        self.assertGreater(ended, 10)
        env.close()

    def test_hopper_trains(self):
        config = tiny_config(env="Hopper-v5", vector_mode="envpool", num_envs=1, total_timesteps=512)
        result = tfppo.train(config, logdir=make_tempdir(self))
        self.assertGreaterEqual(result["global_step"], 512)
        self.assertTrue(np.isfinite(result["eval_return_mean"]))
