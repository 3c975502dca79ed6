"""SavedModel export: loads with TensorFlow alone and acts exactly like the live policy."""

import contextlib
import io
import json
import os
import shutil

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tests.helpers import blocking_prelude, make_tempdir, run_module, run_script
from tfppo import convert, distributions, envs, networks
from tfppo import export as export_lib
from tfppo.config import Config, ConfigError
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
TF_ONLY_SCRIPT = (
    blocking_prelude("tfppo", "tensorflow_probability", "gymnasium", "tf_keras")
    + r"""
import json
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
)


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
        files = (os.path.join(directory, name) for name in ("in.npz", "out.npz"))
        result = run_script(TF_ONLY_SCRIPT, path, *files, cwd=directory)
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

    @parameterized.named_parameters(("discrete_masked", MASKED), ("hybrid", HYBRID), ("box", BOX))
    def test_session_style_loader_acts_like_tf_saved_model_load(self, spec):
        # TF Serving's C++ loader reads the graph and variables the TF1 way: every signature must run.
        path, *_ = self.export(spec)
        inputs = inputs_for(spec, np.random.default_rng(2))
        model = tf.saved_model.load(path)
        expected = {key: value.numpy() for key, value in model.action(**inputs).items()}
        self.assertIn("serving_default", model.signatures)
        with tf.Graph().as_default(), tf.compat.v1.Session() as session:
            graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
            for name in ("serving_default", "action", "value"):
                signature = graph.signature_def[name]
                feeds = {signature.inputs[key].name: inputs[key] for key in signature.inputs}
                out = session.run({key: value.name for key, value in signature.outputs.items()}, feeds)
                if name != "value":
                    self.assertCountEqual(out, expected)
                    for key, value in expected.items():
                        self.assertAllEqual(out[key], value)
            self.assertEqual(graph.signature_def["serving_default"].inputs.keys(), inputs.keys())

    def test_tf_serving_requests_match_the_serving_default_signature(self):
        # What a TF Serving client sends: a gRPC PredictRequest and the REST body of docs/serving.md,
        # fed to serving_default as the server would (the server itself does not install here).
        from tensorflow_serving.apis import predict_pb2

        path, *_ = self.export(MASKED)
        inputs = inputs_for(MASKED, np.random.default_rng(4))
        model = tf.saved_model.load(path)  # Referenced while called.
        expected = model.action(**inputs)["action"].numpy()
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = "policy", "serving_default"
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        rows = [{key: value[i].tolist() for key, value in inputs.items()} for i in range(len(expected))]
        body = json.loads(json.dumps({"signature_name": "serving_default", "instances": rows}))
        with tf.Graph().as_default(), tf.compat.v1.Session() as session:
            graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], path)
            signature = graph.signature_def[request.model_spec.signature_name]
            self.assertEqual(set(request.inputs), set(signature.inputs))
            for key, tensor in request.inputs.items():
                self.assertEqual(tensor.dtype, signature.inputs[key].dtype)
            output = signature.outputs["action"].name
            fed = {signature.inputs[k].name: tf.make_ndarray(v) for k, v in request.inputs.items()}
            self.assertAllEqual(session.run(output, fed), expected)
            rest = {
                signature.inputs[k].name: np.array([row[k] for row in body["instances"]]).astype(
                    inputs[k].dtype
                )
                for k in signature.inputs
            }
            self.assertAllEqual(session.run(output, rest), expected)

    @parameterized.named_parameters(("discrete", MASKED), ("multi_discrete", MULTI))
    def test_non_finite_observations_never_give_a_masked_action(self, spec):
        path, *_ = self.export(spec)
        model = tf.saved_model.load(path)
        observation = np.array([[np.nan] * 4, [np.inf, -np.inf, 0, 1], [np.nan, np.inf, 0, 0]], np.float32)
        mask = np.zeros((3, spec.action.mask_width), bool)
        if spec.action.kind == "discrete":
            allowed, expected = [3], np.full(3, 3)  # Only action 3 is valid.
        else:  # nvec (3, 5, 2): one valid choice per dimension, side by side in the mask.
            allowed, expected = [2, 3 + 3, 3 + 5 + 1], np.tile([2, 3, 1], (3, 1))
        mask[:, allowed] = True
        self.assertAllEqual(model.action(observation, mask)["action"], expected)
        for seed in range(5):
            sampled = model.sample(observation, mask, tf.constant(seed, tf.int64))["action"]
            self.assertAllEqual(sampled, expected)

    def test_non_finite_observation_gives_nan_box_action_and_valid_hybrid_type(self):
        box_path, *_ = self.export(BOX)
        hybrid_path, *_ = self.export(HYBRID)
        box, hybrid = tf.saved_model.load(box_path), tf.saved_model.load(hybrid_path)
        self.assertTrue(np.all(np.isnan(box.action(np.full((2, 3), np.nan, np.float32))["action"])))
        out = hybrid.action(np.full((2, 5), np.nan, np.float32))
        self.assertAllEqual(out["action_type"], [0, 0])
        sampled = hybrid.sample(np.full((2, 5), np.nan, np.float32), tf.constant(1, tf.int64))
        self.assertTrue(np.all((sampled["action_type"].numpy() >= 0) & (sampled["action_type"].numpy() < 3)))

    def test_mask_and_observation_batches_must_agree(self):
        path, *_ = self.export(MASKED)
        model = tf.saved_model.load(path)
        inputs = inputs_for(MASKED, np.random.default_rng(3))
        seed = tf.constant(1, tf.int64)
        calls = {
            "action": lambda o, m: model.action(o, m),
            "sample": lambda o, m: model.sample(o, m, seed),
            "distribution": lambda o, m: model.distribution(o, m),
        }
        for name, call in calls.items():
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "batch sizes differ", msg=name):
                call(inputs["observation"][:1], inputs["mask"][:2])
            with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "batch sizes differ", msg=name):
                call(inputs["observation"][:2], inputs["mask"][:1])

    def test_export_never_overwrites(self):
        path, actor, critic, _ = self.export(BOX)
        with self.assertRaises(FileExistsError):
            export_lib.export(actor, critic, BOX, {}, path)


if __name__ == "__main__":
    tf.test.main()


def export_cli(*args: str) -> tuple[int, str]:
    """`python -m tfppo.export ARGS` in this process: (exit code, stderr)."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = export_lib.main(["tfppo.export", *args])
    return code, stderr.getvalue()


class WriteAtomicallyTest(tf.test.TestCase):
    """convert.write_atomically, behind --returns_out and the TFLite/ONNX --out: one error line."""

    def test_a_refused_write_is_one_line_and_leaves_no_partial_file(self):
        path = "/proc/self/tfppo_returns.json"  # /proc refuses new files, even to root
        with self.assertRaises(ConfigError) as raised:
            convert.write_atomically(path, b"{}", "--returns_out")
        message = str(raised.exception)
        self.assertTrue(message.startswith(f"--returns_out={path!r}: cannot write it ("), message)
        self.assertNotIn("\n", message)
        self.assertFalse(os.path.exists(path + ".partial"))

    def test_a_new_file_is_written_whole(self):
        path = os.path.join(make_tempdir(self), "sub", "returns.json")
        self.assertEqual(convert.write_atomically(path, b"[1, 2]"), path)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"[1, 2]")
        self.assertFalse(os.path.exists(path + ".partial"))
        with self.assertRaises(ConfigError):  # and never over an existing one
            convert.write_atomically(path, b"[]")


class EvaluateCliTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters(
        ("CartPole-v1", ["--total_timesteps=512"]),
        (
            "Pendulum-v1",
            ["--total_timesteps=256", "--num_envs=2", "--num_steps=64", "--sigma=state_dependent"],
        ),
    )
    def test_evaluate_reproduces_the_training_evaluation(self, env_id, args):
        self.check_evaluate_reproduces_the_training_evaluation(env_id, args)

    @pytest.mark.slow
    def test_evaluate_reproduces_a_recurrent_training_evaluation_in_every_format(self):
        # The state carried step to step and reset at each episode, in SavedModel, TF Serving,
        # TFLite and ONNX.
        args = ["--total_timesteps=512", "--recurrent=gru", "--rnn_units=8", "--norm_obs"]
        self.check_evaluate_reproduces_the_training_evaluation("tfppo/CartPoleNoVel-v0", args)

    def check_evaluate_reproduces_the_training_evaluation(self, env_id, args):
        logdir = os.path.join(make_tempdir(self), "run")
        train = run_module("tfppo.train", f"--env={env_id}", f"--logdir={logdir}", "--eval_episodes=2", *args)
        self.assertEqual(train.returncode, 0, train.stderr[-2000:])
        summary = json.load(open(os.path.join(logdir, "summary.json")))
        evaluate = run_module("tfppo.evaluate", f"--saved_model={summary['saved_model']}", "--episodes=2")
        self.assertEqual(evaluate.returncode, 0, evaluate.stderr[-2000:])
        printed = float(evaluate.stdout.split("return ")[1].split()[0])
        self.assertAlmostEqual(printed, summary["eval_return_mean"], places=2)
        if env_id == "CartPole-v1":
            # the run directory, named as tfppo.train names it
            again = run_module("tfppo.evaluate", f"--logdir={logdir}", "--episodes=2")
            self.assertEqual((again.returncode, again.stdout), (0, evaluate.stdout), again.stderr[-2000:])
            # --returns_out: every episode's return as JSON, and never over an existing file.
            out = os.path.join(logdir, "returns.json")
            written = run_module(
                "tfppo.evaluate", f"--logdir={logdir}", "--episodes=2", f"--returns_out={out}"
            )
            self.assertEqual(
                (written.returncode, written.stdout), (0, evaluate.stdout), written.stderr[-2000:]
            )
            record = json.load(open(out))
            self.assertEqual(
                (record["env"], record["episodes"], record["first_seed"], len(record["returns"])),
                ("CartPole-v1", 2, summary["seed"] + 10_000, 2),
            )
            self.assertAlmostEqual(record["mean"], summary["eval_return_mean"], places=4)
            self.assertAlmostEqual(record["mean"], float(np.mean(record["returns"])), places=6)
            before = open(out).read()
            refused = run_module(
                "tfppo.evaluate", f"--logdir={logdir}", "--episodes=2", f"--returns_out={out}"
            )
            self.assertEqual(refused.returncode, 2)
            self.assertEqual(
                refused.stderr.strip().splitlines(),
                [f"error: --returns_out={out!r} already exists; choose a new path"],
            )
            self.assertEqual(open(out).read(), before)
            # videos through gymnasium's RecordVideo
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
        state = (
            {"recurrent_state": np.ones((5, meta["state_size"]), np.float32)} if meta["state_size"] else {}
        )
        self.assertAllClose(
            checkpoint_model.action(observation, **state)["action"],
            training_model.action(observation, **state)["action"],
        )
        again = run_module("tfppo.export", f"--logdir={logdir}", f"--out={out}")
        self.assertEqual(again.returncode, 2)
        self.assertIn("already holds files", again.stderr)
        if env_id != "Pendulum-v1":  # TF Serving, TFLite and ONNX play the same episodes
            self.check_every_format_plays_the_same_returns(logdir, summary)
        if env_id == "CartPole-v1":
            self.check_export_errors(logdir)

    def check_every_format_plays_the_same_returns(self, logdir, summary):
        directory = make_tempdir(self)
        models = [os.path.join(directory, "serving")]
        self.assertEqual(
            export_cli(f"--logdir={logdir}", "--format=tf_serving", f"--out={models[0]}"), (0, "")
        )
        self.assertTrue(os.path.isfile(os.path.join(models[0], "1", "saved_model.pb")))
        for fmt in ("tflite", "onnx"):
            models.append(os.path.join(directory, f"policy.{fmt}"))
            self.assertEqual(
                export_cli(
                    f"--saved_model={summary['saved_model']}", f"--format={fmt}", f"--out={models[-1]}"
                ),
                (0, ""),
            )
        for model in models:
            evaluate = run_module("tfppo.evaluate", f"--model={model}", "--episodes=2")
            self.assertEqual(evaluate.returncode, 0, evaluate.stderr[-2000:])
            printed = float(evaluate.stdout.split("return ")[1].split()[0])
            self.assertAlmostEqual(printed, summary["eval_return_mean"], places=2)

    def check_export_errors(self, logdir):
        out = os.path.join(make_tempdir(self), "new")
        bad = {
            "--format=pb": "--format='pb'; expected one of saved_model, tf_serving, tflite, onnx",
            "--quantize=float16": "--quantize='float16'; expected none, or float16 / dynamic_range with --format=tflite",
            "--checkpoint=nope/ckpt-7": "no such checkpoint",
        }
        for flag, message in bad.items():
            code, stderr = export_cli(f"--logdir={logdir}", flag, f"--out={out}")
            self.assertEqual(code, 2, flag)
            self.assertEqual(len(stderr.splitlines()), 1, stderr)
            self.assertIn(message, stderr)
        code, stderr = export_cli(f"--out={out}")
        self.assertEqual(
            (code, stderr.strip()),
            (2, "error: pass either --logdir (a run to export) or --saved_model (a SavedModel to convert)"),
        )
        broken = os.path.join(make_tempdir(self), "run")
        shutil.copytree(logdir, broken)
        checkpoints = os.path.join(broken, "checkpoints")
        for name in os.listdir(checkpoints):  # Every checkpoint truncated: none restores.
            if ".data-" in name:
                with open(os.path.join(checkpoints, name), "r+b") as f:
                    f.truncate(10)
        code, stderr = export_cli(f"--logdir={broken}", f"--out={out}")
        self.assertEqual((code, len(stderr.splitlines())), (2, 1), stderr)
        self.assertIn("cannot be restored", stderr)
        shutil.rmtree(checkpoints)
        code, stderr = export_cli(f"--logdir={broken}", f"--out={out}")
        self.assertEqual((code, len(stderr.splitlines())), (2, 1), stderr)
        self.assertIn("checkpoint", stderr)
        self.assertFalse(os.path.exists(out))

    def test_evaluate_refuses_a_corrupt_model_and_an_env_with_other_spaces(self):
        # A Discrete(3) policy on 3-dim observations, played in Pendulum-v1 (3-dim, Box actions).
        spec = EnvSpec((3,), ActionSpec("discrete", num_actions=3), False)
        config, actor, critic, _ = build(spec)
        config = Config(env="Pendulum-v1", hidden_sizes=(16,))
        meta = export_lib.metadata(
            config, spec, {"source": {"id": "Pendulum-v1"}, "action_space": "Discrete(3)"}, {}
        )
        path = export_lib.export(actor, critic, spec, meta, os.path.join(make_tempdir(self), "model"))
        result = run_module("tfppo.evaluate", f"--model={path}", "--episodes=1")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr.strip().splitlines(),
            ["error: --env=Pendulum-v1 takes box(1) actions; the model was trained on discrete(3) actions"],
        )
        with open(os.path.join(path, "saved_model.pb"), "r+b") as f:
            f.truncate(100)
        result = run_module("tfppo.evaluate", f"--saved_model={path}", "--episodes=1")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn("is not a loadable tfppo SavedModel", result.stderr)

    def test_bad_saved_model_path(self):
        result = run_module("tfppo.evaluate", "--saved_model=/nonexistent/model", "--episodes=1")
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr.strip().splitlines(), ["error: --model='/nonexistent/model' does not exist"]
        )
        result = run_module("tfppo.evaluate", "--episodes=1")  # no model at all
        self.assertEqual(result.returncode, 2)
        self.assertEqual(
            result.stderr.strip().splitlines(),
            [
                "error: --model is required: a run directory, a SavedModel directory, a .tflite or a .onnx file"
            ],
        )
