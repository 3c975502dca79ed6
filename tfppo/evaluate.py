"""Run an exported policy: `python -m tfppo.evaluate --model=PATH [--env=ID] --episodes=N`.

PATH is a SavedModel directory (or TF Serving's OUT/VERSION/ layout), a .tflite or a .onnx file,
or a training run's directory (its saved_model/; `--logdir=RUN` says the same) (tfppo.runtimes;
`--saved_model=DIR` is the same flag's older name). The SavedModel runs with
TensorFlow alone (the policy needs neither tfppo's networks nor tfp), TFLite in ai-edge-litert,
ONNX in onnxruntime. It plays deterministic episodes (the `action` signature) and prints the
mean and std of the undiscounted return; `--returns_out=FILE` also writes every episode's return
as JSON (a new file; an existing one is refused). By default the env id comes from the model's metadata and episode i is
seeded with the training seed + 10000 + i, the seeds of the training run's final evaluation,
so the printed mean reproduces `eval_return_mean` of its summary.json.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from absl import app, flags

from tfppo import convert  # standard library only, as tfppo.config: --help stays instant
from tfppo.config import ConfigError

flags.DEFINE_string(
    "model",
    None,
    "An exported policy: a SavedModel directory, a .tflite or a .onnx file, or a training run's directory (its saved_model/).",
)
flags.DEFINE_string(
    "saved_model", None, "A tfppo SavedModel directory (LOGDIR/saved_model); same as --model."
)
# The run directory's name in tfppo.train: a run's --logdir is a --model (its saved_model/).
flags.DEFINE_alias("logdir", "model")
flags.DEFINE_string("env", "", "Gymnasium env id; default: the one the model was trained on.")
flags.DEFINE_integer("episodes", 10, "Episodes to play.")
flags.DEFINE_integer(
    "seed", -1, "Seed of the first episode (episode i: seed + i); default: training seed + 10000."
)
flags.DEFINE_string("video_dir", "", "Record every episode as an MP4 here (gymnasium's RecordVideo).")
flags.DEFINE_string(
    "returns_out",
    "",
    "Also write the episodes here as JSON (env, first seed, every return, mean, std); a new file.",
)
FLAGS = flags.FLAGS


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(f"{error}; see --helpfull")


def check_spaces(spec, meta: dict, env_id: str) -> None:
    """Raises ConfigError when the env's spaces are not the ones the model was trained on."""
    from tfppo import envs as envs_lib

    if spec.observation_shape != tuple(meta["observation_shape"]):
        raise ConfigError(
            f"--env={env_id} observations have shape {spec.observation_shape}; the model expects "
            f"{tuple(meta['observation_shape'])}"
        )
    if "spec" not in meta:
        return
    trained = envs_lib.spec_from_dict(meta["spec"]).action
    mine = (describe(spec.action), spec.has_mask)
    theirs = (describe(trained), bool(meta["has_mask"]))
    if mine != theirs:
        masks = {True: " with action masks", False: ""}
        raise ConfigError(
            f"--env={env_id} takes {mine[0]} actions{masks[mine[1]]}; the model was trained on "
            f"{theirs[0]} actions{masks[theirs[1]]}"
        )


def describe(action) -> str:
    """An ActionSpec in a few words: discrete(3), box(2), multi_discrete(3, 5, 2), hybrid(3 x 2)."""
    sizes = {
        "discrete": [action.num_actions],
        "box": list(action.shape),
        "multi_discrete": list(action.nvec),
        "binary": [action.num_actions],
        "hybrid": [f"{action.num_actions} x {action.dim}"],
    }[action.kind]
    return f"{action.kind}({', '.join(map(str, sizes))})"


def write_returns(path: str, env_id: str, seed: int, returns: list[float], model_format: str) -> None:
    """--returns_out: the episodes as JSON, written whole (convert.write_atomically)."""
    record = {
        "env": env_id,
        "format": model_format,
        "first_seed": seed,
        "episodes": len(returns),
        "returns": [float(r) for r in returns],
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
    }
    convert.write_atomically(path, json.dumps(record, indent=2).encode(), "--returns_out")


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected argument {argv[1]!r}; flags look like --name=value")
    if FLAGS.episodes < 1:
        fail(f"--episodes={FLAGS.episodes} must be >= 1")
    if FLAGS.model and FLAGS.saved_model:
        fail("pass --model or --saved_model (the same flag), not both")
    if not (FLAGS.model or FLAGS.saved_model):
        fail("--model is required: a run directory, a SavedModel directory, a .tflite or a .onnx file")
    from tfppo import envs as envs_lib
    from tfppo import evaluation, runtimes

    try:
        if FLAGS.returns_out:  # Refused before the episodes are played, not after.
            convert.new_file(FLAGS.returns_out, "--returns_out")
        model = runtimes.open_model(FLAGS.model or FLAGS.saved_model or "")
        meta = model.metadata
        seed = FLAGS.seed if FLAGS.seed >= 0 else meta["flags"]["seed"] + 10_000
        saved = meta.get("env_source") or {"id": meta["env"]}
        if FLAGS.env:  # another env id, with the time feature if the model was trained with it
            source = envs_lib.source_from_id(FLAGS.env)
            if saved.get(envs_lib.TIME_FEATURE):
                source = envs_lib.with_time_feature(source)
        else:
            source = envs_lib.source_from_record({"source": saved})
        env_id = source.name
        spec = envs_lib.probe(source).spec
        check_spaces(spec, meta, env_id)

        env = evaluation.make_env(source, FLAGS.video_dir)
        try:
            returns = evaluation.run_episodes(env, model.act, FLAGS.episodes, seed, spec, model.reset)
        finally:
            env.close()
        if FLAGS.returns_out:
            write_returns(FLAGS.returns_out, env_id, seed, returns, model.format)
    except ConfigError as error:
        fail(str(error))
    print(
        f"{env_id}: return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes "
        f"(seeds {seed}..{seed + len(returns) - 1}, {model.format})"
    )
    if FLAGS.video_dir:
        print(f"videos in {FLAGS.video_dir}")


def run() -> None:
    """The console script tfppo-evaluate."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
