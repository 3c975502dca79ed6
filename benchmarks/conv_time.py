r"""Times the Atari preset's network by itself, in whichever TensorFlow runs this script.

The Nature CNN (32x8x8 stride 4, 64x4x4 stride 2, 64x3x3 stride 1) and 512 relu units on
uint8 frames [B, 4, 84, 84] (scaled by 1/255, frame axis moved last), a 4-way policy head and a
value head; one gradient step = forward, backward and Adam on a minibatch of 256 frames, one
acting call = the forward pass on 8 frames. `--torsos=1`: one CNN shared by both heads (tfppo,
CleanRL, SB3); `--torsos=2`: a CNN per head (TF-Agents' PPOClipAgent, which takes an actor and a
value network). Only TensorFlow and its bundled Keras are used, so the same file runs in tfppo's
venv (TF 2.20, Keras 3) and in the TF-Agents venv (TF 2.15, Keras 2):

  .venv/bin/python benchmarks/conv_time.py --torsos=1
  .venv-tfagents/bin/python benchmarks/conv_time.py --torsos=2

Prints one line: TensorFlow's version, then the median over --rounds of ms per gradient step and
ms per acting call, each round --steps calls after one untimed call (tracing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

# The layout and the frame transform TF-Agents' networks get in the speed benchmark (its driver
# imports only the standard library at module level, so either venv can import it).
from _tfagents_driver import NATURE_CNN, frames_layer  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--torsos", type=int, choices=(1, 2), default=1, help="CNNs: one shared, or one per head"
    )
    parser.add_argument("--batch", type=int, default=256, help="frames per gradient step")
    parser.add_argument("--act_batch", type=int, default=8, help="frames per acting call (the envs)")
    parser.add_argument("--steps", type=int, default=20, help="timed calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--intra_op_threads", type=int, default=1, help="tfppo's default and the benchmark's")
    parser.add_argument(
        "--dtype", choices=("float32", "bfloat16"), default="float32", help="the torso's compute dtype"
    )
    return parser


def torso(dtype: str):
    keras = tf.keras
    layers = [keras.layers.Conv2D(f, k, s, activation="relu", dtype=dtype) for f, k, s in NATURE_CNN]
    return keras.Sequential(
        [*layers, keras.layers.Flatten(dtype=dtype), keras.layers.Dense(512, activation="relu", dtype=dtype)]
    )


def main(argv=None) -> dict:
    """Returns what it prints: ms per gradient step and per acting call, and the weights' count."""
    args = build_parser().parse_args(argv)
    if tf.config.threading.get_intra_op_parallelism_threads() != args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)  # before any op
    keras = tf.keras
    dtype = "mixed_bfloat16" if args.dtype == "bfloat16" else "float32"
    torsos = [torso(dtype) for _ in range(args.torsos)]
    policy_head, value_head = keras.layers.Dense(4), keras.layers.Dense(1)
    optimizer = keras.optimizers.Adam(2.5e-4, epsilon=1e-5)

    scale = frames_layer()

    def heads(frames):
        x = scale(frames)
        features = [tf.cast(t(x), tf.float32) for t in torsos]
        return policy_head(features[0]), value_head(features[-1])[:, 0]

    rng = np.random.default_rng(0)
    frames = tf.constant(rng.integers(0, 256, (args.batch, 4, 84, 84), np.uint8))
    actions = tf.constant(rng.integers(0, 4, args.batch), tf.int32)
    returns = tf.constant(rng.normal(size=args.batch), tf.float32)
    act_frames = tf.constant(rng.integers(0, 256, (args.act_batch, 4, 84, 84), np.uint8))
    heads(act_frames)  # builds the layers
    variables = [v for t in torsos for v in t.trainable_variables]
    variables += policy_head.trainable_variables + value_head.trainable_variables

    @tf.function
    def gradient_step(frames, actions, returns):
        with tf.GradientTape() as tape:
            logits, value = heads(frames)
            log_prob = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=actions, logits=logits)
            loss = -tf.reduce_mean(log_prob) + 0.25 * tf.reduce_mean(tf.square(returns - value))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    @tf.function
    def act(frames):
        logits, value = heads(frames)
        return tf.random.categorical(logits, 1), value

    def timed(call) -> float:
        call()  # traced and run once, untimed
        rounds = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(args.steps):
                result = call()
            tf.nest.map_structure(lambda t: t.numpy(), result)
            rounds.append((time.perf_counter() - start) / args.steps * 1000)
        return statistics.median(rounds)

    step_ms = timed(lambda: gradient_step(frames, actions, returns))
    act_ms = timed(lambda: act(act_frames))
    weights = sum(int(np.prod(v.shape)) for v in variables)
    print(
        f"tensorflow {tf.__version__}, {args.torsos} torso(s), {args.dtype}, {args.intra_op_threads} thread(s): "
        f"{step_ms:.1f} ms per gradient step ({args.batch} frames), {act_ms:.2f} ms per acting call "
        f"({args.act_batch} frames); {weights} weights"
    )
    return {"step_ms": step_ms, "act_ms": act_ms, "weights": weights}


if __name__ == "__main__":
    main()
