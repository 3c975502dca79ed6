r"""Training speed of tfppo against its peers: Stable-Baselines3, CleanRL and TF-Agents PPO.

  .venv/bin/python benchmarks/speed_vs_sb3.py --peers=sb3,cleanrl,tfagents \
      --cleanrl_dir=PATH/TO/cleanrl --presets=cartpole,pendulum,hopper --seeds=0,1,2 \
      --out=docs/benchmarks/speed_peers

Same hyperparameters (benchmarks/_speed_presets.py), same machine, one run. Each peer lives in
its own virtual environment next to tfppo's .venv (see benchmarks/README_speed.md for the one
command that makes each); a peer is never a dependency of tfppo. The name is historical: the
script began against SB3 alone, and `--peers` defaults to `sb3` so its first command still
measures what it did. On a recurrent preset (cartpole_novel_lstm) the SB3 peer is sb3-contrib's
RecurrentPPO (benchmarks/_sb3_recurrent_driver.py); CleanRL and TF-Agents skip it.

One process at a time, alternating libraries seed by seed (random-policy rates, SB3, CleanRL,
TF-Agents, tfppo, then the next seed), so a load change on a shared machine hits all of them.
Per preset it reports each library's env steps/s (env steps / (env and model construction +
training), imports excluded), tfppo / library per seed, the wall time and env step at which
the mean undiscounted return of the last 100 training episodes first reached the threshold, and
the random-action step rate of the env with the same number of envs, measured in the venv each
library steps. Writes results.md and results.json into --out; per-run logs go to
--out/runs/<time>/ (git-ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import os
import re
import shlex
import subprocess
import sys
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHMARKS)

from _speed_presets import (  # noqa: E402
    PRESETS,
    Preset,
    cleanrl_args,
    run_budget,
    sb3_kwargs,
    sb3_normalize,
    tfagents_hyper,
)
from _speed_report import LABELS, fmt, result_row, write_outputs  # noqa: E402

REPO = os.path.dirname(BENCHMARKS)
PEERS = ("sb3", "cleanrl", "tfagents")
VENVS = {
    "sb3": ".venv-sb3",
    "cleanrl": ".venv-cleanrl",
    "tfagents": ".venv-tfagents",
}
SB3_CONTRIB = "sb3-contrib==2.9.2"  # RecurrentPPO, for the recurrent presets
SETUP = {
    "sb3": "python3 -m venv .venv-sb3 && .venv-sb3/bin/pip install torch==2.13.0 "
    f"stable-baselines3==2.9.2 {SB3_CONTRIB} 'gymnasium[classic-control,mujoco]==1.4.0'",
    "cleanrl": "python3 -m venv .venv-cleanrl && .venv-cleanrl/bin/pip install torch==2.13.0 "
    "'gymnasium[mujoco]==0.29.1' 'numpy<2' tyro==1.0.17 tensorboard==2.21.0",
    "tfagents": "python3 -m venv .venv-tfagents && .venv-tfagents/bin/pip install tf-agents==0.19.0 "
    "tensorflow==2.15.1 tensorflow-probability==0.23.0 tf-keras==2.15.1 "
    "'gymnasium[classic-control,mujoco]==1.3.0'",
}
SB3_SETUP = SETUP["sb3"]
# The Atari preset's extra packages in each peer's venv (ale-py 0.9 is the first with its ROMs
# inside and the last for CleanRL's gymnasium 0.29; OpenCV for the wrappers' resize).
ATARI_SETUP = {
    "sb3": ".venv-sb3/bin/pip install ale-py==0.12.1 opencv-python-headless==5.0.0.93",
    "cleanrl": ".venv-cleanrl/bin/pip install ale-py==0.9.1 'opencv-python-headless==4.11.0.86'",
    "tfagents": ".venv-tfagents/bin/pip install ale-py==0.12.1 'opencv-python-headless==4.11.0.86'",
}
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


class BenchmarkError(RuntimeError):
    """A training subprocess failed or wrote no usable output; the message names its log."""


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def venv_python(peer: str) -> str:
    return os.path.join(REPO, VENVS[peer], "bin", "python")


def parse_timesteps(text: str) -> dict:
    """`N` (every preset) or `preset=N,...` -> {preset or "*": N}; 0 keeps the preset's budget."""
    budgets = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.rpartition("=")
        if name and name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}")
        budgets[name or "*"] = int(value)
        if budgets[name or "*"] < 0:
            raise ValueError(f"{item}: must be >= 0")
    return budgets


def parse_thresholds(text: str) -> dict:
    """`preset=R,...` -> {preset: R}: return thresholds replacing the presets' own."""
    thresholds = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}")
        thresholds[name] = float(value)
    return thresholds


def budget(args: argparse.Namespace, name: str) -> int:
    return args.total_timesteps.get(name) or args.total_timesteps.get("*") or PRESETS[name].total_timesteps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parses and checks the command line; whether the peers are installed is checked by main."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--presets", default="cartpole,pendulum", help=f"comma separated: {', '.join(PRESETS)}"
    )
    parser.add_argument("--peers", default="sb3", help=f"comma separated: {', '.join(PEERS)}; or none")
    parser.add_argument("--seeds", default="0,1,2", help="comma separated integers")
    parser.add_argument(
        "--out", default="docs/benchmarks/speed", help="results directory (relative to the repo)"
    )
    parser.add_argument(
        "--total_timesteps",
        default="0",
        help="env steps per run for every library: N for every preset or preset=N,... (0: the preset's)",
    )
    parser.add_argument(
        "--thresholds", default="", help="preset=R,...: return thresholds instead of the presets' own"
    )
    parser.add_argument(
        "--cleanrl_dir",
        default="",
        help="a CleanRL checkout, or a folder holding its ppo.py and ppo_continuous_action.py",
    )
    parser.add_argument(
        "--tfppo_dir", default=REPO, help="the tfppo source tree to run (default: this repository)"
    )
    parser.add_argument(
        "--tfppo_commit", default="", help="commit to report when --tfppo_dir is not a git tree"
    )
    parser.add_argument("--note", default="", help="a sentence for results.md (e.g. the machine was shared)")
    parser.add_argument("--skip_sb3", action="store_true", help="drop sb3 from --peers")
    parser.add_argument("--skip_tfppo", action="store_true", help="run the peers only")
    parser.add_argument(
        "--envpool",
        action="store_true",
        help="also run tfppo with --vector_mode=envpool after tfppo (non-Atari presets; envpool "
        "installed in tfppo's venv) and measure EnvPool's random-policy rate",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="also run tfppo with --compute_dtype=bfloat16 after tfppo (its torso in bfloat16; "
        "pays for CNNs on CPUs with bfloat16 instructions)",
    )
    args = parser.parse_args(argv)
    args.presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in args.presets if p not in PRESETS]
    if unknown or not args.presets:
        fail(
            f"--presets: unknown preset {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(PRESETS)}"
        )
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        fail(f"--peers: unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)} or none")
    if args.skip_sb3:
        args.peers = [p for p in args.peers if p != "sb3"]
    try:
        args.seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        fail(f"--seeds={args.seeds!r} must be comma separated integers, e.g. 0,1,2")
    try:
        args.total_timesteps = parse_timesteps(args.total_timesteps)
    except ValueError as error:
        fail(f"--total_timesteps={args.total_timesteps!r}: {error}; give N or preset=N,... (N >= 0)")
    try:
        args.thresholds = parse_thresholds(args.thresholds)
    except ValueError as error:
        fail(f"--thresholds={args.thresholds!r}: {error}; give preset=R,... (R a number)")
    if args.skip_tfppo and not args.peers:
        fail("--skip_tfppo without a peer leaves nothing to run")
    if args.skip_tfppo and (args.bf16 or args.envpool):
        fail("--bf16 and --envpool add tfppo runs; they cannot go with --skip_tfppo")
    args.tfppo_dir = os.path.abspath(args.tfppo_dir)
    return args


def cleanrl_script(cleanrl_dir: str, name: str) -> str:
    """The path of one CleanRL script in a checkout (cleanrl/NAME) or a plain folder (NAME)."""
    for path in (os.path.join(cleanrl_dir, "cleanrl", name), os.path.join(cleanrl_dir, name)):
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"--cleanrl_dir={cleanrl_dir} holds neither cleanrl/{name} nor {name}")


def check_peers(args: argparse.Namespace) -> None:
    """Stops with exit code 2 and the setup command when a requested peer is not installed."""
    for peer in args.peers:
        if not os.path.isfile(venv_python(peer)):
            fail(f"{venv_python(peer)} is missing; create it from the repository root with: {SETUP[peer]}")
    if "sb3" in args.peers and any(PRESETS[name].hyper.recurrent for name in args.presets):
        if subprocess.run([venv_python("sb3"), "-c", "import sb3_contrib"], capture_output=True).returncode:
            fail(f"recurrent presets need sb3-contrib: {VENVS['sb3']}/bin/pip install {SB3_CONTRIB}")
    if any(PRESETS[name].atari for name in args.presets):
        for peer in set(args.peers) & set(ATARI_SETUP):
            if subprocess.run(
                [venv_python(peer), "-c", "import ale_py, cv2"], capture_output=True
            ).returncode:
                fail(f"Atari presets need ale-py and OpenCV in {VENVS[peer]}: {ATARI_SETUP[peer]}")
    if "cleanrl" in args.peers:
        if not args.cleanrl_dir:
            fail("--peers=cleanrl needs --cleanrl_dir=a CleanRL checkout (git clone of vwxyzjn/cleanrl)")
        for name in args.presets:
            if PRESETS[name].cleanrl_script:
                try:
                    cleanrl_script(args.cleanrl_dir, PRESETS[name].cleanrl_script)
                except FileNotFoundError as error:
                    fail(str(error))
    if not args.skip_tfppo and not os.path.isfile(os.path.join(args.tfppo_dir, "tfppo", "train.py")):
        fail(f"--tfppo_dir={args.tfppo_dir} holds no tfppo/train.py")
    if (
        args.envpool
        and subprocess.run([sys.executable, "-c", "import envpool"], capture_output=True).returncode
    ):
        fail(f"--envpool needs envpool in tfppo's venv: {sys.executable} -m pip install envpool==1.2.5")


def run_command(command: list, log_path: str, what: str, cwd: str = REPO, env: dict | None = None) -> None:
    """Runs one training process; its stdout and stderr go to log_path."""
    with open(log_path, "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
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


def row(name: str, env: str, library: str, seed: int, records: list, timing: dict) -> dict:
    try:
        return result_row(name, env, library, seed, records, timing)
    except ValueError as error:
        raise BenchmarkError(str(error)) from None


def run_sb3(name: str, label: str, extra: dict, seed: int, total: int, rundir: str) -> dict:
    preset = PRESETS[name]
    stem = os.path.join(rundir, f"{name}_{label}_seed{seed}")
    env = preset.sb3_env or preset.env
    driver = "_sb3_recurrent_driver.py" if preset.hyper.recurrent else "_sb3_driver.py"
    command = [
        venv_python("sb3"),
        os.path.join(BENCHMARKS, driver),
        f"--env={env}",
        f"--num_envs={preset.num_envs}",
        f"--seed={seed}",
        f"--total_timesteps={total}",
        f"--hyper={json.dumps({**sb3_kwargs(preset.hyper, preset.atari), **extra})}",
        f"--records={stem}.jsonl",
        f"--summary={stem}.json",
        *(["--atari"] if preset.atari else []),
    ]
    normalize = sb3_normalize(preset.hyper)
    if normalize:
        command.append(f"--normalize={json.dumps(normalize)}")
    run_command(command, stem + ".log", f"{LABELS[label]} on {env} seed {seed}")
    summary = read_json(stem + ".json", label)
    timing = {key: summary[key] for key in ("steps", "construct_s", "total_s")}
    versions = ("stable_baselines3", "sb3_contrib", "torch", "torch_threads", "gymnasium")
    timing["extra"] = {"versions": {k: summary.get(k) for k in versions}}
    return row(name, env, label, seed, read_json(stem + ".jsonl", label), timing)


def run_cleanrl(name: str, seed: int, total: int, rundir: str, cleanrl_dir: str) -> dict:
    preset = PRESETS[name]
    stem = os.path.join(rundir, f"{name}_cleanrl_seed{seed}")
    workdir = stem + "_cwd"  # the script writes runs/<run_name>/ (TensorBoard) here
    os.makedirs(workdir, exist_ok=True)
    command = [
        venv_python("cleanrl"),
        os.path.join(BENCHMARKS, "_cleanrl_driver.py"),
        f"--script={cleanrl_script(cleanrl_dir, preset.cleanrl_script)}",
        f"--records={stem}.jsonl",
        f"--summary={stem}.json",
        "--",
        *cleanrl_args(preset, seed, total),
    ]
    env = preset.cleanrl_env or preset.env
    run_command(command, stem + ".log", f"CleanRL on {env} seed {seed}", cwd=workdir)
    summary = read_json(stem + ".json", "cleanrl")
    timing = {key: summary[key] for key in ("steps", "construct_s", "total_s")}
    versions = ("torch", "torch_threads", "gymnasium", "script_sha256")
    timing["extra"] = {"versions": {k: summary[k] for k in versions}}
    return row(name, env, "cleanrl", seed, read_json(stem + ".jsonl", "cleanrl"), timing)


def tfagents_command(name: str, seed: int, total: int, stem: str, tfppo_dir: str) -> list:
    """The driver's command line; tfppo_dir: the Atari preset's env is that tree's tfppo/Atari-v0."""
    preset = PRESETS[name]
    command = [
        venv_python("tfagents"),
        os.path.join(BENCHMARKS, "_tfagents_driver.py"),
        f"--env={preset.env}",
        f"--num_envs={preset.num_envs}",
        f"--seed={seed}",
        f"--total_timesteps={total}",
        f"--hyper={json.dumps(tfagents_hyper(preset.hyper))}",
        f"--records={stem}.jsonl",
        f"--summary={stem}.json",
    ]
    if preset.env_kwargs:
        command.append(f"--env_kwargs={json.dumps(dict(preset.env_kwargs))}")
    if preset.atari:
        command += ["--atari", f"--tfppo_dir={tfppo_dir}"]
    return command


def run_tfagents(name: str, seed: int, total: int, rundir: str, tfppo_dir: str) -> dict:
    preset = PRESETS[name]
    stem = os.path.join(rundir, f"{name}_tfagents_seed{seed}")
    command = tfagents_command(name, seed, total, stem, tfppo_dir)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run_command(command, stem + ".log", f"TF-Agents on {preset.env} seed {seed}", env=env)
    summary = read_json(stem + ".json", "tfagents")
    timing = {key: summary[key] for key in ("steps", "construct_s", "total_s")}
    versions = ("tf_agents", "tensorflow", "intra_op_threads", "gymnasium")
    timing["extra"] = {
        "versions": {k: summary[k] for k in versions},
        "gradient_steps": summary["gradient_steps"],
    }
    return row(name, preset.env, "tfagents", seed, read_json(stem + ".jsonl", "tfagents"), timing)


def tfppo_flags(preset: Preset, available: set) -> list:
    optional = [flag for flag in preset.tfppo_optional if flag.lstrip("-").split("=")[0] in available]
    return [*preset.tfppo_flags, *optional]


def tfppo_env(tfppo_dir: str) -> dict:
    """The environment of a tfppo process: the tree in --tfppo_dir first on the import path."""
    path = os.environ.get("PYTHONPATH")
    return dict(os.environ, PYTHONPATH=tfppo_dir + (os.pathsep + path if path else ""))


def run_tfppo(
    name: str, flags: list, seed: int, total: int, rundir: str, tfppo_dir: str, library: str = "tfppo"
) -> dict:
    """library: "tfppo", or a variant's (tfppo_envpool, tfppo_bf16) with its flag in `flags`."""
    preset = PRESETS[name]
    stem = os.path.join(rundir, f"{name}_{library}_seed{seed}")
    logdir, timing_path = stem, stem + ".timing.json"
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
    run_command(command, stem + ".log", f"tfppo on {preset.env} seed {seed}", tfppo_dir, tfppo_env(tfppo_dir))
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
    return row(name, preset.env, library, seed, records, timing)


def random_policy_rate(
    python: str, env: str, num_envs: int, seed: int, rundir: str, tfppo_dir: str, vector: str = "gymnasium"
) -> dict:
    """Random actions in a SyncVectorEnv under the given interpreter (that venv's gymnasium), or
    in EnvPool's pool of the same id (vector="envpool"); a tfppo/... env is registered by
    importing tfppo.envs from tfppo_dir (gymnasium's module:id)."""
    log = os.path.join(rundir, f"random_{os.path.basename(os.path.dirname(os.path.dirname(python)))}.log")
    command = [
        python,
        os.path.join(BENCHMARKS, "_random_policy.py"),
        f"--env={'tfppo.envs:' if env.startswith('tfppo/') else ''}{env}",
        f"--num_envs={num_envs}",
        f"--seed={seed}",
        f"--seconds={RANDOM_SECONDS}",
        f"--vector={vector}",
    ]
    with open(log, "a", encoding="utf-8") as f:
        result = subprocess.run(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=f, text=True, env=tfppo_env(tfppo_dir)
        )
    if result.returncode != 0:
        raise BenchmarkError(f"random policy on {env} under {python} failed (output: {log})")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "env": env}


def available_tfppo_flags(tfppo_dir: str) -> set:
    result = subprocess.run(
        [sys.executable, "-m", "tfppo.train", "--helpfull"],
        cwd=tfppo_dir,
        env=tfppo_env(tfppo_dir),
        capture_output=True,
        text=True,
    )
    names = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", result.stdout, flags=re.MULTILINE))
    if "total_timesteps" not in names:
        fail(f"`{sys.executable} -m tfppo.train --helpfull` lists no flags: {result.stderr.strip()[-300:]}")
    return names


def git(cwd: str, *args: str) -> str:
    # --no-optional-locks: `git status` must not refresh the index of a tree others are editing.
    result = subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True, text=True)
    return result.stdout.rstrip("\n") if result.returncode == 0 else "unknown"


def source_commit(path: str) -> str:
    """The commit of a git checkout, else the first line of a COMMIT file there, else unknown."""
    if os.path.isdir(os.path.join(path, ".git")):
        return git(path, "rev-parse", "--short", "HEAD")
    commit_file = os.path.join(path, "COMMIT")
    if os.path.isfile(commit_file):
        with open(commit_file, encoding="utf-8") as f:
            return f.readline().strip()[:12] or "unknown"
    return "unknown"


def command_line(argv: list[str]) -> str:
    """The command as typed, quoted for a shell; --note's text is shown apart, not repeated."""
    shown = ['--note="..."' if arg.startswith("--note=") else shlex.quote(arg) for arg in argv]
    return " ".join([".venv/bin/python", "benchmarks/speed_vs_sb3.py", *shown])


def run_meta(args: argparse.Namespace, available: set) -> dict:
    in_git = os.path.isdir(os.path.join(args.tfppo_dir, ".git"))
    dirty = git(args.tfppo_dir, "status", "--porcelain", "--", "tfppo", "experiments") if in_git else ""
    try:
        tensorflow = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        tensorflow = "not installed"
    return {
        "command": command_line(sys.argv[1:]),
        "note": args.note,
        "started": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "load_start": os.getloadavg()[0],
        "load_end": os.getloadavg()[0],
        "commit": args.tfppo_commit
        or (git(args.tfppo_dir, "rev-parse", "--short", "HEAD") if in_git else "unknown"),
        "tfppo_dir": args.tfppo_dir,
        "dirty": ["unknown (git failed)"]
        if dirty == "unknown"
        else [line[3:] for line in dirty.splitlines()],
        "tensorflow": tensorflow,
        "seeds": args.seeds,
        "peers": args.peers,
        "budgets": {name: budget(args, name) for name in args.presets},
        "thresholds": {name: PRESETS[name].threshold for name in args.presets},
        "tfppo_flags": {p: tfppo_flags(PRESETS[p], available) for p in args.presets if not args.skip_tfppo},
        "cleanrl_dir": args.cleanrl_dir,
        "cleanrl_commit": source_commit(args.cleanrl_dir) if args.cleanrl_dir else None,
        "versions": {},
    }


def describe(r: dict) -> str:
    threshold = PRESETS[r["preset"]].threshold
    reached = (
        f"reached {threshold:g} at step {r['reached_step']} / {r['reached_s']:.1f} s"
        if r["reached_step"] is not None
        else f"did not reach {threshold:g}"
    )
    return (
        f"{r['env']} seed {r['seed']} {LABELS[r['library']]}: {r['steps']} steps in {r['total_s']:.1f} s "
        f"({r['sps']:.0f} steps/s; construction {r['construct_s']:.2f} s), last-100 return "
        f"{fmt(r['final_last100'], '.1f')}, {reached}"
    )


def with_envpool(args: argparse.Namespace, preset: Preset) -> bool:
    """--envpool's extra tfppo run and random rate, for every preset but Atari's."""
    return args.envpool and not preset.atari


def run_seed(name: str, seed: int, args: argparse.Namespace, meta: dict, rundir: str):
    """Yields the rows of one seed: SB3's variants, CleanRL, TF-Agents, then tfppo, one at a time."""
    preset = PRESETS[name]
    total = budget(args, name)
    if "sb3" in args.peers:
        for label, extra in preset.sb3_variants:
            yield run_sb3(name, label, extra, seed, total, rundir)
    if "cleanrl" in args.peers and preset.cleanrl_script:
        yield run_cleanrl(name, seed, total, rundir, args.cleanrl_dir)
    if "tfagents" in args.peers and preset.tfagents:
        yield run_tfagents(name, seed, total, rundir, args.tfppo_dir)
    if not args.skip_tfppo:
        yield run_tfppo(name, meta["tfppo_flags"][name], seed, total, rundir, args.tfppo_dir)
    if with_envpool(args, preset):
        flags = [*meta["tfppo_flags"][name], "--vector_mode=envpool"]
        yield run_tfppo(name, flags, seed, total, rundir, args.tfppo_dir, library="tfppo_envpool")
    if args.bf16:
        flags = [*meta["tfppo_flags"][name], "--compute_dtype=bfloat16"]
        yield run_tfppo(name, flags, seed, total, rundir, args.tfppo_dir, library="tfppo_bf16")


def measure_rates(name: str, seed: int, args: argparse.Namespace, rundir: str) -> list:
    preset = PRESETS[name]
    sources = [("main", sys.executable, preset.env, "gymnasium")]
    if "cleanrl" in args.peers and preset.cleanrl_script and not preset.atari:
        sources.append(("cleanrl", venv_python("cleanrl"), preset.cleanrl_env or preset.env, "gymnasium"))
    if with_envpool(args, preset):
        sources.append(("envpool", sys.executable, preset.env, "envpool"))
    rates = []
    for source, python, env, vector in sources:
        measured = random_policy_rate(python, env, preset.num_envs, seed, rundir, args.tfppo_dir, vector)
        rates.append({"preset": name, "seed": seed, "source": source, **measured})
        where = "EnvPool, tfppo's venv" if source == "envpool" else f"{source} venv"
        print(f"{env} seed {seed} random policy ({where}): {measured['rate']:.0f} steps/s", flush=True)
    return rates


def main() -> None:
    args = parse_args()
    check_peers(args)
    for name, threshold in args.thresholds.items():
        PRESETS[name] = dataclasses.replace(PRESETS[name], threshold=threshold)
    available = set() if args.skip_tfppo else available_tfppo_flags(args.tfppo_dir)
    if args.bf16 and "compute_dtype" not in available:
        fail(f"--bf16: the tfppo in {args.tfppo_dir} has no --compute_dtype flag")
    out = os.path.join(REPO, args.out)
    rundir = os.path.join(out, "runs", time.strftime("%Y%m%d-%H%M%S"))
    os.makedirs(rundir)
    meta = run_meta(args, available)
    rows, rates = [], []
    try:
        for name in args.presets:
            print(
                f"{name}: {run_budget(PRESETS[name].hyper, budget(args, name))} env steps per run", flush=True
            )
            for seed in args.seeds:
                rates += measure_rates(name, seed, args, rundir)
                for result in run_seed(name, seed, args, meta, rundir):
                    rows.append(result)
                    if "versions" in result:
                        versions = meta["versions"].setdefault(result["library"].split("_")[0], {})
                        versions.update({k: v for k, v in result["versions"].items() if v is not None})
                    print(describe(result), flush=True)
                    write_outputs(out, meta, args.presets, rows, rates)
    except BenchmarkError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    print()
    print(write_outputs(out, meta, args.presets, rows, rates))
    print(f"wrote {os.path.join(out, 'results.md')}, results.json; logs in {rundir}")


if __name__ == "__main__":
    main()
