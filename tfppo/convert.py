"""A tfppo SavedModel in other serving formats: the TF Serving layout, TFLite (LiteRT) and ONNX.

Every format is converted from the SavedModel (tfppo.export) and carries its deterministic
policy only: the `action` signature (normalisation, masks, clipping, hybrid outputs inside; no
tfp ops) and `value`. Sampling stays in the SavedModel.

  tf_serving  OUT/VERSION/: the SavedModel itself in the numbered layout TF Serving polls;
              `serving_default` is `action`.
  tflite      one .tflite file with the signatures `action` and `value` (inputs `observation`
              [B, *shape] float32 and `mask` [B, W] bool for a masked policy), optionally
              quantised (float16 weights, or dynamic-range int8 weights).
  onnx        one .onnx file (tf2onnx, opset 17): inputs `observation` (and `mask`), outputs the
              action's names and `value`.

The model's metadata (env, spaces, flags, training figures) travels inside each file: TFLite
metadata and ONNX metadata_props under the key "tfppo_metadata"; tfppo.runtimes reads it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile

from tfppo.config import ConfigError

FORMATS = ("saved_model", "tf_serving", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "dynamic_range")
METADATA_KEY = "tfppo_metadata"
ONNX_OPSET = 17
# What the converted models compute: the deterministic policy and the critic.
SIGNATURES = ("action", "value")


class ConversionError(ConfigError):
    """A converter refused the model; the message is one line naming the ops it could not take."""


def failure_line(error: Exception) -> str:
    """The converter's message reduced to one line, naming the unsupported ops where it says."""
    text = str(error)
    ops = sorted(set(re.findall(r"'(tf\.\w+)' op", text)))
    ops += sorted(set(re.findall(r"[Oo]p \[?'?(\w+)'?\]? is not supported", text)) - set(ops))
    if ops:
        return f"unsupported op(s) {', '.join(ops)}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def new_file(path: str, flag: str = "--out") -> None:
    """Refuses an existing `path` (given as `flag`): nothing is ever overwritten."""
    if os.path.exists(path):
        raise ConfigError(f"{flag}={path!r} already exists; choose a new path")
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.exists(parent) and not os.path.isdir(parent):
        raise ConfigError(f"{flag}={path!r}: {parent!r} is a file, not a directory")


def write_atomically(path: str, data: bytes, flag: str = "--out") -> str:
    """Writes a new file whole (a .partial renamed into place); an existing `path` is refused, and
    a write the system refuses is one ConfigError line with no .partial left behind."""
    new_file(path, flag)
    temporary = path + ".partial"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except OSError as error:
        if os.path.isfile(temporary):
            os.remove(temporary)
        raise ConfigError(f"{flag}={path!r}: cannot write it ({error.strerror or error})") from None
    return path


def serving_version_dir(out: str, version: int) -> str:
    """OUT/VERSION for TF Serving's numbered layout; OUT may already hold other versions."""
    if version < 1:
        raise ConfigError(f"--version={version} must be >= 1 (TF Serving serves the highest number)")
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out={out!r} is a file; TF Serving's layout is a directory OUT/VERSION/")
    path = os.path.join(out, str(version))
    if os.path.exists(path):
        raise ConfigError(f"{path!r} already exists; pass a new --version or a new --out")
    return path


def copy_to_serving_layout(saved_model: str, out: str, version: int) -> str:
    path = serving_version_dir(out, version)
    temporary = path + ".partial"
    shutil.copytree(saved_model, temporary)
    os.replace(temporary, path)
    return path


def _metadata(saved_model: str, **extra) -> dict:
    from tfppo.export import load_metadata

    return {**load_metadata(saved_model), **extra}


@contextlib.contextmanager
def native_log_held():
    """Holds what native code writes to stderr (fd 2) while the block runs, and writes it out only
    if the block raises. TensorFlow's converters log through C++ absl logging ("WARNING: All log
    messages before absl::InitializeLog() ...", "Starting new session"), which
    TF_CPP_MIN_LOG_LEVEL does not reach: a conversion that worked then prints its path alone."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                os.write(2, held.read())


def to_tflite(saved_model: str, out: str, quantize: str = "none") -> str:
    """Writes the `action` and `value` signatures of a SavedModel as one .tflite file at `out`."""
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"--quantize={quantize!r}; expected one of {', '.join(QUANTIZATIONS)}")
    new_file(out)
    meta = _metadata(saved_model, format="tflite", quantize=quantize)
    converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=list(SIGNATURES))
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # alone: dynamic-range int8 weights
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    try:
        with native_log_held():
            flatbuffer = converter.convert()
    except Exception as error:  # The converter raises ConverterError, ValueError, ... by stage.
        raise ConversionError(f"TFLite conversion of {saved_model!r} failed: {failure_line(error)}") from None
    return write_atomically(out, _with_tflite_metadata(flatbuffer, meta))


def _with_tflite_metadata(flatbuffer: bytes, meta: dict) -> bytes:
    """The model with `meta` as JSON in its metadata list (read by tfppo.runtimes)."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_KEY, len(model.buffers) - 1
    model.metadata = list(model.metadata or []) + [entry]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def to_onnx(saved_model: str, out: str) -> str:
    """Writes a SavedModel's `action` and `value` as one ONNX graph at `out` (tf2onnx)."""
    try:
        import tf2onnx
    except ImportError:
        raise ConfigError("--format=onnx needs tf2onnx: pip install 'tfppo[onnx]'") from None
    import tensorflow as tf

    new_file(out)
    meta = _metadata(saved_model, format="onnx")
    model = tf.saved_model.load(saved_model)
    from tfppo.export import signature  # named parameters, as the SavedModel's signatures

    _, named = model.signatures["action"].structured_input_signature
    # The observation inputs in the model's order (metadata "inputs"), then the mask
    # (a recurrent policy's state last).
    order = [i["name"] for i in meta.get("inputs") or [{"name": "observation"}]] + ["mask", "recurrent_state"]
    specs = [tf.TensorSpec(named[key].shape, named[key].dtype, name=key) for key in order if key in named]
    value_names = [spec.name for spec in specs if spec.name != "mask"]

    def policy(*args):
        inputs = {spec.name: value for spec, value in zip(specs, args, strict=True)}
        out = dict(model.action(**inputs))
        out["value"] = model.value(**{key: inputs[key] for key in value_names})["value"]
        return out

    function = signature(policy, specs)
    try:
        with native_log_held():
            proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=ONNX_OPSET)
    except Exception as error:  # tf2onnx raises ValueError, RuntimeError, ... by stage.
        raise ConversionError(f"ONNX conversion of {saved_model!r} failed: {failure_line(error)}") from None
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(meta, sort_keys=True)
    return write_atomically(out, proto.SerializeToString())


def convert(saved_model: str, out: str, fmt: str, quantize: str = "none", version: int = 1) -> str:
    """`saved_model` (a tfppo SavedModel directory) written as `fmt` to `out`; returns the path."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r}; expected one of {', '.join(FORMATS)}")
    if quantize != "none" and fmt != "tflite":
        raise ConfigError(f"--quantize={quantize} applies to --format=tflite only")
    if fmt == "saved_model":
        if os.path.exists(out):
            raise ConfigError(f"--out={out!r} already exists; choose a new directory")
        shutil.copytree(saved_model, out)
        return out
    if fmt == "tf_serving":
        return copy_to_serving_layout(saved_model, out, version)
    if fmt == "tflite":
        return to_tflite(saved_model, out, quantize)
    return to_onnx(saved_model, out)


# Where each format goes by default, inside the run directory.
DEFAULT_OUT = {
    "saved_model": "saved_model_from_checkpoint",
    "tf_serving": "tf_serving",
    "tflite": "policy.tflite",
    "onnx": "policy.onnx",
}


def define_flags(flag_values) -> None:
    from absl import flags

    flags.DEFINE_string(
        "logdir", None, "A tfppo run directory (with flags.json and checkpoints/).", flag_values=flag_values
    )
    flags.DEFINE_string(
        "checkpoint", "", "A checkpoint prefix; default the latest in LOGDIR.", flag_values=flag_values
    )
    flags.DEFINE_string(
        "saved_model",
        "",
        "Convert this tfppo SavedModel instead of a run's checkpoint.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "out",
        "",
        "Where to write; default in LOGDIR: saved_model_from_checkpoint/, tf_serving/, policy.tflite or policy.onnx.",
        flag_values=flag_values,
    )
    flags.DEFINE_string("format", "saved_model", f"One of {', '.join(FORMATS)}.", flag_values=flag_values)
    flags.DEFINE_string(
        "quantize",
        "none",
        "TFLite only: none, float16 or dynamic_range (int8 weights).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "version", 1, "tf_serving only: the version directory OUT/VERSION.", flag_values=flag_values
    )


def export_from_flags(values) -> str:
    """Runs `python -m tfppo.export` for parsed flags; returns what it wrote."""
    from tfppo.export import export_checkpoint

    fmt = values.format
    if fmt not in FORMATS:
        raise ConfigError(f"--format={fmt!r}; expected one of {', '.join(FORMATS)}")
    if bool(values.logdir) == bool(values.saved_model):
        raise ConfigError("pass either --logdir (a run to export) or --saved_model (a SavedModel to convert)")
    if values.quantize not in QUANTIZATIONS or (values.quantize != "none" and fmt != "tflite"):
        raise ConfigError(
            f"--quantize={values.quantize!r}; expected none, or float16 / dynamic_range with --format=tflite"
        )
    if values.saved_model:
        if not values.out:
            raise ConfigError("--out is required with --saved_model")
        if not os.path.isfile(os.path.join(values.saved_model, "saved_model.pb")):
            raise ConfigError(f"--saved_model={values.saved_model!r} has no saved_model.pb")
        return convert(values.saved_model, values.out, fmt, values.quantize, values.version)
    out = values.out or os.path.join(values.logdir, DEFAULT_OUT[fmt])
    if fmt == "saved_model":
        return export_checkpoint(values.logdir, out, values.checkpoint)
    if fmt == "tf_serving":
        return export_checkpoint(values.logdir, serving_version_dir(out, values.version), values.checkpoint)
    new_file(out)  # Refused before the export, not after.
    with tempfile.TemporaryDirectory() as directory:
        saved_model = export_checkpoint(
            values.logdir, os.path.join(directory, "saved_model"), values.checkpoint
        )
        return convert(saved_model, out, fmt, values.quantize)
