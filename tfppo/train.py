"""Train a PPO agent: `python -m tfppo.train [--flagfile=experiments/NAME.flags] [--FLAG=VALUE ...]`.

With no flags it trains the default experiment (CartPole-v1, clipped surrogate). Errors a user
can fix print one line on stderr and exit with code 2.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging

from tfppo import flags as flags_lib
from tfppo import rundir, signals
from tfppo.config import ConfigError

flags_lib.define_flags()
FLAGS = flags.FLAGS


def fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


HELP_FLAGS = ("-?", "--help", "--helpshort", "--helpfull", "--helpxml")


def parse_flags(argv):
    """absl parsing with a one-line error and exit code 2 (absl's own exits with 1); help exits 0."""
    try:
        return FLAGS(argv)
    except flags.Error as error:  # absl prefixes some (a missing --flagfile) with "ERROR:: "
        fail(f"{str(error).removeprefix('ERROR:: ')}; see --helpfull")
    except SystemExit as exit_:
        if any(arg in HELP_FLAGS for arg in argv[1:]):
            sys.exit(0)
        raise exit_


def interrupted(interrupt: KeyboardInterrupt, logdir: str) -> None:
    """A stop signal outside the training loop (which checkpoints itself): one line, exit 2."""
    name = getattr(interrupt, "signal_name", "SIGINT")
    found = rundir.checkpoints(logdir) if logdir else []
    kept = f"the last checkpoint, {found[0]}, is kept" if found else "no checkpoint was written"
    fail(f"interrupted ({name}) outside the training loop; {kept}; continue with --resume")


def main(argv) -> None:
    if len(argv) > 1:
        fail(f"unexpected argument {argv[1]!r}; flags look like --name=value (see --helpfull)")
    logging.set_verbosity(logging.WARNING)  # TF's checkpoint INFO lines are noise here.
    signals.install()  # SIGTERM and SIGHUP stop a run as Ctrl-C does: checkpoint, one line, exit 2.
    try:  # Heavy imports after flag parsing, so --help and flag errors are instant.
        from tfppo import api, distributed, trainer
    except KeyboardInterrupt as interrupt:
        interrupted(interrupt, FLAGS.logdir)
    try:
        cluster = distributed.cluster_from_env()  # From TF_CONFIG; None: one process.
        config = flags_lib.to_config(FLAGS)
        strategy = None
        if cluster is not None:  # Before TensorFlow runs any op.
            trainer.configure_threads(config)
            strategy = distributed.make_strategy()
            # TensorFlow's coordination service puts its own SIGTERM handler (a preemption
            # notifier) under Python's; ours again, so SIGTERM stops every worker cleanly.
            signals.install()
        summary = api.run(config, flags_lib.explicitly_set(FLAGS), cluster=cluster, strategy=strategy)
    except KeyboardInterrupt as interrupt:  # Outside the training loop: start-up or the end.
        interrupted(interrupt, FLAGS.logdir)
    except (ConfigError, trainer.TrainingError) as error:
        fail(str(error))
    if cluster is not None and not cluster.is_chief:
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
