"""Run an exported tfppo policy in any format, NumPy in and out: `open_model(path)`.

  SavedModel   a directory with saved_model.pb, TF Serving's OUT/VERSION/ layout (the
               highest version) or a training run's directory (its saved_model/): TensorFlow.
  TFLite       a .tflite file: ai-edge-litert's interpreter, no TensorFlow.
  ONNX         a .onnx file: onnxruntime, no TensorFlow.

Each model's `action(observation [B, *shape] float32, mask [B, W] bool or None)` returns the
signature's outputs as a dict ({"action"} or {"action_type", "parameters"}) and
`value(observation)` returns [B]. This module imports TensorFlow only to open a SavedModel.
"""

from __future__ import annotations

import json
import os

import numpy as np

from tfppo import rundir, saved_policy
from tfppo.config import ConfigError
from tfppo.convert import METADATA_KEY, native_log_held  # convert imports no TensorFlow at module level
from tfppo.observations import ObservationSpec, export_feed


def detect(path: str) -> tuple[str, str]:
    """(format, the file or directory to open) of an exported model at `path`."""
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")) or rundir.is_run(path):
            return "saved_model", saved_policy.saved_model_dir(path)  # a run: its saved_model/
        versions = [
            n
            for n in os.listdir(path)
            if n.isdigit() and os.path.isfile(os.path.join(path, n, "saved_model.pb"))
        ]
        if versions:  # TF Serving's layout: it serves the highest version.
            return "saved_model", os.path.join(path, max(versions, key=int))
        raise ConfigError(
            f"--model={path!r} is a directory without saved_model.pb (nor VERSION/saved_model.pb)"
        )
    if not os.path.isfile(path):
        raise ConfigError(f"--model={path!r} does not exist")
    for fmt, suffix in (("tflite", ".tflite"), ("onnx", ".onnx")):
        if path.endswith(suffix):
            return fmt, path
    raise ConfigError(f"--model={path!r}: expected a SavedModel directory, a .tflite or a .onnx file")


class ExportedModel:
    """A loaded model: format, path, metadata (dict), has_mask, observation_shape."""

    def __init__(self, fmt: str, path: str, metadata: dict):
        self.format, self.path, self.metadata = fmt, path, metadata
        self.has_mask = bool(metadata["has_mask"])
        self.observation_shape = tuple(metadata["observation_shape"])
        self.mask_width = _mask_width(metadata)
        spec = (metadata.get("spec") or {}).get("observation")
        self.observation_spec = ObservationSpec.from_dict(spec) if spec else None
        # A recurrent policy (--recurrent): the state [B, S] carried from call to call.
        self.state_size = int(metadata.get("state_size") or 0)
        self.state = None

    def reset(self, batch_size: int = 1) -> None:
        """A recurrent policy's memory for new episodes (zeros); a no-op for a feed-forward one."""
        self.state = np.zeros((batch_size, self.state_size), np.float32) if self.state_size else None

    def _state(self, batch_size: int) -> dict[str, np.ndarray]:
        if not self.state_size:
            return {}
        if self.state is None or len(self.state) != batch_size:
            self.reset(batch_size)
        return {"recurrent_state": self.state}

    def feed(self, observation) -> dict[str, np.ndarray]:
        """The model's observation inputs from a stored batch (tfppo.observations.export_feed)."""
        if self.observation_spec is None:  # exported before observation kinds: one float vector
            return {"observation": np.asarray(observation, np.float32)}
        return export_feed(self.observation_spec, observation)

    def inputs(self, observation, mask) -> dict[str, np.ndarray]:
        named = self.feed(observation)
        if self.has_mask:
            if mask is None:
                raise ValueError("this policy was trained with action masks: pass mask")
            named["mask"] = mask
        named.update(self._state(len(next(iter(named.values())))))
        return named

    def action(self, observation, mask=None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def act(self, observation, mask=None) -> np.ndarray:
        """The action as tfppo stores it: [B] / [B, A] / [B, len(nvec)], hybrid [B, 1 + P]."""
        out = self.action(observation, mask)
        if self.state_size:  # the memory goes on to the next call (reset() at an episode's start)
            self.state = out.pop("next_recurrent_state")
        if "action_type" in out:
            return np.concatenate([out["action_type"][:, None].astype(np.float32), out["parameters"]], -1)
        return out["action"]

    def value(self, observation) -> np.ndarray:
        raise NotImplementedError


def _mask_width(metadata: dict) -> int:
    action = (metadata.get("spec") or {}).get("action") or {}
    nvec = action.get("nvec") or ()
    return int(sum(nvec)) if nvec else int(action.get("num_actions") or 0)


class SavedModel(ExportedModel):
    def __init__(self, path: str):
        import tensorflow as tf

        try:
            self.model = tf.saved_model.load(path)  # Keep the reference while calling it.
            meta = json.loads(self.model.metadata()["json"].numpy().decode())
        except Exception as error:  # A corrupt saved_model.pb raises DecodeError, OSError, ...
            raise ConfigError(f"{path!r} is not a loadable tfppo SavedModel: {_first_line(error)}") from None
        super().__init__("saved_model", path, meta)

    def action(self, observation, mask=None):
        out = self.model.action(**self.inputs(observation, mask))
        return {key: value.numpy() for key, value in out.items()}

    def value(self, observation):
        named = self.feed(observation)
        named.update(self._state(len(next(iter(named.values())))))
        return self.model.value(**named)["value"].numpy()


class TFLiteModel(ExportedModel):
    def __init__(self, path: str, num_threads: int | None = None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise ConfigError("a .tflite model needs ai-edge-litert: pip install 'tfppo[tflite]'") from None
        try:
            with open(path, "rb") as f:
                meta = read_tflite_metadata(f.read())
            with native_log_held():  # LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate"
                self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
                self.interpreter.allocate_tensors()  # applies the delegate (and logs) here
                self.runners = {
                    key: self.interpreter.get_signature_runner(key) for key in ("action", "value")
                }
        except (ValueError, RuntimeError, KeyError) as error:
            raise ConfigError(f"{path!r} is not a tfppo TFLite model: {_first_line(error)}") from None
        super().__init__("tflite", path, meta)

    def action(self, observation, mask=None):
        return self.runners["action"](**self.inputs(observation, mask))

    def value(self, observation):
        named = self.feed(observation)
        named.update(self._state(len(next(iter(named.values())))))
        return self.runners["value"](**named)["value"]


def read_tflite_metadata(flatbuffer: bytes) -> dict:
    """The tfppo metadata inside a .tflite file (TFLite's flatbuffer schema; no TensorFlow)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(flatbuffer, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_KEY.encode():
            buffer = model.Buffers(entry.Buffer())
            if buffer.DataLength():
                data = buffer.DataAsNumpy().tobytes()
            else:  # Large models keep buffers after the flatbuffer, at an offset.
                data = flatbuffer[buffer.Offset() : buffer.Offset() + buffer.Size()]
            return json.loads(data.decode())
    raise ValueError(f"no {METADATA_KEY} in the model's metadata (not exported by tfppo)")


class OnnxModel(ExportedModel):
    def __init__(self, path: str, num_threads: int | None = None):
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError("a .onnx model needs onnxruntime: pip install 'tfppo[onnx]'") from None
        options = onnxruntime.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        try:
            self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            meta = json.loads(self.session.get_modelmeta().custom_metadata_map[METADATA_KEY])
        except KeyError:
            raise ConfigError(f"{path!r} is an ONNX model but not one tfppo exported (no metadata)") from None
        except Exception as error:  # onnxruntime raises its own InvalidProtobuf, Fail, ...
            raise ConfigError(f"{path!r} is not a loadable ONNX model: {_first_line(error)}") from None
        self.action_names = [o.name for o in self.session.get_outputs() if o.name != "value"]
        super().__init__("onnx", path, meta)

    def action(self, observation, mask=None):
        out = self.session.run(self.action_names, self.inputs(observation, mask))
        return dict(zip(self.action_names, out, strict=True))

    def value(self, observation):
        named = self.feed(observation)
        if self.has_mask:  # One graph serves both outputs; the value ignores the mask.
            named["mask"] = np.ones((len(observation), self.mask_width), bool)
        named.update(self._state(len(next(iter(named.values())))))
        return self.session.run(["value"], named)[0]


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def open_model(path: str, num_threads: int | None = None) -> ExportedModel:
    """The exported model at `path`, its format detected (see the module docstring)."""
    fmt, found = detect(path)
    if fmt == "saved_model":
        return SavedModel(found)
    if fmt == "tflite":
        return TFLiteModel(found, num_threads)
    return OnnxModel(found, num_threads)
