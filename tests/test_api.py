"""tfppo as a library: train() on the user's env class and network, callbacks, periodic evaluation,
load(), run directories started from Python, and the errors a Python user can cause."""

import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import threading
from contextlib import redirect_stdout

import gymnasium as gym
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

import tfppo
from tests.helpers import REPO, make_tempdir, run_module, tiny_config
from tfppo import agent as agent_lib
from tfppo import envs as envs_lib
from tfppo import rundir, trainer
from tfppo.config import ConfigError
from tfppo.numpy_policy import NumpyPolicy, ParityError

TINY = tiny_config()


class Corridor(gym.Env):
    """Walk right (action 1) from cell 0 to cell `length` - 1 for a reward of 1; left costs nothing.

    The observation is the position scaled to [0, 1]. A user's own env: not registered.
    """

    metadata = {"render_modes": []}

    def __init__(self, length: int):
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.position = 0

    def _observation(self):
        return np.array([self.position / (self.length - 1)], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = 0
        return self._observation(), {}

    def step(self, action):
        self.position = min(max(self.position + (1 if action == 1 else -1), 0), self.length - 1)
        done = self.position == self.length - 1
        return self._observation(), float(done), done, False, {}


def make_corridor():
    """A module-level factory: the command line can import it to resume a run."""
    return gym.wrappers.TimeLimit(Corridor(length=4), max_episode_steps=20)


def layer_norm_torso(observation_shape):
    """A torso the NumPy mirror cannot follow: Dense -> LayerNormalization -> tanh."""
    return keras.Sequential(
        [keras.layers.Dense(16), keras.layers.LayerNormalization(), keras.layers.Activation("tanh")]
    )


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


class CountingFactory:
    def __init__(self, length=4):
        self.calls, self.length = 0, length

    def __call__(self):
        self.calls += 1
        return gym.wrappers.TimeLimit(Corridor(self.length), max_episode_steps=20)


class TrainFromPythonTest(tf.test.TestCase):
    def test_a_user_env_class_makes_a_complete_run_directory_that_resumes_and_exports(self):
        logdir = os.path.join(make_tempdir(self), "run")
        factory = CountingFactory()
        summary = tfppo.train(TINY, env=factory, logdir=logdir)
        # One probe, one call per vector env copy, one final evaluation env.
        self.assertEqual(factory.calls, 1 + TINY.num_envs + 1)
        for name in ("flags.json", "env.json", "metrics.jsonl", "episodes.csv", "summary.json"):
            self.assertTrue(os.path.isfile(os.path.join(logdir, name)), name)
        self.assertTrue(rundir.has_checkpoint(logdir))
        self.assertEqual(summary["saved_model"], os.path.join(logdir, "saved_model"))
        record = rundir.read_env(logdir)
        self.assertEqual(record["source"], {"factory": "tests.test_api:CountingFactory(...)"})
        self.assertEqual(record["spec"]["action"]["kind"], "discrete")
        self.assertEqual(rundir.read_config(logdir).env, "<tests.test_api:CountingFactory(...)>")

        # Resuming takes the factory again; without it, the error says what to pass.
        with self.assertRaisesRegex(ConfigError, "CountingFactory.*cannot be imported"):
            tfppo.train(dataclasses.replace(TINY, resume=True), logdir=logdir)
        resumed = tfppo.train(
            tfppo.Config(resume=True, total_timesteps=384), env=CountingFactory(), logdir=logdir
        )
        self.assertEqual(resumed["global_step"], 384)
        self.assertEqual(
            [r["update"] for r in read_jsonl(os.path.join(logdir, "metrics.jsonl"))], [1, 2, 3, 4, 5, 6]
        )

        # The command-line export rebuilds the networks from the run directory alone (no env).
        out = os.path.join(make_tempdir(self), "exported")
        exported = run_module("tfppo.export", f"--logdir={logdir}", f"--out={out}")
        self.assertEqual(exported.returncode, 0, exported.stderr[-2000:])
        observation = np.linspace(0, 1, 4, dtype=np.float32)[:, None]
        self.assertAllEqual(tfppo.load(out).act(observation), tfppo.load(logdir).act(observation))

    @pytest.mark.slow  # resuming from Python stays in the default run
    def test_a_module_level_factory_resumes_from_the_command_line(self):
        logdir = os.path.join(make_tempdir(self), "run")
        tfppo.train(dataclasses.replace(TINY, eval_episodes=0), env=make_corridor, logdir=logdir)
        result = run_module("tfppo.train", f"--logdir={logdir}", "--resume", "--total_timesteps=320")
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        self.assertEqual(json.load(open(os.path.join(logdir, "summary.json")))["global_step"], 320)

    def test_a_registered_id_takes_env_kwargs(self):
        logdir = os.path.join(make_tempdir(self), "run")
        config = dataclasses.replace(TINY, env="tfppo/MaskedGrid-v0", env_kwargs={"size": 4}, eval_episodes=0)
        self.assertEqual(config.env_kwargs, '{"size": 4}')
        tfppo.train(config, logdir=logdir)
        self.assertEqual(
            rundir.read_env(logdir)["source"], {"id": "tfppo/MaskedGrid-v0", "kwargs": {"size": 4}}
        )
        # 4 directions x (size - 1) jumps: 12 with size 4 (20 with the default 6).
        self.assertEqual(rundir.read_env(logdir)["spec"]["action"]["num_actions"], 12)

    def test_the_env_is_probed_once_and_every_copy_made_once(self):
        factory = CountingFactory()
        run = trainer.Trainer(
            dataclasses.replace(TINY, num_envs=3),
            make_tempdir(self),
            source=envs_lib.source_of(factory, TINY),
        )
        run.env.close()
        self.assertEqual(factory.calls, 1 + 3)


class CustomNetworkTest(tf.test.TestCase):
    def test_a_layer_norm_torso_is_used_for_acting_training_and_export(self):
        logdir = os.path.join(make_tempdir(self), "run")
        stdout = io.StringIO()
        with redirect_stdout(stdout):
            run = trainer.Trainer(
                dataclasses.replace(TINY, eval_episodes=0),
                logdir,
                source=envs_lib.source_of(make_corridor, TINY),
                torso=layer_norm_torso,
            )
        self.assertIn("acting with the compiled TF policy", stdout.getvalue())
        self.assertIs(run.policy, run.tf_policy)  # The NumPy mirror cannot follow LayerNorm.
        for network in (run.actor, run.critic):
            self.assertIsInstance(network.torso.layers[1], keras.layers.LayerNormalization)
        gamma = run.actor.torso.layers[1].gamma
        self.assertAllEqual(gamma.numpy(), np.ones(16))
        observation = np.linspace(0, 1, 5, dtype=np.float32)[:, None]
        # Acting computes the custom network's distribution: LayerNorm of Dense, then the head.
        features = np.tanh(run.actor.torso.layers[1](run.actor.torso.layers[0](observation)).numpy())
        expected_logits = run.actor.head(tf.constant(features))["logits"].numpy()
        self.assertAllClose(run.policy.step(observation)["logits"], expected_logits, atol=1e-6)
        summary = run.train()
        self.assertNotAllClose(gamma.numpy(), np.ones(16))  # Training reached the LayerNorm's scale.
        exported = tf.saved_model.load(summary["saved_model"])
        self.assertAllClose(
            exported.distribution(observation)["logits"], run.actor.params(observation)["logits"], atol=1e-6
        )
        # A run started by train() records the builder; a restore imports it by name.
        logdir = os.path.join(make_tempdir(self), "recorded")
        config = dataclasses.replace(TINY, total_timesteps=64, eval_episodes=0)
        tfppo.train(config, env=make_corridor, logdir=logdir, torso=layer_norm_torso)
        self.assertEqual(rundir.read_env(logdir)["network"]["torso"], "tests.test_api:layer_norm_torso")
        restored, _ = agent_lib.from_run(logdir)
        self.assertIsInstance(restored.actor.torso.layers[1], keras.layers.LayerNormalization)
        loaded = tfppo.load(logdir)  # Keep the loaded object referenced while calling it.
        self.assertAllClose(
            restored.actor.params(observation)["logits"],
            loaded.model.distribution(observation)["logits"],
            atol=1e-6,
        )

    def test_bad_torsos_are_named_before_anything_is_written(self):
        logdir = os.path.join(make_tempdir(self), "run")
        cases = {
            "returns .*expected \\[B, features\\]": lambda shape: keras.layers.Reshape((1, -1)),
            "raised RuntimeError: no GPU": lambda shape: (_ for _ in ()).throw(RuntimeError("no GPU")),
            "returned str; expected a keras.Model": lambda shape: "dense",
        }
        for message, builder in cases.items():
            with self.assertRaisesRegex(ConfigError, message):
                tfppo.train(TINY, env=make_corridor, logdir=logdir, torso=builder)
            self.assertFalse(os.path.exists(logdir))

    def test_the_numpy_mirror_checks_itself_against_keras_once(self):
        run = trainer.Trainer(TINY, make_tempdir(self))
        run.env.close()
        self.assertIsInstance(run.policy, NumpyPolicy)
        observation = np.zeros((2, 4), np.float32)
        run.actor.torso.layers[0].bias.assign(np.full(16, 0.5))  # the mirror has not synced this
        with self.assertRaisesRegex(ParityError, "no longer follows tfppo.networks"):
            run.policy.step(observation)
        run.policy.sync()
        self.assertIn("action", run.policy.step(observation))
        self.assertTrue(run.policy.checked)


class CallbackAndEvaluationTest(tf.test.TestCase):
    def test_stop_at_return_stops_cleanly_with_a_checkpoint_and_a_saved_model(self):
        logdir = os.path.join(make_tempdir(self), "run")
        seen = []
        config = dataclasses.replace(TINY, total_timesteps=10_000)
        summary = tfppo.train(config, logdir=logdir, callbacks=[seen.append, tfppo.StopAtReturn(0.0)])
        # CartPole returns are >= 1: the first update with a finished episode stops the run.
        records = read_jsonl(os.path.join(logdir, "metrics.jsonl"))
        self.assertEqual(len(seen), len(records))
        self.assertEqual(seen[-1]["update"], records[-1]["update"])
        self.assertLess(summary["global_step"], 10_000)
        self.assertEqual(summary["stopped_by"], "StopAtReturn(0, key='episode_return_mean')")
        self.assertTrue(os.path.isdir(summary["saved_model"]))
        self.assertTrue(summary["checkpoint"].endswith(f"ckpt-{summary['updates']}"))

    def test_one_callback_without_a_list_and_bad_arguments_before_anything_is_written(self):
        root = make_tempdir(self)
        config = dataclasses.replace(TINY, total_timesteps=10_000)
        summary = tfppo.train(config, logdir=os.path.join(root, "one"), callbacks=tfppo.StopAtReturn(0.0))
        self.assertEqual(summary["stopped_by"], "StopAtReturn(0, key='episode_return_mean')")
        logdir = os.path.join(root, "bad")
        cases = {
            "callbacks[1]=5 (int) is not callable; expected a function of the update's record": dict(
                callbacks=[print, 5]
            ),
            "callbacks=7 (int); expected a callable or a list of them": dict(callbacks=7),
        }
        for message, arguments in cases.items():
            with self.assertRaisesRegex(ConfigError, f"^{re.escape(message)}$"):
                tfppo.train(TINY, logdir=logdir, **arguments)
        with self.assertRaisesRegex(
            ConfigError, re.escape("config={'total_timesteps': 256} (dict); expected a tfppo.Config")
        ):
            tfppo.train({"total_timesteps": 256}, logdir=logdir)
        self.assertFalse(os.path.exists(logdir))

    def test_a_callback_that_raises_stops_training_with_a_checkpoint(self):
        logdir = os.path.join(make_tempdir(self), "run")

        def fussy(record):
            if record["update"] == 2:
                raise ValueError("disk quota")

        with self.assertRaisesRegex(
            trainer.CallbackError, "callback .*fussy raised ValueError: disk quota at update 2"
        ) as caught:
            tfppo.train(dataclasses.replace(TINY, checkpoint_every=50), logdir=logdir, callbacks=[fussy])
        self.assertIsInstance(caught.exception.__cause__, ValueError)
        self.assertTrue(os.path.isfile(os.path.join(logdir, "checkpoints", "ckpt-2.index")))
        resumed = tfppo.train(tfppo.Config(resume=True), logdir=logdir)
        self.assertEqual(resumed["global_step"], 256)

    def test_periodic_evaluation_logs_and_keeps_the_best_policy(self):
        logdir = os.path.join(make_tempdir(self), "run")
        config = dataclasses.replace(TINY, eval_every=128, eval_every_episodes=2, eval_episodes=0)
        summary = tfppo.train(config, logdir=logdir)
        records = read_jsonl(os.path.join(logdir, "metrics.jsonl"))
        evaluated = [r["global_step"] for r in records if "eval_return_mean" in r]
        self.assertEqual(evaluated, [128, 256])
        best = max(r["eval_return_mean"] for r in records if "eval_return_mean" in r)
        self.assertEqual(summary["best_eval_return_mean"], best)
        best_model = os.path.join(logdir, "best", "saved_model")
        self.assertEqual(summary["best_saved_model"], best_model)
        meta = tfppo.load(logdir, best=True).metadata
        self.assertEqual(meta["eval_return_mean"], best)
        events = event_accumulator.EventAccumulator(logdir)
        events.Reload()
        self.assertEqual([e.step for e in events.Scalars("charts/eval_return_mean")], [128, 256])
        # The same seeds every time: the evaluation of a policy is reproducible.
        policy = tfppo.load(best_model)
        env = gym.make("CartPole-v1")
        returns = []
        for episode in range(2):
            observation, _ = env.reset(seed=config.seed + 20_000 + episode)
            done, total = False, 0.0
            while not done:
                observation, reward, terminated, truncated, _ = env.step(policy.act(observation))
                total, done = total + reward, terminated or truncated
            returns.append(total)
        self.assertEqual(np.mean(returns), best)


class LoadTest(tf.test.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = make_tempdir_for_class(cls)
        cls.cartpole = os.path.join(cls.root, "cartpole")
        tfppo.train(dataclasses.replace(TINY, eval_episodes=0), logdir=cls.cartpole)
        cls.masked = os.path.join(cls.root, "masked")
        tfppo.train(dataclasses.replace(TINY, env="tfppo/MaskedGrid-v0", eval_episodes=0), logdir=cls.masked)
        cls.box = os.path.join(cls.root, "box")
        tfppo.train(dataclasses.replace(TINY, env="Pendulum-v1", eval_episodes=0), logdir=cls.box)

    def test_act_on_one_observation_or_a_batch(self):
        policy = tfppo.load(self.cartpole)
        model = tf.saved_model.load(os.path.join(self.cartpole, "saved_model"))
        observations = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
        batch = policy.act(observations)
        self.assertAllEqual(batch, model.action(observations)["action"].numpy())
        single = policy.act(observations[0])
        self.assertIsInstance(single, int)
        self.assertEqual(single, batch[0])
        gym.make("CartPole-v1").reset(seed=0)
        env = gym.make("CartPole-v1")
        observation, _ = env.reset(seed=0)
        env.step(policy.act(observation))  # what env.step accepts
        sampled = [policy.act(observations, deterministic=False, seed=5) for _ in range(2)]
        self.assertAllEqual(sampled[0], sampled[1])  # same seed, same samples
        self.assertEqual(policy.value(observations).shape, (6,))
        self.assertIsInstance(policy.value(observations[0]), float)
        with self.assertRaisesRegex(ValueError, r"observation of shape \(3,\); expected \(4,\)"):
            policy.act(np.zeros(3))
        bad = observations.copy()
        bad[2, 1] = np.nan
        with self.assertRaisesRegex(
            ValueError, r"^observation holds nan at index \(2, 1\); expected finite numbers$"
        ):
            policy.act(bad)
        with self.assertRaisesRegex(ValueError, r"^observation holds inf at index \(3,\); expected finite"):
            policy.value(np.array([0, 0, 0, np.inf]))

    def test_masks_and_box_bounds(self):
        masked = tfppo.load(self.masked)
        env = gym.make("tfppo/MaskedGrid-v0")
        observation, info = env.reset(seed=0)
        with self.assertRaisesRegex(ValueError, "trained with action masks"):
            masked.act(observation)
        only = np.zeros_like(info["action_mask"], bool)
        only[int(np.flatnonzero(info["action_mask"])[-1])] = True
        self.assertEqual(masked.act(observation, mask=only), int(np.flatnonzero(only)[0]))
        with self.assertRaisesRegex(ValueError, "mask of shape"):
            masked.act(np.stack([observation] * 2), mask=np.stack([only] * 3))
        box = tfppo.load(self.box)
        observations = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32) * 5
        sampled = box.act(observations, deterministic=False)
        self.assertEqual(sampled.shape, (50, 1))
        self.assertTrue(np.all(np.abs(sampled) <= 2.0))

    def test_bad_paths(self):
        with self.assertRaisesRegex(ConfigError, "neither a tfppo run directory"):
            tfppo.load(self.root)
        with self.assertRaisesRegex(ConfigError, "has no best/saved_model"):
            tfppo.load(self.cartpole, best=True)
        corrupt = os.path.join(make_tempdir(self), "model")
        os.makedirs(corrupt)
        with open(os.path.join(corrupt, "saved_model.pb"), "wb") as f:
            f.write(b"not a protobuf")
        with self.assertRaisesRegex(ConfigError, "not a loadable SavedModel"):
            tfppo.load(corrupt)

    def test_load_needs_tensorflow_alone(self):
        script = (
            "import importlib.abc, sys\n"
            "class Block(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path, target=None):\n"
            "        if name.split('.')[0] in ('tensorflow_probability', 'gymnasium', 'tf_keras'):\n"
            "            raise ImportError(name + ' is blocked in this test')\n"
            "sys.meta_path.insert(0, Block())\n"
            "import numpy as np, tfppo\n"
            "policy = tfppo.load(sys.argv[1])\n"
            "print(policy.act(np.zeros(4, np.float32)), policy.act(np.zeros((3, 4), np.float32)).tolist())\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script, self.cartpole],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=REPO),
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        expected = tfppo.load(self.cartpole)
        single = expected.act(np.zeros(4, np.float32))
        self.assertEqual(result.stdout.split()[0], str(single))


def make_tempdir_for_class(cls) -> str:
    import shutil
    import tempfile

    path = tempfile.mkdtemp(prefix="tfppo_test_")
    cls.addClassCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


class ConfigTypesTest(tf.test.TestCase):
    def test_a_value_of_the_wrong_type_is_one_error_naming_it(self):
        for fields, message in (
            ({"total_timesteps": "5"}, "--total_timesteps='5' must be an integer"),
            ({"num_envs": 2.5}, "--num_envs=2.5 must be an integer"),
            ({"num_envs": True}, "--num_envs=True must be an integer"),
            ({"gamma": None}, "--gamma=None must be a number"),
            ({"norm_obs": 1}, "--norm_obs=1 must be True or False"),
            ({"hidden_sizes": "64,64"}, "--hidden_sizes='64,64' must be a tuple of integers"),
            ({"logdir": None}, "--logdir=None must be a string"),
        ):
            with self.assertRaisesRegex(ConfigError, f"^{re.escape(message)}$"):
                tfppo.Config(**fields)

    def test_numpy_scalars_and_lists_become_what_flags_json_holds(self):
        config = tfppo.Config(num_envs=np.int64(4), actor_lr=np.float32(0.5), hidden_sizes=[32, np.int64(16)])
        self.assertEqual((type(config.num_envs), type(config.actor_lr)), (int, float))
        self.assertEqual((config.num_envs, config.actor_lr, config.hidden_sizes), (4, 0.5, (32, 16)))
        self.assertEqual(tfppo.Config.from_dict(json.loads(json.dumps(config.to_dict()))), config)


class BadEnvTest(tf.test.TestCase):
    def assertRejected(self, message, **kwargs):
        logdir = os.path.join(make_tempdir(self), "run")
        with self.assertRaisesRegex(ConfigError, message):
            tfppo.train(kwargs.pop("config", TINY), logdir=logdir, **kwargs)
        self.assertFalse(os.path.exists(logdir))  # nothing written

    def test_factories_that_raise_return_no_env_or_change_spaces(self):
        def broken():
            raise FileNotFoundError("maps/level1.txt")

        self.assertRejected("env factory .*broken raised FileNotFoundError: maps/level1.txt", env=broken)
        self.assertRejected("returned dict; expected a gymnasium.Env", env=lambda: {"not": "an env"})
        calls = []

        def changing():  # The second vector env copy (third call) has another observation space.
            calls.append(1)
            env = Corridor(4)
            if len(calls) == 3:
                env.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
            return env

        self.assertRejected("returned envs with different spaces", env=changing)
        self.assertRejected("instance; pass a callable", env=Corridor(4))

    def test_an_env_that_raises_stops_with_one_line_naming_it(self):
        class Stalling(Corridor):
            steps = 0

            def step(self, action):
                Stalling.steps += 1
                if Stalling.steps > 100:  # past update 1's checkpoint (2 envs x 32 steps)
                    raise RuntimeError("motor stalled\nsecond line")
                return super().step(action)

        logdir = os.path.join(make_tempdir(self), "run")
        config = dataclasses.replace(TINY, checkpoint_every=1)
        with self.assertRaisesRegex(
            ConfigError,
            r"^the env's step at env step 100 raised RuntimeError: motor stalled "
            r"\(at .*test_api.py:\d+ in step\); training stopped, last good checkpoint kept: .*ckpt-1$",
        ) as caught:
            tfppo.train(config, logdir=logdir, env=lambda: Stalling(4))
        self.assertIsInstance(caught.exception.__cause__, RuntimeError)  # the traceback is kept

        class NoReset(Corridor):
            def reset(self, *, seed=None, options=None):
                raise OSError("map file missing")

        self.assertRejected(
            r"reset raised OSError: map file missing \(at .*test_api.py", env=lambda: NoReset(4)
        )

    def test_env_kwargs_errors(self):
        self.assertRejected(
            "rejected --env_kwargs=.*unexpected keyword",
            config=dataclasses.replace(TINY, env="tfppo/MaskedGrid-v0", env_kwargs={"no_such": 1}),
        )
        with self.assertRaisesRegex(ConfigError, "must be a JSON object"):
            dataclasses.replace(TINY, env_kwargs="[1, 2]")
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_module("tfppo.train", "--env_kwargs={size: 4}", f"--logdir={logdir}")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("--env_kwargs='{size: 4}' must be a JSON object", result.stderr)
        self.assertFalse(os.path.exists(logdir))

    def test_async_needs_a_picklable_factory(self):
        lock = threading.Lock()

        def with_lock():
            with lock:
                return make_corridor()

        self.assertRejected(
            "cannot be pickled", env=with_lock, config=dataclasses.replace(TINY, vector_mode="async")
        )


class PackageTest(tf.test.TestCase):
    def test_importing_tfppo_is_cheap(self):
        script = (
            "import sys, tfppo\n"
            "assert tfppo.Config().env == 'CartPole-v1'\n"
            "tfppo.train, tfppo.load, tfppo.StopAtReturn\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'gymnasium') if m in sys.modules))\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=REPO),
            timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "[]")
