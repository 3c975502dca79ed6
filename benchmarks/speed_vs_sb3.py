r"""Training speed of tfppo against Stable-Baselines3 PPO: same hyperparameters, same machine, one run.

  .venv/bin/python benchmarks/speed_vs_sb3.py --presets=cartpole,pendulum --seeds=0,1,2 \
      --out=docs/benchmarks/speed

Needs SB3 in its own virtual environment (see benchmarks/README_speed.md):

  python3 -m venv .venv-sb3 && .venv-sb3/bin/pip install torch==2.13.0 stable-baselines3==2.9.2 \
      gymnasium[classic-control]==1.4.0

One process at a time, alternating libraries seed by seed (random-policy rate, SB3 seed 0, tfppo
seed 0, random-policy rate, SB3 seed 1, ...), so a load change on a shared machine hits both.
Per preset it reports each library's env steps/s (env steps / (env and model construction +
training), imports excluded), the ratio tfppo / SB3 per seed, the wall time and env step at
which the mean undiscounted return of the last 100 training episodes first reached the
threshold, and the random-action step rate of a gymnasium SyncVectorEnv with the same number
of envs, measured in the same run. Writes results.md and results.json into --out; the
per-run logs go to --out/runs/<time>/ (git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import math
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SB3_PYTHON = os.path.join(REPO, ".venv-sb3", "bin", "python")
SB3_DRIVER = os.path.join(REPO, "benchmarks", "_sb3_driver.py")
SB3_SETUP = (
    "python3 -m venv .venv-sb3 && .venv-sb3/bin/pip install torch==2.13.0 "
    "stable-baselines3==2.9.2 gymnasium[classic-control]==1.4.0"
)
RETURN_WINDOW = 100  # episodes in the "last 100" mean, as in tfppo and SB3's ep_info_buffer
RANDOM_SECONDS = 3.0  # how long the random-policy loop runs per measurement

# Runs `python -m tfppo.train ARGS` unchanged, noting when the Trainer starts building the env
# and the networks and when training starts, so construction can be timed without imports.
TFPPO_WRAPPER = """
import json, runpy, sys, time
from tfppo import trainer
marks = {}
init, train = trainer.Trainer.__init__, trainer.Trainer.train
def timed_init(self, *args, **kwargs):
    marks.setdefault("construct_start", time.time())
    init(self, *args, **kwargs)
def timed_train(self):
    marks.setdefault("train_start", time.time())
    return train(self)
trainer.Trainer.__init__, trainer.Trainer.train = timed_init, timed_train
timing_path = sys.argv[1]
sys.argv = ["tfppo.train", *sys.argv[2:]]
try:
    runpy.run_module("tfppo.train", run_name="__main__", alter_sys=True)
finally:
    with open(timing_path, "w") as f:
        json.dump(marks, f)
"""


@dataclasses.dataclass(frozen=True)
class Preset:
    env: str
    num_envs: int
    total_timesteps: int
    threshold: float
    sb3: dict  # PPO keyword arguments of every SB3 variant; {"linear": x} decays x to 0
    sb3_variants: tuple  # (library label, extra PPO kwargs) in run order; "sb3" is the speed baseline
    tfppo_flags: tuple
    tfppo_optional: tuple = ()  # flags passed only if this tfppo defines them


PRESETS = {
    "cartpole": Preset(
        env="CartPole-v1",
        num_envs=8,
        total_timesteps=100_000,
        threshold=475.0,
        sb3=dict(
            n_steps=32,
            batch_size=256,
            n_epochs=20,
            gae_lambda=0.8,
            gamma=0.98,
            ent_coef=0.0,
            learning_rate={"linear": 1e-3},
            clip_range={"linear": 0.2},
        ),
        sb3_variants=(("sb3", {}),),
        tfppo_flags=("--flagfile=experiments/cartpole.flags",),
        tfppo_optional=("--anneal_clip",),  # SB3's clip_range lin_0.2
    ),
    "pendulum": Preset(
        env="Pendulum-v1",
        num_envs=4,
        total_timesteps=100_000,
        threshold=-200.0,
        sb3=dict(
            n_steps=1024,
            batch_size=64,
            n_epochs=10,
            gae_lambda=0.95,
            gamma=0.9,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
        ),
        # The zoo preset uses gSDE, which tfppo does not have: the speed ratio is taken against
        # SB3 with the same plain Gaussian policy ("sb3"); the gSDE runs are reported alongside.
        sb3_variants=(("sb3_gsde", dict(use_sde=True, sde_sample_freq=4)), ("sb3", {})),
        tfppo_flags=("--flagfile=experiments/pendulum.flags",),
    ),
}
LABELS = {"sb3": "SB3 PPO", "sb3_gsde": "SB3 PPO + gSDE (zoo preset)", "tfppo": "tfppo"}


class BenchmarkError(RuntimeError):
    """A training subprocess failed or wrote no usable output; the message names its log."""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--presets", default="cartpole,pendulum", help=f"comma separated: {', '.join(PRESETS)}"
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma separated integers")
    parser.add_argument(
        "--out", default="docs/benchmarks/speed", help="results directory (relative to the repo)"
    )
    parser.add_argument(
        "--total_timesteps",
        type=int,
        default=0,
        help="env steps per run for both libraries (0: the preset's)",
    )
    parser.add_argument("--skip_sb3", action="store_true", help="run tfppo only")
    parser.add_argument("--skip_tfppo", action="store_true", help="run SB3 only")
    args = parser.parse_args(argv)
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown or not args.presets:
        fail(
            f"--presets: unknown preset {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(PRESETS)}"
        )
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        fail(f"--seeds={args.seeds!r} must be comma separated integers, e.g. 0,1,2")
    if args.total_timesteps < 0:
        fail(f"--total_timesteps={args.total_timesteps} must be >= 0 (0: the preset's)")
    if args.skip_sb3 and args.skip_tfppo:
        fail("--skip_sb3 and --skip_tfppo together leave nothing to run")
    if not args.skip_sb3 and not os.path.isfile(SB3_PYTHON):
        fail(f"{SB3_PYTHON} is missing; create it from the repository root with: {SB3_SETUP}")
    return args


def run_command(command: list, log_path: str, what: str) -> None:
    """Runs one training process from the repo root; its stdout and stderr go to log_path."""
    with open(log_path, "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        with open(log_path, encoding="utf-8") as log:
            lines = [line.strip() for line in log if line.strip()]
        last = lines[-1] if lines else "no output"
        raise BenchmarkError(
            f"{what} failed (exit code {result.returncode}): {last} (full output: {log_path})"
        )


def read_json(path: str, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            if path.endswith(".jsonl"):
                return [json.loads(line) for line in f if line.strip()]
            return json.load(f)
    except (OSError, ValueError) as error:
        raise BenchmarkError(f"{what}: cannot read {path}: {error}") from None


def finite(value) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def result_row(preset: Preset, library: str, seed: int, records: list, timing: dict) -> dict:
    """One run's figures from its per-update records (wall_s counted from construction start)."""
    if not records:
        raise BenchmarkError(f"{library} seed {seed}: no update was recorded")
    reached = next(
        (
            r
            for r in records
            if r["episodes"] >= RETURN_WINDOW
            and finite(r["episode_return_mean"]) is not None
            and r["episode_return_mean"] >= preset.threshold
        ),
        None,
    )
    steps, total_s = timing["steps"], timing["total_s"]
    return {
        "env": preset.env,
        "library": library,
        "seed": seed,
        "steps": steps,
        "episodes": records[-1]["episodes"],
        "construct_s": timing["construct_s"],
        "total_s": total_s,
        "sps": steps / total_s,
        "reached_step": reached["global_step"] if reached else None,
        "reached_s": reached["wall_s"] if reached else None,
        "final_last100": finite(records[-1]["episode_return_mean"]),
        **timing.get("extra", {}),
    }


def run_sb3(preset: Preset, label: str, extra: dict, seed: int, total: int, rundir: str) -> dict:
    name = f"{preset.env}_{label}_seed{seed}"
    records_path, summary_path = (os.path.join(rundir, name + ext) for ext in (".jsonl", ".json"))
    command = [
        SB3_PYTHON,
        SB3_DRIVER,
        f"--env={preset.env}",
        f"--num_envs={preset.num_envs}",
        f"--seed={seed}",
        f"--total_timesteps={total}",
        f"--hyper={json.dumps({**preset.sb3, **extra})}",
        f"--records={records_path}",
        f"--summary={summary_path}",
    ]
    run_command(command, os.path.join(rundir, name + ".log"), f"{LABELS[label]} on {preset.env} seed {seed}")
    summary = read_json(summary_path, label)
    timing = {key: summary[key] for key in ("steps", "construct_s", "total_s")}
    timing["extra"] = {"versions": {k: summary[k] for k in ("stable_baselines3", "torch", "torch_threads")}}
    return result_row(preset, label, seed, read_json(records_path, label), timing)


def tfppo_flags(preset: Preset, available: set) -> list:
    optional = [flag for flag in preset.tfppo_optional if flag.lstrip("-").split("=")[0] in available]
    return [*preset.tfppo_flags, *optional]


def run_tfppo(preset: Preset, flags: list, seed: int, total: int, rundir: str) -> dict:
    name = f"{preset.env}_tfppo_seed{seed}"
    logdir, timing_path = os.path.join(rundir, name), os.path.join(rundir, name + ".timing.json")
    command = [
        sys.executable,
        "-c",
        TFPPO_WRAPPER,
        timing_path,
        *flags,
        f"--seed={seed}",
        f"--logdir={logdir}",
        "--eval_episodes=0",
        f"--total_timesteps={total}",
    ]
    run_command(command, os.path.join(rundir, name + ".log"), f"tfppo on {preset.env} seed {seed}")
    marks = read_json(timing_path, "tfppo timing")
    if set(marks) != {"construct_start", "train_start"}:
        raise BenchmarkError(
            f"tfppo timing {timing_path} holds {sorted(marks)}: tfppo.trainer.Trainer changed?"
        )
    construct_s = marks["train_start"] - marks["construct_start"]
    # tfppo's wall_s counts from the start of training; shift it to the start of construction.
    records = [
        {**r, "wall_s": r["wall_s"] + construct_s}
        for r in read_json(os.path.join(logdir, "metrics.jsonl"), "tfppo metrics")
    ]
    summary = read_json(os.path.join(logdir, "summary.json"), "tfppo summary")
    timing = {
        "steps": records[-1]["global_step"],
        "construct_s": construct_s,
        "total_s": records[-1]["wall_s"],
        "extra": {"tfppo_summary_sps": summary["sps"]},
    }
    return result_row(preset, "tfppo", seed, records, timing)


def random_policy_rate(preset: Preset, seed: int) -> float:
    """Env steps/s of random actions in a SyncVectorEnv like tfppo's (auto-reset in the same step)."""
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    env = gym.vector.SyncVectorEnv(
        [lambda: gym.make(preset.env)] * preset.num_envs, autoreset_mode=AutoresetMode.SAME_STEP
    )
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(100):  # warm-up
        env.step(env.action_space.sample())
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < RANDOM_SECONDS:
        for _ in range(100):
            env.step(env.action_space.sample())
        steps += 100 * preset.num_envs
    rate = steps / (time.perf_counter() - started)
    env.close()
    return rate


def available_tfppo_flags() -> set:
    result = subprocess.run(
        [sys.executable, "-m", "tfppo.train", "--helpfull"], cwd=REPO, capture_output=True, text=True
    )
    names = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", result.stdout, flags=re.MULTILINE))
    if "total_timesteps" not in names:
        fail(f"`{sys.executable} -m tfppo.train --helpfull` lists no flags: {result.stderr.strip()[-300:]}")
    return names


def mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def library_summary(env: str, library: str, rows: list, rates: list) -> dict:
    runs = [r for r in rows if r["env"] == env and r["library"] == library]
    sps = mean([r["sps"] for r in runs])
    rate = mean([r["rate"] for r in rates if r["env"] == env])
    return {
        "env": env,
        "library": library,
        "runs": len(runs),
        "sps_mean": sps,
        "sps": [r["sps"] for r in runs],
        "fraction_of_random": sps / rate if sps and rate else None,
        "reached": sum(r["reached_s"] is not None for r in runs),
        "reached_s": [r["reached_s"] for r in runs],
        "reached_step": [r["reached_step"] for r in runs],
        "final_last100": [r["final_last100"] for r in runs],
    }


def ratios(env: str, rows: list, baseline: str) -> list:
    """tfppo sps / baseline sps for every seed where both ran (runs next to each other in time)."""
    by_seed = {(r["library"], r["seed"]): r["sps"] for r in rows if r["env"] == env}
    seeds = sorted({seed for library, seed in by_seed if library == "tfppo"})
    return [by_seed["tfppo", s] / by_seed[baseline, s] for s in seeds if (baseline, s) in by_seed]


def summarise(presets: list, rows: list, rates: list) -> list:
    summary = []
    for name in presets:
        preset = PRESETS[name]
        for library in [label for label, _ in preset.sb3_variants] + ["tfppo"]:
            entry = library_summary(preset.env, library, rows, rates)
            if entry["runs"]:
                if library == "tfppo":
                    entry["ratio_vs_sb3"] = ratios(preset.env, rows, "sb3")
                    if any(label == "sb3_gsde" for label, _ in preset.sb3_variants):
                        entry["ratio_vs_sb3_gsde"] = ratios(preset.env, rows, "sb3_gsde")
                summary.append(entry)
    return summary


def fmt(value, spec: str = ".0f", none: str = "-") -> str:
    return none if value is None else format(value, spec)


def fmt_list(values: list, spec: str = ".0f", none: str = "not reached") -> str:
    return ", ".join(fmt(v, spec, none) for v in values)


def summary_line(entry: dict) -> str:
    ratio = entry.get("ratio_vs_sb3", [])
    ratio_cell = f"{fmt(mean(ratio), '.2f')} ({fmt_list(ratio, '.2f')})" if ratio else "-"
    cells = [
        LABELS[entry["library"]],
        f"{fmt(entry['sps_mean'])} ({fmt_list(entry['sps'])})",
        fmt(entry["fraction_of_random"], ".1%"),
        ratio_cell,
        f"{entry['reached']}/{entry['runs']}",
        fmt_list(entry["reached_s"]),
        fmt_list(entry["reached_step"]),
        fmt_list(entry["final_last100"], ".1f", "-"),
    ]
    return "| " + " | ".join(cells) + " |"


def preset_section(name: str, summary: list, rates: list, rows: list) -> list:
    preset = PRESETS[name]
    env_rates = [r["rate"] for r in rates if r["env"] == preset.env]
    steps = sorted({r["steps"] for r in rows if r["env"] == preset.env})
    lines = [
        f"## {preset.env} (threshold {preset.threshold:g}, {preset.num_envs} envs, "
        f"{'/'.join(map(str, steps))} env steps per run)",
        "",
        f"Random-policy rate (gymnasium SyncVectorEnv, {preset.num_envs} envs, random actions): "
        f"{fmt(mean(env_rates))} env steps/s (per seed: {fmt_list(env_rates)}).",
        "",
        f"| library | env steps/s: mean (per seed) | share of random-policy rate | tfppo / SB3 PPO: mean (per seed) "
        f"| reached {preset.threshold:g} | time to {preset.threshold:g}, s | steps to {preset.threshold:g} "
        "| final last-100 return |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in (e for e in summary if e["env"] == preset.env):
        lines.append(summary_line(entry))
    for entry in (e for e in summary if e["env"] == preset.env and e.get("ratio_vs_sb3_gsde")):
        gsde = entry["ratio_vs_sb3_gsde"]
        lines += ["", f"tfppo / SB3 PPO + gSDE (not the same algorithm), per seed: {fmt_list(gsde, '.2f')}."]
    return lines + [""]


def runs_table(rows: list) -> list:
    lines = [
        "## Every run, in the order they ran",
        "",
        "| env | library | seed | env steps | construction, s | total, s | env steps/s | reached at step | reached at, s | final last-100 return |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['env']} | {LABELS[r['library']]} | {r['seed']} | {r['steps']} | {r['construct_s']:.2f} "
            f"| {r['total_s']:.1f} | {r['sps']:.0f} | {fmt(r['reached_step'], 'd', 'not reached')} "
            f"| {fmt(r['reached_s'], '.1f', '-')} | {fmt(r['final_last100'], '.1f')} |"
        )
    return lines + [""]


def header(meta: dict, presets: list) -> list:
    sb3 = meta.get("sb3_versions") or {}
    flags = meta["tfppo_flags"]
    tfppo_flags = "; ".join(f"{p}: `{' '.join(flags[p])}`" for p in presets if p in flags) or "-"
    dirty = f" with uncommitted changes in {', '.join(meta['dirty'])}" if meta["dirty"] else ""
    return [
        "# Training speed: tfppo vs Stable-Baselines3 PPO",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"- Run started {meta['started']} on {meta['cpus']} CPUs; load average {meta['load_start']:.2f} at the "
        f"start, {meta['load_end']:.2f} at the end (the machine may be shared; one training process at a time).",
        f"- tfppo: commit {meta['commit']}{dirty}; tensorflow {meta['tensorflow']} (tfppo's default `--intra_op_threads=1`). Flags: {tfppo_flags}.",
        f"- SB3: stable-baselines3 {sb3.get('stable_baselines3', '-')}, torch {sb3.get('torch', '-')}, "
        f"{sb3.get('torch_threads', '-')} torch thread(s); runs in .venv-sb3.",
        "- Env steps/s = env steps / (construction of the vector env and the model + training); "
        "imports and tfppo's end-of-run checkpoint, SavedModel and plot are not timed.",
        "- The libraries alternate seed by seed; tfppo / SB3 PPO is taken per seed between neighbouring runs, "
        "against SB3 with the same plain Gaussian / categorical policy (no gSDE).",
        f"- Time and steps to threshold: the first update after which the mean undiscounted return of the last "
        f"{RETURN_WINDOW} training episodes was >= the threshold ({RETURN_WINDOW} episodes finished at least); "
        "time counted from construction start. Per-seed values in the order of --seeds "
        f"({', '.join(map(str, meta['seeds']))}).",
        "",
    ]


def write_outputs(out: str, meta: dict, presets: list, rows: list, rates: list) -> str:
    meta["load_end"] = os.getloadavg()[0]
    summary = summarise(presets, rows, rates)
    lines = header(meta, presets)
    for name in presets:
        if any(r["env"] == PRESETS[name].env for r in rows):
            lines += preset_section(name, summary, rates, rows)
    text = "\n".join(lines + runs_table(rows))
    with open(os.path.join(out, "results.md"), "w", encoding="utf-8") as f:
        f.write(text)
    results = {"meta": meta, "summary": summary, "random_policy_rates": rates, "runs": rows}
    with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)
    return text


def git(*args: str) -> str:
    # --no-optional-locks: `git status` must not refresh the index of a tree others are editing.
    result = subprocess.run(["git", "--no-optional-locks", *args], cwd=REPO, capture_output=True, text=True)
    return result.stdout.rstrip("\n") if result.returncode == 0 else "unknown"


def run_meta(args: argparse.Namespace, available: set) -> dict:
    dirty = git("status", "--porcelain", "--", "tfppo", "experiments")
    try:
        tensorflow = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tensorflow = "not installed"
    return {
        "command": " ".join([".venv/bin/python", "benchmarks/speed_vs_sb3.py", *sys.argv[1:]]),
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load_start": os.getloadavg()[0],
        "load_end": os.getloadavg()[0],
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": ["unknown (git failed)"]
        if dirty == "unknown"
        else [line[3:] for line in dirty.splitlines()],
        "tensorflow": tensorflow,
        "seeds": args.seeds,
        "tfppo_flags": {p: tfppo_flags(PRESETS[p], available) for p in args.presets if not args.skip_tfppo},
        "sb3_versions": None,
    }


def describe(row: dict, threshold: float) -> str:
    reached = (
        f"reached {threshold:g} at step {row['reached_step']} / {row['reached_s']:.1f} s"
        if row["reached_step"] is not None
        else f"did not reach {threshold:g}"
    )
    return (
        f"{row['env']} seed {row['seed']} {LABELS[row['library']]}: {row['steps']} steps in {row['total_s']:.1f} s "
        f"({row['sps']:.0f} steps/s; construction {row['construct_s']:.2f} s), last-100 return "
        f"{fmt(row['final_last100'], '.1f')}, {reached}"
    )


def run_seed(name: str, seed: int, args: argparse.Namespace, meta: dict, rundir: str):
    """Yields the rows of one seed: the SB3 variants, then tfppo, one process at a time."""
    preset = PRESETS[name]
    total = args.total_timesteps or preset.total_timesteps
    if not args.skip_sb3:
        for label, extra in preset.sb3_variants:
            row = run_sb3(preset, label, extra, seed, total, rundir)
            meta["sb3_versions"] = row["versions"]
            yield row
    if not args.skip_tfppo:
        yield run_tfppo(preset, meta["tfppo_flags"][name], seed, total, rundir)


def main() -> None:
    args = parse_args()
    available = set() if args.skip_tfppo else available_tfppo_flags()
    out = os.path.join(REPO, args.out)
    rundir = os.path.join(out, "runs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(rundir)
    meta = run_meta(args, available)
    rows, rates = [], []
    try:
        for name in args.presets:
            preset = PRESETS[name]
            for seed in args.seeds:
                rate = random_policy_rate(preset, seed)
                rates.append({"env": preset.env, "seed": seed, "rate": rate})
                print(f"{preset.env} seed {seed} random policy: {rate:.0f} steps/s", flush=True)
                for row in run_seed(name, seed, args, meta, rundir):
                    rows.append(row)
                    print(describe(row, preset.threshold), flush=True)
                    write_outputs(out, meta, args.presets, rows, rates)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print()
    print(write_outputs(out, meta, args.presets, rows, rates))
    print(f"wrote {os.path.join(out, 'results.md')}, results.json; logs in {rundir}")


if __name__ == "__main__":
    main()
