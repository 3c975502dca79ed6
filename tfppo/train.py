"""Train a PPO agent: `python -m tfppo.train [--flagfile=experiments/NAME.flags] [--FLAG=VALUE ...]`.

With no flags it trains the default experiment (CartPole-v1, clipped surrogate). Errors a user
can fix print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

from absl import app, flags, logging

from tfppo import flags as flags_lib

flags_lib.define_flags()
FLAGS = flags.FLAGS

# Flags that may change when a run is resumed (a longer budget, another evaluation).
RESUMABLE = {"resume", "total_timesteps", "max_episodes", "eval_episodes", "checkpoint_every", "logdir"}
FLAGS_FILE = "flags.json"


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


HELP_FLAGS = ("-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def parse_flags(argv):
    """absl parsing with a one-line error and exit code 2 (absl's own exits with 1); help exits 0."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        fail(f"{error}; see --helpfull")
    except SystemExit as exit_:
        if any(arg in HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)
        raise exit_


def default_logdir(config) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return os.path.join("runs", f"{config.env}_{config.method}_seed{config.seed}_{stamp}")


def resolve(config_lib, trainer, chief: bool = True):
    """Flags -> (config, logdir), checking the logdir against --resume. Writes nothing.

    A non-chief worker of a multi-worker run skips the new-logdir check: the chief makes it.
    """
    config = flags_lib.to_config(FLAGS)
    logdir = config.logdir or default_logdir(config)
    saved_path = os.path.join(logdir, FLAGS_FILE)
    if config.resume:
        if not trainer.has_checkpoint(logdir) or not os.path.isfile(saved_path):
            raise config_lib.ConfigError(f"--resume: no checkpoint of a tfppo run in --logdir={logdir!r}")
        with open(saved_path, encoding="utf-8") as f:
            saved = json.load(f)
        saved = config_lib.Config.from_dict(saved).to_dict()
        changed = sorted(
            name
            for name in flags_lib.explicitly_set(FLAGS) - RESUMABLE
            if getattr(config, name) != saved[name]
        )
        if changed:
            raise config_lib.ConfigError(
                f"--resume keeps the run's settings, but {', '.join('--' + n for n in changed)} "
                f"differ from {saved_path}; only {', '.join(sorted(RESUMABLE))} may change"
            )
        overrides = {name: getattr(config, name) for name in RESUMABLE}
        config = dataclasses.replace(config_lib.Config(**saved), **overrides)
    elif chief and os.path.isdir(logdir) and os.listdir(logdir):
        raise config_lib.ConfigError(
            f"--logdir={logdir!r} already holds files; pass --resume to continue that run, or choose a new --logdir"
        )
    return dataclasses.replace(config, logdir=logdir), logdir


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected argument {argv[1]!r}; flags look like --name=value (see --helpfull)")
    logging.set_verbosity(logging.WARNING)  # TF's checkpoint INFO lines are noise here.
    # Heavy imports after flag parsing, so --help and flag errors are instant.
    from tfppo import config as config_lib
    from tfppo import distributed, envs, trainer

    try:
        cluster = distributed.cluster_from_env()  # From TF_CONFIG; None: one process.
        chief = cluster is None or cluster.is_chief
        config, logdir = resolve(config_lib, trainer, chief)
        envs.probe_spec(config.env)  # Before anything is written.
        strategy = None
        if cluster is not None:  # Before TensorFlow runs any op.
            trainer.configure_threads(config)
            strategy = distributed.make_strategy()
        if chief:
            os.makedirs(logdir, exist_ok=True)
            with open(os.path.join(logdir, FLAGS_FILE), "w", encoding="utf-8") as f:
                json.dump(config.to_dict(), f, indent=2)
        summary = trainer.train(config, logdir, cluster, strategy)
    except (config_lib.ConfigError, trainer.TrainingError) as error:
        fail(str(error))
    if not chief:
        print(
            f"worker {summary['worker']} finished at env step {summary['global_step']}; "
            f"weights digest {summary['weights_digest']}",
            flush=True,
        )
        return
    print_summary(summary)
    if cluster is not None:
        print(f"  workers {cluster.num_workers}; weights digest {summary['weights_digest']}", flush=True)


def print_summary(summary) -> None:
    def number(value, fmt=".1f"):
        return "n/a" if value is None else format(value, fmt)

    lines = [
        f"finished {summary['env']} ({summary['method']}, seed {summary['seed']}) in {summary['wall_s']:.0f} s",
        f"  env steps {summary['global_step']}, episodes {summary['episodes']}, {summary['sps']:.0f} steps/s",
        f"  return (last 100 episodes) {number(summary['episode_return_mean'])}, best {number(summary['best_return_mean'])}",
        f"  evaluation over {summary['eval_episodes']} episodes: {number(summary['eval_return_mean'])} +- {number(summary['eval_return_std'])}",
        f"  logdir {summary['logdir']} (tensorboard --logdir {summary['logdir']})",
        f"  checkpoint {summary['checkpoint']}",
        f"  SavedModel {summary['saved_model']} (python -m tfppo.evaluate --saved_model={summary['saved_model']})",
    ]
    if summary.get("learning_curve"):
        lines.append(f"  learning curve {summary['learning_curve']}")
    print("\n".join(lines), flush=True)


def run() -> None:
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run()
