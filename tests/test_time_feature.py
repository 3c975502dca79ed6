"""--time_feature: the episode's elapsed fraction t / T in the observation (gymnasium's
TimeAwareObservation), recorded in env.json so evaluation and export make the same envs."""

import dataclasses
import io
import json
import os
from contextlib import redirect_stdout

import gymnasium as gym
import numpy as np
import tensorflow as tf

import tfppo
from tests.helpers import make_tempdir, run_module, tiny_config
from tfppo import envs as envs_lib
from tfppo import trainer
from tfppo.config import Config, ConfigError, validate

TINY = tiny_config(env="CartPole-v1", time_feature=True)


class WrapperTest(tf.test.TestCase):
    def test_box_gets_t_over_limit_as_its_last_entry(self):
        env = envs_lib.source_of(None, Config(env="CartPole-v1", time_feature=True)).make()
        plain = gym.make("CartPole-v1")
        self.assertEqual(env.observation_space.shape, (5,))
        observation, _ = env.reset(seed=3)
        expected, _ = plain.reset(seed=3)
        self.assertAllEqual(observation[:4], expected)
        self.assertEqual(observation[4], 0.0)
        for t in range(1, 6):
            observation, *_ = env.step(0)
            expected, *_ = plain.step(0)
            self.assertAllEqual(observation[:4], expected)
            self.assertAllClose(observation[4], t / 500)  # CartPole-v1's limit: 500 steps
        observation, _ = env.reset(seed=4)
        self.assertEqual(observation[4], 0.0)

    def test_other_observations_get_a_time_key(self):
        env = envs_lib.source_of(None, Config(env="FrozenLake-v1", time_feature=True)).make()
        self.assertEqual(set(env.observation_space.spaces), {"obs", "time"})
        observation, _ = env.reset(seed=0)
        env.step(0)
        observation, *_ = env.step(0)
        self.assertAllClose(observation["time"], [2 / 100])  # FrozenLake-v1's limit: 100 steps

    def test_off_by_default_and_recorded_when_on(self):
        self.assertNotIn("time_feature", envs_lib.source_of(None, Config(env="CartPole-v1")).record)
        source = envs_lib.source_of(None, Config(env="CartPole-v1", time_feature=True))
        self.assertEqual(source.record, {"id": "CartPole-v1", "kwargs": {}, "time_feature": True})
        again = envs_lib.source_from_record({"source": source.record})
        self.assertEqual(again.make().observation_space.shape, (5,))

    def test_env_without_a_step_limit_is_refused(self):
        source = envs_lib.source_of(None, Config(env="tests.fake_envs:MaskedChain-v0", time_feature=True))
        with self.assertRaisesRegex(ConfigError, "--time_feature cannot wrap the env .*TimeLimit"):
            source.make()

    def test_envpool_is_refused(self):
        with self.assertRaisesRegex(ConfigError, "--time_feature .* --vector_mode=envpool"):
            validate(Config(time_feature=True, vector_mode="envpool"))


class TrainingTest(tf.test.TestCase):
    def test_rollout_sees_the_feature_and_evaluation_remakes_it(self):
        logdir = os.path.join(make_tempdir(self), "run")
        with redirect_stdout(io.StringIO()):
            run = trainer.Trainer(TINY, os.path.join(make_tempdir(self), "trainer"))
            run.train()
            summary = tfppo.train(TINY, logdir=logdir)
        self.assertEqual(run.spec.observation_shape, (5,))
        # [T, N, 5] observations: the last entry counts 1/500 per step and restarts at 0 after an end.
        rollout = run.rollout
        steps = rollout.observation[..., -1] * 500
        ended = rollout.terminated | rollout.truncated
        expected = np.where(ended[:-1], 0.0, steps[:-1] + 1)
        self.assertAllClose(steps[1:], expected, atol=1e-3)
        self.assertTrue(ended.any())  # an episode ended inside the last rollout: the restart is checked
        with open(os.path.join(logdir, "env.json"), encoding="utf-8") as f:
            self.assertTrue(json.load(f)["source"]["time_feature"])
        resumed = tfppo.train(dataclasses.replace(TINY, total_timesteps=384, resume=True), logdir=logdir)
        self.assertEqual(resumed["global_step"], 384)
        policy = tfppo.load(logdir)
        self.assertEqual(np.shape(policy.act(np.zeros(5, np.float32))), ())
        # The CLI evaluation makes its env from the saved record, time feature included.
        for extra in ((), ("--env=CartPole-v1",)):
            result = run_module(
                "tfppo.evaluate", f"--saved_model={summary['saved_model']}", "--episodes=1", *extra
            )
            self.assertEqual(result.returncode, 0, result.stderr[-2000:])
            self.assertIn("CartPole-v1: return", result.stdout)

    def test_cli_without_a_step_limit_is_one_line_and_writes_nothing(self):
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_module(
            "tfppo.train", "--env=tests.fake_envs:MaskedChain-v0", "--time_feature", f"--logdir={logdir}"
        )
        self.assertEqual(result.returncode, 2, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertRegex(lines[0], "--time_feature cannot wrap the env")
        self.assertFalse(os.path.exists(logdir))


if __name__ == "__main__":
    tf.test.main()
