"""Every serving format side by side: size, load time, latency and returns (docs/serving.md).

For each trained run, the run's SavedModel is converted to TFLite (float32, float16 and
dynamic-range quantised) and ONNX in a temporary directory; then, in this one process:

  size       bytes on disk (the SavedModel: its whole directory)
  load       seconds to open the model (median of 3; TensorFlow already imported)
  latency    ms per `action` call on batch 1 and batch 64 (median of 5 rounds of 200 calls,
             the formats interleaved round by round so machine load hits them alike)
  difference the largest |action - SavedModel action| on every observation the SavedModel's
             episodes visited (discrete: how many choices differ)
  return     mean (and std) undiscounted return of the same evaluation episodes (seeds
             training seed + 10000 + i), deterministic actions

    .venv/bin/python benchmarks/serving.py --runs=cartpole=runs/cartpole,hopper=runs/hopper --episodes=30 --out=docs/benchmarks/serving
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tfppo import convert, evaluation, runtimes  # noqa: E402
from tfppo import envs as envs_lib  # noqa: E402

# name -> (format, quantisation)
VARIANTS = {
    "SavedModel": ("saved_model", "none"),
    "TFLite float32": ("tflite", "none"),
    "TFLite float16": ("tflite", "float16"),
    "TFLite dynamic-range int8": ("tflite", "dynamic_range"),
    "ONNX": ("onnx", "none"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", required=True, help="NAME=LOGDIR,...: trained runs (their saved_model/)")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes per format")
    parser.add_argument("--calls", type=int, default=200, help="calls per latency round")
    parser.add_argument("--rounds", type=int, default=5, help="latency rounds (formats interleaved)")
    parser.add_argument("--out", required=True, help="directory for results.md and results.json")
    return parser


def size_of(path: str) -> int:
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def inputs(model: runtimes.ExportedModel, batch: int, rng) -> tuple[np.ndarray, np.ndarray | None]:
    observation = rng.normal(size=(batch,) + model.observation_shape).astype(np.float32)
    mask = np.ones((batch, model.mask_width), bool) if model.has_mask else None
    return observation, mask


def latency_ms(models: dict, batch: int, calls: int, rounds: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    args = {name: inputs(model, batch, rng) for name, model in models.items()}
    samples = {name: [] for name in models}
    for name, model in models.items():  # warm-up: first calls trace, allocate, resize
        for _ in range(10):
            model.action(*args[name])
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(calls):
                model.action(*args[name])
            samples[name].append((time.perf_counter() - start) / calls * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def difference(reference, model, visited) -> str:
    """How far `model`'s actions are from `reference`'s on the observations `visited`: the
    largest absolute difference (continuous), or how many choices differ (discrete)."""
    observation = np.concatenate([o for o, _ in visited])
    mask = None if visited[0][1] is None else np.concatenate([m for _, m in visited])
    expected, actual = reference.act(observation, mask), model.act(observation, mask)
    if expected.dtype.kind == "i":
        return f"{int(np.sum(expected != actual))} of {expected.size} differ"
    return f"{float(np.max(np.abs(expected - actual))):.1e}"


def measure_run(name: str, logdir: str, args) -> list[dict]:
    saved_model = os.path.join(logdir, "saved_model")
    rows, models = [], {}
    with tempfile.TemporaryDirectory() as directory:
        paths = {}
        for variant, (fmt, quantize) in VARIANTS.items():
            if fmt == "saved_model":
                paths[variant] = saved_model
            else:
                out = os.path.join(directory, f"{quantize}.{fmt}")
                paths[variant] = convert.convert(saved_model, out, fmt, quantize)
            load_times = []
            for _ in range(3):
                start = time.perf_counter()
                models[variant] = runtimes.open_model(paths[variant])
                load_times.append(time.perf_counter() - start)
            rows.append({"run": name, "format": variant, "bytes": size_of(paths[variant])})
            rows[-1]["load_s"] = statistics.median(load_times)
        for batch in (1, 64):
            for variant, ms in latency_ms(models, batch, args.calls, args.rounds).items():
                next(r for r in rows if r["format"] == variant)[f"ms_batch_{batch}"] = ms
        meta = models["SavedModel"].metadata
        source = envs_lib.source_from_record({"source": meta.get("env_source") or {"id": meta["env"]}})
        spec = envs_lib.probe(source).spec
        seed = meta["flags"]["seed"] + 10_000
        visited = []  # (observation, mask) of the SavedModel's episodes

        def recording_act(observation, mask):
            visited.append((observation, mask))
            return models["SavedModel"].act(observation, mask)

        for row in rows:
            env = source.make()
            act = recording_act if row["format"] == "SavedModel" else models[row["format"]].act
            try:
                returns = evaluation.run_episodes(env, act, args.episodes, seed, spec)
            finally:
                env.close()
            row.update(return_mean=float(np.mean(returns)), return_std=float(np.std(returns)))
            row["action_difference"] = difference(models["SavedModel"], models[row["format"]], visited)
            row.update(env=meta["env"], global_step=meta.get("global_step"), episodes=args.episodes)
            print(json.dumps(row), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| run | format | size (KB) | load (ms) | ms / call, batch 1 | ms / call, batch 64 "
        "| max action difference from the SavedModel | mean return (std) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} ({r['env']}, {r['global_step']} steps) | {r['format']} | {r['bytes'] / 1024:.1f} "
            f"| {r['load_s'] * 1000:.0f} | {r['ms_batch_1']:.3f} | {r['ms_batch_64']:.3f} "
            f"| {r['action_difference']} | {r['return_mean']:.1f} ({r['return_std']:.1f}) |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    runs = dict(item.split("=", 1) for item in args.runs.split(","))
    rows = []
    for name, logdir in runs.items():
        rows += measure_run(name, logdir, args)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(rows, f, indent=2)
    command = "python benchmarks/serving.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(f"# Serving formats side by side\n\n`{command}`, {args.episodes} episodes each.\n\n")
        f.write(table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
