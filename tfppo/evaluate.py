"""Run an exported policy: `python -m tfppo.evaluate --saved_model=DIR [--env=ID] --episodes=N`.

Loads the SavedModel with TensorFlow alone (the policy needs neither tfppo's networks nor tfp),
plays deterministic episodes (the `action` signature) and prints the mean and std of the
undiscounted return. By default the env id comes from the model's metadata and episode i is
seeded with the training seed + 10000 + i, the seeds of the training run's final evaluation,
so the printed mean reproduces `eval_return_mean` of its summary.json.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import app, flags

flags.DEFINE_string("saved_model", None, "Directory of a tfppo SavedModel (LOGDIR/saved_model).")
flags.DEFINE_string("env", "", "Gymnasium env id; default: the one the model was trained on.")
flags.DEFINE_integer("episodes", 10, "Episodes to play.")
flags.DEFINE_integer(
    "seed", -1, "Seed of the first episode (episode i: seed + i); default: training seed + 10000."
)
flags.DEFINE_string("video_dir", "", "Record every episode as an MP4 here (gymnasium's RecordVideo).")
FLAGS = flags.FLAGS


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(f"{error}; see --helpfull")


def load(path: str):
    """(loaded SavedModel, metadata dict); TensorFlow only."""
    import tensorflow as tf

    if not path or not os.path.isfile(os.path.join(path, "saved_model.pb")):
        fail(f"--saved_model={path!r} is not a SavedModel directory (no saved_model.pb)")
    model = tf.saved_model.load(path)
    return model, json.loads(model.metadata()["json"].numpy().decode())


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected argument {argv[1]!r}; flags look like --name=value")
    if FLAGS.episodes < 1:
        fail(f"--episodes={FLAGS.episodes} must be >= 1")
    from tfppo import envs as envs_lib
    from tfppo import evaluation
    from tfppo.config import ConfigError

    model, meta = load(FLAGS.saved_model)
    seed = FLAGS.seed if FLAGS.seed >= 0 else meta["flags"]["seed"] + 10_000
    try:
        if FLAGS.env:
            source = envs_lib.source_from_id(FLAGS.env)
        else:
            saved = meta.get("env_source") or {"id": meta["env"]}
            source = envs_lib.source_from_record({"source": saved})
        env_id = source.name
        spec = envs_lib.probe(source).spec
        if spec.observation_shape != tuple(meta["observation_shape"]):
            raise ConfigError(
                f"--env={env_id} observations have shape {spec.observation_shape}; the model expects "
                f"{tuple(meta['observation_shape'])}"
            )

        def act(observation, mask):
            args = (observation, mask) if meta["has_mask"] else (observation,)
            return model.action(*args)["action"].numpy()

        env = evaluation.make_env(source, FLAGS.video_dir)
        try:
            returns = evaluation.run_episodes(env, act, FLAGS.episodes, seed, spec)
        finally:
            env.close()
    except ConfigError as error:
        fail(str(error))
    print(
        f"{env_id}: return {np.mean(returns):.2f} +- {np.std(returns):.2f} over {len(returns)} episodes "
        f"(seeds {seed}..{seed + len(returns) - 1})"
    )
    if FLAGS.video_dir:
        print(f"videos in {FLAGS.video_dir}")


def run() -> None:
    """The console script tfppo-evaluate."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
