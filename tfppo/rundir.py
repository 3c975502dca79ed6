"""The run directory: its file names and the new-or-resume rules, in one place (no TensorFlow).

Every run, started by `python -m tfppo.train` or by `tfppo.train(...)` from Python, gets the
same layout:

  LOGDIR/flags.json         the resolved Config (every field)
  LOGDIR/env.json           how the env was made (an id and its kwargs, or a Python factory)
                            and the spec the networks were built for
  LOGDIR/checkpoints/       tf.train.CheckpointManager's checkpoints (the last 3)
  LOGDIR/metrics.jsonl      one object per update
  LOGDIR/episodes.csv       one row per finished episode
  LOGDIR/summary.json       the end of the run: counters, evaluation, paths
  LOGDIR/learning_curve.png
  LOGDIR/saved_model/       the exported policy (tfppo.export)
  LOGDIR/best/saved_model/  the best policy of the periodic evaluations (--eval_every)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from tfppo.config import Config, ConfigError

FLAGS_FILE = "flags.json"
ENV_FILE = "env.json"
CHECKPOINT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
EPISODES_FILE = "episodes.csv"
SUMMARY_FILE = "summary.json"
LEARNING_CURVE_FILE = "learning_curve.png"
SAVED_MODEL_DIR = "saved_model"
BEST_DIR = "best"

# Settings that may change when a run is resumed (a longer budget, another evaluation).
RESUMABLE = frozenset(
    {
        "resume",
        "total_timesteps",
        "max_episodes",
        "eval_episodes",
        "eval_every",
        "eval_every_episodes",
        "checkpoint_every",
        "logdir",
    }
)


def path(logdir: str, name: str) -> str:
    return os.path.join(logdir, name)


def checkpoints(logdir: str) -> list[str]:
    """Checkpoint prefixes (LOGDIR/checkpoints/ckpt-N) whose index file exists, newest first.

    Read from the files themselves, not CheckpointManager's index, so a corrupt index or a
    deleted checkpoint still leaves the others to fall back to.
    """
    directory = path(logdir, CHECKPOINT_DIR)
    numbers = []
    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        stem, _, number = name.removesuffix(".index").rpartition("-")
        if name.endswith(".index") and stem == "ckpt" and number.isdigit():
            numbers.append(int(number))
    return [os.path.join(directory, f"ckpt-{n}") for n in sorted(numbers, reverse=True)]


def has_checkpoint(logdir: str) -> bool:
    return bool(checkpoints(logdir))


def is_run(logdir: str) -> bool:
    return os.path.isfile(path(logdir, FLAGS_FILE))


def default_logdir(config: Config) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in config.env).strip("_")
    return os.path.join("runs", f"{name}_{config.method}_seed{config.seed}_{stamp}")


def read_json(logdir: str, name: str) -> dict:
    file = path(logdir, name)
    try:
        with open(file, encoding="utf-8") as f:
            values = json.load(f)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot read {file}: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{file} holds {type(values).__name__}; expected a JSON object")
    return values


def read_config(logdir: str) -> Config:
    """The Config a run was started with (flags.json)."""
    values = read_json(logdir, FLAGS_FILE)
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(Config)})
    if unknown:
        raise ConfigError(f"{path(logdir, FLAGS_FILE)} has unknown settings {unknown}")
    return Config.from_dict(values)


def read_env(logdir: str) -> dict | None:
    """env.json, or None for a run written before tfppo recorded it."""
    return read_json(logdir, ENV_FILE) if os.path.isfile(path(logdir, ENV_FILE)) else None


def resolve(config: Config, explicit: set[str], chief: bool = True) -> Config:
    """The run's Config with its logdir, checked against what the logdir holds. Writes nothing.

    A new run needs a new (or empty) logdir. `config.resume` takes the saved settings; of the
    `explicit` ones (given on the command line, or differing from the defaults in Python) only
    RESUMABLE may differ from them, and only those given replace the saved values. A non-chief worker skips the new-logdir check: the chief makes it.
    """
    if config.resume and not config.logdir:  # a new default name would never hold the run
        raise ConfigError("--resume needs --logdir: the directory of the run to continue")
    logdir = config.logdir or default_logdir(config)
    _check_directory(logdir)
    if config.resume:
        if not is_run(logdir):
            raise ConfigError(f"--resume: no tfppo run in --logdir={logdir!r} (no {FLAGS_FILE})")
        saved = read_config(logdir)
        changed = sorted(n for n in explicit - RESUMABLE if getattr(config, n) != getattr(saved, n))
        if changed:
            raise ConfigError(
                f"--resume keeps the run's settings, but {', '.join('--' + n for n in changed)} "
                f"differ from {path(logdir, FLAGS_FILE)}; only {', '.join(sorted(RESUMABLE))} may change"
            )
        # A setting not given keeps its saved value (the budget, the checkpoint interval, ...).
        given = (explicit & RESUMABLE) | {"resume"}
        config = dataclasses.replace(saved, **{name: getattr(config, name) for name in given})
    elif chief and os.path.isdir(logdir) and os.listdir(logdir):
        if is_run(logdir) and not has_checkpoint(logdir):
            raise ConfigError(
                f"--logdir={logdir!r} holds a run that stopped before its first checkpoint; pass "
                "--resume to start it again with its saved settings, or choose a new --logdir"
            )
        raise ConfigError(
            f"--logdir={logdir!r} already holds files; pass --resume to continue that run, or choose a new --logdir"
        )
    return dataclasses.replace(config, logdir=logdir)


def _check_directory(logdir: str) -> None:
    """The logdir and every existing ancestor must be directories."""
    current = os.path.abspath(logdir)
    while True:
        if os.path.exists(current) and not os.path.isdir(current):
            what = "is" if current == os.path.abspath(logdir) else f"is under {current!r}, which is"
            raise ConfigError(f"--logdir={logdir!r} {what} a file; expected a directory")
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def _rewrite(file: str, keep) -> int:
    """Keeps the lines `keep(line)` accepts (a torn last line never); returns how many were dropped."""
    if not os.path.isfile(file):
        return 0
    with open(file, encoding="utf-8", errors="replace") as f:
        lines = f.readlines()
    kept = [line for line in lines if line.endswith("\n") and keep(line)]
    if len(kept) != len(lines):
        staging = file + ".partial"
        with open(staging, "w", encoding="utf-8") as f:
            f.writelines(kept)
        os.replace(staging, file)
    return len(lines) - len(kept)


def truncate_logs(logdir: str, updates: int, global_step: int) -> int:
    """After a restore: drops metrics.jsonl rows past update `updates` and episodes.csv rows past
    env step `global_step` (what a killed run logged after its last checkpoint), and torn lines,
    so each log holds exactly one row per update / episode. Returns the rows dropped."""

    def metrics_row(line: str) -> bool:
        try:
            return int(json.loads(line)["update"]) <= updates
        except (ValueError, KeyError, TypeError):
            return False

    def episode_row(line: str) -> bool:
        first = line.split(",", 1)[0]
        if first == "global_step":
            return True  # the header
        try:
            return int(first) <= global_step and len(line.split(",")) == 3
        except ValueError:
            return False

    return _rewrite(path(logdir, METRICS_FILE), metrics_row) + _rewrite(
        path(logdir, EPISODES_FILE), episode_row
    )


def write_new(logdir: str, config: Config, env_record: dict) -> None:
    """flags.json and env.json of a starting (or resumed) run; each written whole, then renamed.

    A filesystem that refuses (read-only, full) is a ConfigError naming the file.
    """
    for name, values in ((FLAGS_FILE, config.to_dict()), (ENV_FILE, env_record)):
        staging = path(logdir, name + ".partial")
        try:
            os.makedirs(logdir, exist_ok=True)
            with open(staging, "w", encoding="utf-8") as f:
                json.dump(values, f, indent=2)
            os.replace(staging, path(logdir, name))
        except OSError as error:
            if os.path.exists(staging):
                os.remove(staging)
            raise ConfigError(f"cannot write {path(logdir, name)}: {error.strerror or error}") from None
