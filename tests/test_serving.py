"""TFLite and ONNX exports act exactly like the SavedModel they are converted from.

For every action kind (Box with each sigma mode, masked Discrete, masked MultiDiscrete, hybrid
with and without a mask) a policy with observation normalisation is exported, converted to
TFLite and ONNX, and run on 300 observations (some outside the normalisation clip, some
non-finite) in a process where TensorFlow cannot be imported: ai-edge-litert and onnxruntime
must give the SavedModel's actions within 1e-5, discrete actions exactly.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from tests.helpers import REPO
from tests.test_export import BOX, HYBRID, MASKED, MULTI
from tfppo import convert, envs, networks, runtimes
from tfppo import export as export_lib
from tfppo.config import Config, ConfigError

HYBRID_MASKED = dataclasses.replace(HYBRID, has_mask=True)
NUM_OBSERVATIONS = 300

# name -> (spec, config overrides)
POLICIES = {
    "box_fixed": (BOX, {"sigma": "fixed"}),
    "box_state_independent": (BOX, {"sigma": "state_independent"}),
    "box_state_dependent": (BOX, {"sigma": "state_dependent", "squash_mean": True}),
    "discrete_masked": (MASKED, {}),
    "multi_discrete_masked": (MULTI, {}),
    "hybrid": (HYBRID, {}),
    "hybrid_masked": (HYBRID_MASKED, {}),
}

# Runs where TensorFlow cannot be imported: the converted models need their runtimes only.
NO_TF_SCRIPT = r"""
import importlib.abc, sys
import numpy as np

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("tensorflow", "tensorflow_probability", "tf_keras", "keras", "tf2onnx"):
            raise ImportError(f"{name} is blocked in this test")

sys.meta_path.insert(0, Block())
from tfppo import runtimes

directory = sys.argv[1]
for name in sys.argv[2:]:
    inputs = np.load(f"{directory}/{name}_in.npz")
    mask = inputs["mask"] if "mask" in inputs else None
    for fmt in ("tflite", "onnx"):
        model = runtimes.open_model(f"{directory}/{name}.{fmt}")
        out = {f"single_{k}": v for k, v in model.action(inputs["observation"][:1], None if mask is None else mask[:1]).items()}
        out.update(model.action(inputs["observation"], mask))
        out["value"] = model.value(inputs["observation"])
        out["env"] = np.array(model.metadata["env"])
        np.savez(f"{directory}/{name}_{fmt}_out.npz", **out)
print("ok", "tensorflow" in sys.modules)
"""


def observations(spec, rng) -> dict[str, np.ndarray]:
    """[N, D] observations, a few of them non-finite, and valid masks (>= 1 action per part)."""
    observation = (rng.normal(size=(NUM_OBSERVATIONS,) + spec.observation_shape) * 4).astype(np.float32)
    observation[0, 0], observation[1, :], observation[2, 0] = np.nan, np.inf, -np.inf
    inputs = {"observation": observation}
    if spec.has_mask:
        action = spec.action
        sizes = action.nvec or (action.mask_width,)
        parts = []
        for size in sizes:
            mask = rng.random((NUM_OBSERVATIONS, size)) < 0.4
            mask[np.arange(NUM_OBSERVATIONS), rng.integers(0, size, NUM_OBSERVATIONS)] = True
            parts.append(mask)
        inputs["mask"] = np.concatenate(parts, axis=1)
    return inputs


def export_policy(directory: str, name: str, spec, overrides) -> str:
    config = Config(env="Test-v0", hidden_sizes=(32, 32), **overrides)
    actor, critic = networks.build(spec, config)
    if spec.action.kind == "box":  # Means beyond the bounds, so the clipping inside matters.
        actor.head.loc.bias.assign([1.5, -2.5])
    dim = spec.observation_shape[0]
    normalization = (
        np.linspace(-1, 1, dim).astype(np.float32),
        np.full(dim, 0.5, np.float32),
        np.float32(5.0),
    )
    meta = {"env": "Test-v0", "flags": config.to_dict(), "has_mask": spec.has_mask}
    meta.update(observation_shape=list(spec.observation_shape), spec=envs.spec_to_dict(spec))
    path = os.path.join(directory, f"{name}_saved_model")
    return export_lib.export(actor, critic, spec, meta, path, normalization)


class ServingParityTest(tf.test.TestCase, parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.directory = tempfile.mkdtemp(prefix="tfppo_test_")
        cls.addClassCleanup(shutil.rmtree, cls.directory, ignore_errors=True)
        cls.expected = {}
        rng = np.random.default_rng(0)
        for name, (spec, overrides) in POLICIES.items():
            saved_model = export_policy(cls.directory, name, spec, overrides)
            inputs = observations(spec, rng)
            np.savez(os.path.join(cls.directory, f"{name}_in.npz"), **inputs)
            model = runtimes.open_model(saved_model)
            expected = model.action(inputs["observation"], inputs.get("mask"))
            expected["value"] = model.value(inputs["observation"])
            cls.expected[name] = (spec, inputs, expected)
            convert.convert(saved_model, os.path.join(cls.directory, f"{name}.tflite"), "tflite")
            convert.convert(saved_model, os.path.join(cls.directory, f"{name}.onnx"), "onnx")
        cls.run_result = subprocess.run(
            [sys.executable, "-c", NO_TF_SCRIPT, cls.directory, *POLICIES],
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"),
        )

    def test_runtimes_ran_without_tensorflow(self):
        self.assertEqual(self.run_result.returncode, 0, self.run_result.stderr[-3000:])
        self.assertEqual(self.run_result.stdout.split()[-2:], ["ok", "False"])
        # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." is held back.
        self.assertNotIn("XNNPACK", self.run_result.stderr)

    def test_a_conversion_that_works_prints_nothing_to_stderr(self):
        # TensorFlow's converters log through C++ absl logging, past TF_CPP_MIN_LOG_LEVEL
        # ("WARNING: All log messages before absl::InitializeLog() ...", "Starting new session").
        saved_model = os.path.join(self.directory, "box_fixed_saved_model")
        for fmt in ("tflite", "onnx"):
            out = os.path.join(self.directory, f"quiet.{fmt}")
            result = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "import sys; from tfppo import convert; convert.convert(*sys.argv[1:])",
                ]
                + [saved_model, out, fmt],
                capture_output=True,
                text=True,
                timeout=300,
                env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"),
            )
            self.assertEqual(result.returncode, 0, result.stderr[-3000:])
            self.assertEqual(result.stderr, "", fmt)
            self.assertTrue(os.path.isfile(out))

    def test_native_log_is_held_and_written_only_when_the_block_fails(self):
        with tempfile.TemporaryFile() as stderr:
            saved = os.dup(2)
            os.dup2(stderr.fileno(), 2)
            try:
                with convert.native_log_held():
                    os.write(2, b"I0000 noise\n")
                with self.assertRaisesRegex(RuntimeError, "converter failed"):
                    with convert.native_log_held():
                        os.write(2, b"E0000 why it failed\n")
                        raise RuntimeError("converter failed")
                os.write(2, b"after\n")
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            stderr.seek(0)
            self.assertEqual(stderr.read(), b"E0000 why it failed\nafter\n")

    @parameterized.named_parameters(
        (f"{name}_{fmt}", name, fmt) for name in POLICIES for fmt in ("tflite", "onnx")
    )
    def test_converted_model_acts_like_the_saved_model(self, name, fmt):
        self.assertEqual(self.run_result.returncode, 0, self.run_result.stderr[-3000:])
        spec, inputs, expected = self.expected[name]
        out = np.load(os.path.join(self.directory, f"{name}_{fmt}_out.npz"))
        self.assertEqual(str(out["env"]), "Test-v0")
        self.assertCountEqual([k for k in out if not k.startswith("single_")], [*expected, "env"])
        for key, value in expected.items():
            if value.dtype.kind == "i":  # Discrete choices: exactly equal, and never masked.
                self.assertAllEqual(out[key], value)
                self.assertAllEqual(out[f"single_{key}"], value[:1])
            else:
                finite = np.isfinite(value)
                self.assertAllClose(out[key][finite], value[finite], atol=1e-5, rtol=1e-5)
                self.assertAllEqual(np.isfinite(out[key]), finite)
                if key != "value":
                    self.assertAllClose(out[f"single_{key}"], value[:1], atol=1e-5, rtol=1e-5)
        if spec.has_mask:
            self.assert_valid(spec, inputs["mask"], out)
        if spec.action.kind == "box":  # clipped inside every format
            action = out["action"][np.isfinite(out["action"]).all(axis=1)]
            self.assertTrue(np.all((action >= spec.action.low) & (action <= spec.action.high)))
            if not POLICIES[name][1].get("squash_mean"):  # The bounds were hit, so clipping mattered.
                self.assertTrue(np.any(action == spec.action.low) and np.any(action == spec.action.high))

    def assert_valid(self, spec, mask, out):
        choices = out["action_type"][:, None] if "action_type" in out else out["action"]
        choices = choices if choices.ndim == 2 else choices[:, None]
        starts = np.cumsum((0,) + tuple(spec.action.nvec or (spec.action.mask_width,)))[:-1]
        for column, start in enumerate(starts):
            self.assertTrue(np.all(mask[np.arange(len(mask)), start + choices[:, column]]))

    def test_masked_batch_sizes_must_agree_in_every_runtime(self):
        # A [2, W] mask with one observation fails the call (the runtime's own error), never broadcasts.
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        _, inputs, _ = self.expected["discrete_masked"]
        errors = {
            "_saved_model": tf.errors.InvalidArgumentError,
            ".tflite": RuntimeError,
            ".onnx": (ort_errors.Fail, ort_errors.RuntimeException, ort_errors.InvalidArgument),
        }
        for suffix, error in errors.items():
            model = runtimes.open_model(os.path.join(self.directory, "discrete_masked" + suffix))
            with self.assertRaises(error, msg=suffix):
                model.action(inputs["observation"][:1], inputs["mask"][:2])
            with self.assertRaises(error, msg=suffix):
                model.action(inputs["observation"][:2], inputs["mask"][:1])

    def test_an_all_invalid_mask_row_is_never_answered_with_a_masked_action(self):
        _, inputs, _ = self.expected["discrete_masked"]
        mask = inputs["mask"][:3].copy()
        mask[1] = False
        saved_model = runtimes.open_model(os.path.join(self.directory, "discrete_masked_saved_model"))
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, "no valid action"):
            saved_model.action(inputs["observation"][:3], mask)
        for fmt in ("tflite", "onnx"):  # Their converters drop assertions: -1 marks the row.
            model = runtimes.open_model(os.path.join(self.directory, f"discrete_masked.{fmt}"))
            self.assertEqual(model.action(inputs["observation"][:3], mask)["action"][1], -1, fmt)

    def test_quantised_tflite_is_close(self):
        name = "box_state_dependent"
        saved_model = os.path.join(self.directory, f"{name}_saved_model")
        _, inputs, expected = self.expected[name]
        for quantize in ("float16", "dynamic_range"):
            path = convert.convert(
                saved_model, os.path.join(self.directory, f"{quantize}.tflite"), "tflite", quantize
            )
            model = runtimes.open_model(path)
            self.assertEqual(model.metadata["quantize"], quantize)
            action = model.action(inputs["observation"][3:])["action"]
            self.assertAllClose(action, expected["action"][3:], atol=0.05)
            self.assertLess(
                os.path.getsize(path), os.path.getsize(os.path.join(self.directory, f"{name}.tflite"))
            )

    def test_conversion_failure_is_one_line_naming_the_op(self):
        class Module(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.bool, name="observation")])
            def action(self, observation):  # TFLite has no SplitV for bool tensors.
                return {"action": tf.split(observation, [1, 3], axis=-1)[0]}

            @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.bool, name="observation")])
            def value(self, observation):
                return {"value": tf.cast(observation, tf.float32)[:, 0]}

        module = Module()
        path = os.path.join(self.directory, "unsupported")
        tf.saved_model.save(module, path, signatures={"action": module.action, "value": module.value})
        os.makedirs(os.path.join(path, "assets"), exist_ok=True)
        with open(os.path.join(path, "assets", "metadata.json"), "w") as f:
            f.write("{}")
        out = os.path.join(self.directory, "unsupported.tflite")
        with self.assertRaisesRegex(convert.ConversionError, r"unsupported op\(s\) tf\.SplitV$") as raised:
            convert.convert(path, out, "tflite")
        self.assertNotIn("\n", str(raised.exception))
        self.assertFalse(os.path.exists(out))

    def test_existing_out_is_never_overwritten(self):
        saved_model = os.path.join(self.directory, "box_fixed_saved_model")
        for fmt in ("tflite", "onnx"):
            path = os.path.join(self.directory, f"box_fixed.{fmt}")
            before = open(path, "rb").read()
            with self.assertRaisesRegex(ConfigError, "already exists"):
                convert.convert(saved_model, path, fmt)
            self.assertEqual(open(path, "rb").read(), before)
        serving = os.path.join(self.directory, "serving")
        self.assertEqual(convert.convert(saved_model, serving, "tf_serving"), os.path.join(serving, "1"))
        with self.assertRaisesRegex(ConfigError, "already exists"):
            convert.convert(saved_model, serving, "tf_serving")
        self.assertEqual(
            convert.convert(saved_model, serving, "tf_serving", version=2), os.path.join(serving, "2")
        )
        self.assertEqual(runtimes.detect(serving), ("saved_model", os.path.join(serving, "2")))
        with self.assertRaisesRegex(ConfigError, "--format='pb'; expected one of"):
            convert.convert(saved_model, os.path.join(self.directory, "x.pb"), "pb")


if __name__ == "__main__":
    tf.test.main()
