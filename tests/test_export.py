"""SavedModel export: loads with TensorFlow alone and acts exactly like the live policy."""

import json
import os
import shutil
import subprocess
import sys

import gymnasium as gym
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tests.helpers import make_tempdir, run_module
from tfppo import distributions, envs, networks
from tfppo import export as export_lib
from tfppo.config import Config
from tfppo.envs import ActionSpec, EnvSpec
from tfppo.policy import Policy

BOX = EnvSpec(
    (3,),
    ActionSpec("box", shape=(2,), low=np.array([-1, -2], np.float32), high=np.array([1, 2], np.float32)),
    False,
)
MASKED = EnvSpec((4,), ActionSpec("discrete", num_actions=5), True)
MULTI = EnvSpec((4,), envs.action_spec(gym.spaces.MultiDiscrete((3, 5, 2))), True)
HYBRID = EnvSpec(
    (5,),
    envs.action_spec(
        gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,), np.float32))),
        np.array([[True, False], [False, True], [False, False]]),
    ),
    False,
)

# Runs in a fresh interpreter where tfppo, tfp and gymnasium cannot be imported.
TF_ONLY_SCRIPT = r"""
import importlib.abc, json, sys
import numpy as np

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tfppo", "tensorflow_probability", "gymnasium", "tf_keras"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".")]
import tensorflow as tf

model = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
out = {}
for size in (1, 7):
    args = [inputs["observation"][:size]]
    if "mask" in inputs:
        args.append(inputs["mask"][:size])
    for key, value in model.action(*args).items():
        out[f"{key}_{size}"] = value.numpy()
    out[f"value_{size}"] = model.value(args[0])["value"].numpy()
named = {"observation": tf.constant(inputs["observation"])}
if "mask" in inputs:
    named["mask"] = tf.constant(inputs["mask"])
for key, value in model.signatures["action"](**named).items():
    out[f"signature_{key}"] = value.numpy()
np.savez(sys.argv[3], **out)
print(json.loads(model.metadata()["json"].numpy())["env"])
"""


def build(spec, **overrides):
    config = Config(env="Test-v0", hidden_sizes=(16,), **overrides)
    actor, critic = networks.build(spec, config)
    return config, actor, critic, Policy(actor, critic, spec, seed=3)


def inputs_for(spec, rng):
    observation = rng.normal(size=(7,) + spec.observation_shape).astype(np.float32) * 3
    inputs = {"observation": observation}
    if spec.has_mask:
        width = spec.action.mask_width
        mask = rng.random((7, width)) < 0.5
        starts = np.cumsum((0,) + spec.action.nvec)[:-1] if spec.action.nvec else [0]
        sizes = spec.action.nvec or (width,)
        for start, size in zip(starts, sizes, strict=True):
            mask[np.arange(7), start + rng.integers(0, size, 7)] = True
        inputs["mask"] = mask
    return inputs


class ExportTest(tf.test.TestCase, parameterized.TestCase):
    def export(self, spec, **overrides):
        config, actor, critic, policy = build(spec, **overrides)
        path = os.path.join(make_tempdir(self), "saved_model")
        meta = {"env": "Test-v0", "flags": config.to_dict(), "has_mask": spec.has_mask}
        export_lib.export(actor, critic, spec, meta, path)
        return path, actor, critic, policy

    @parameterized.named_parameters(
        ("box", BOX, {"sigma": "state_dependent"}),
        ("discrete_masked", MASKED, {}),
        ("multi_discrete_masked", MULTI, {}),
        ("hybrid", HYBRID, {}),
    )
    def test_tf_only_process_acts_like_the_live_policy(self, spec, overrides):
        path, actor, critic, policy = self.export(spec, **overrides)
        if spec.action.kind == "box":  # push some means outside the bounds so clipping matters
            actor.head.loc.bias.assign([3.0, -3.0])
            shutil.rmtree(path)
            export_lib.export(actor, critic, spec, {"env": "Test-v0"}, path)
        rng = np.random.default_rng(0)
        inputs = inputs_for(spec, rng)
        directory = make_tempdir(self)
        np.savez(os.path.join(directory, "in.npz"), **inputs)
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                TF_ONLY_SCRIPT,
                path,
                os.path.join(directory, "in.npz"),
                os.path.join(directory, "out.npz"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=directory,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        )
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        self.assertEqual(result.stdout.strip().splitlines()[-1], "Test-v0")
        out = np.load(os.path.join(directory, "out.npz"))
        mask = inputs.get("mask")
        live = distributions.mode(spec.action, actor(inputs["observation"], action_mask=mask)).numpy()
        expected = export_lib.named_action(spec.action, tf.constant(live), clip=True)
        expected = {key: value.numpy() for key, value in expected.items()}
        if spec.action.kind == "box":
            self.assertTrue(np.any(np.abs(live) > spec.action.high))  # clipping mattered
            self.assertAllClose(policy.mode(inputs["observation"]), live, atol=1e-5)
        if spec.action.kind == "discrete":
            self.assertTrue(np.all(np.take_along_axis(mask, expected["action"][:, None], 1)))
        for size in (1, 7):
            for key, value in expected.items():
                self.assertAllClose(out[f"{key}_{size}"], value[:size], atol=1e-5)
            self.assertAllClose(out[f"value_{size}"], critic(inputs["observation"][:size]), atol=1e-5)
        for key, value in expected.items():
            self.assertAllClose(out[f"signature_{key}"], value, atol=1e-5)

    def test_masked_model_requires_the_mask(self):
        path, *_ = self.export(MASKED)
        model = tf.saved_model.load(path)
        with self.assertRaises(TypeError):
            model.action(np.zeros((2, 4), np.float32))

    def test_wrong_shape_names_the_expected_shape(self):
        path, *_ = self.export(BOX)
        model = tf.saved_model.load(path)
        with self.assertRaisesRegex((TypeError, ValueError), r"shape=\(None, 3\)"):
            model.action(np.zeros((2, 5), np.float32))

    def test_sample_distribution_and_metadata(self):
        path, actor, _, _ = self.export(MASKED)
        model = tf.saved_model.load(path)
        inputs = inputs_for(MASKED, np.random.default_rng(1))
        first = model.sample(inputs["observation"], inputs["mask"], tf.constant(5, tf.int64))
        again = model.sample(inputs["observation"], inputs["mask"], tf.constant(5, tf.int64))
        self.assertAllEqual(first["action"], again["action"])
        self.assertTrue(np.all(np.take_along_axis(inputs["mask"], first["action"].numpy()[:, None], 1)))
        logits = model.distribution(inputs["observation"], inputs["mask"])["logits"].numpy()
        live = actor(inputs["observation"], action_mask=inputs["mask"])
        self.assertAllClose(tf.nn.log_softmax(logits), tf.nn.log_softmax(live.logits))
        self.assertAllClose(first["log_prob"], live.log_prob(first["action"]))
        self.assertEqual(json.loads(model.metadata()["json"].numpy())["env"], "Test-v0")
        self.assertEqual(export_lib.load_metadata(path)["env"], "Test-v0")

    def test_export_never_overwrites(self):
        path, actor, critic, _ = self.export(BOX)
        with self.assertRaises(FileExistsError):
            export_lib.export(actor, critic, BOX, {}, path)


if __name__ == "__main__":
    tf.test.main()


class EvaluateCliTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        ("CartPole-v1", ["--total_timesteps=512"]),
        (
            "Pendulum-v1",
            ["--total_timesteps=256", "--num_envs=2", "--num_steps=64", "--sigma=state_dependent"],
        ),
    )
    def test_evaluate_reproduces_the_training_evaluation(self, env_id, args):
        logdir = os.path.join(make_tempdir(self), "run")
        train = run_module("tfppo.train", f"--env={env_id}", f"--logdir={logdir}", "--eval_episodes=2", *args)
        self.assertEqual(train.returncode, 0, train.stderr[-2000:])
        summary = json.load(open(os.path.join(logdir, "summary.json")))
        evaluate = run_module("tfppo.evaluate", f"--saved_model={summary['saved_model']}", "--episodes=2")
        self.assertEqual(evaluate.returncode, 0, evaluate.stderr[-2000:])
        printed = float(evaluate.stdout.split("return ")[1].split()[0])
        self.assertAlmostEqual(printed, summary["eval_return_mean"], places=2)
        if env_id == "CartPole-v1":  # videos through gymnasium's RecordVideo
            videos = os.path.join(make_tempdir(self), "videos")
            recorded = run_module(
                "tfppo.evaluate",
                f"--saved_model={summary['saved_model']}",
                "--episodes=1",
                f"--video_dir={videos}",
            )
            self.assertEqual(recorded.returncode, 0, recorded.stderr[-2000:])
            self.assertEqual(
                [f for f in os.listdir(videos) if f.endswith(".mp4")], ["rl-video-episode-0.mp4"]
            )
        meta = export_lib.load_metadata(summary["saved_model"])
        self.assertEqual((meta["env"], meta["global_step"]), (env_id, summary["global_step"]))
        self.assertAlmostEqual(meta["eval_return_mean"], summary["eval_return_mean"])

        out = os.path.join(make_tempdir(self), "exported")
        exported = run_module("tfppo.export", f"--logdir={logdir}", f"--out={out}")
        self.assertEqual(exported.returncode, 0, exported.stderr[-2000:])
        observation = (
            np.random.default_rng(0).normal(size=(5,) + tuple(meta["observation_shape"])).astype(np.float32)
        )
        # Keep each loaded object referenced while calling it.
        checkpoint_model, training_model = (
            tf.saved_model.load(out),
            tf.saved_model.load(summary["saved_model"]),
        )
        self.assertAllClose(
            checkpoint_model.action(observation)["action"], training_model.action(observation)["action"]
        )
        again = run_module("tfppo.export", f"--logdir={logdir}", f"--out={out}")
        self.assertEqual(again.returncode, 2)
        self.assertIn("already holds files", again.stderr)

    def test_bad_saved_model_path(self):
        result = run_module("tfppo.evaluate", "--saved_model=/nonexistent/model", "--episodes=1")
        self.assertEqual(result.returncode, 2)
        self.assertIn("is not a SavedModel directory", result.stderr.strip().splitlines()[-1])
