"""The Python face of tfppo: `train(config, env=..., logdir=..., callbacks=...)`.

    import tfppo
    summary = tfppo.train(tfppo.Config(total_timesteps=50_000), env=MyEnv, logdir="runs/mine")
    policy = tfppo.load("runs/mine")

`run` is the start both this function and `python -m tfppo.train` go through, so a run
started from Python has the same run directory as one started from the command line
(flags.json, env.json, checkpoints/, metrics.jsonl, summary.json, saved_model/), and
`--resume` and `tfppo.export` work on either.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable

from tfppo import rundir
from tfppo.config import Config, ConfigError


class StopAtReturn:
    """A callback that stops training once `key` of the update record reaches `threshold`.

    key: "episode_return_mean" (the last 100 training episodes, the default) or, with
    --eval_every, "eval_return_mean" (the latest periodic evaluation).
    """

    def __init__(self, threshold: float, key: str = "episode_return_mean"):
        self.threshold, self.key = float(threshold), key

    def __call__(self, record: dict) -> bool:
        value = record.get(self.key)
        return value is not None and value == value and value >= self.threshold  # NaN: not yet

    def __repr__(self) -> str:
        return f"StopAtReturn({self.threshold:g}, key={self.key!r})"


def _given(config: Config) -> set[str]:
    """The fields a Python caller set: those that differ from the defaults."""
    return {f.name for f in dataclasses.fields(Config) if getattr(config, f.name) != f.default}


def _prepare(config: Config, explicit: set[str], env, chief: bool, torso, critic_torso):
    """Every check before the first byte is written: settings, logdir, env, spaces, networks.

    Returns (config with its logdir, EnvSource, Probe, torso, critic_torso).
    """
    from tfppo import agent as agent_lib
    from tfppo import envs as envs_lib
    from tfppo import networks

    source = envs_lib.source_of(env, config) if env is not None else None
    if source is not None:
        config = dataclasses.replace(config, env=source.name)
        explicit = explicit | {"env"}
    config = rundir.resolve(config, explicit, chief)
    saved = rundir.read_env(config.logdir) if config.resume else None
    if source is None:
        source = (
            envs_lib.source_from_record(saved, config) if config.resume else envs_lib.source_of(None, config)
        )
    probed = envs_lib.probe(source, config.use_mask, config.image_layout)
    if saved is not None:
        if saved.get("spec") != json.loads(json.dumps(envs_lib.spec_to_dict(probed.spec))):
            raise ConfigError(
                f"--resume: the env {source.name} now gives {probed.observation_space} / "
                f"{probed.action_space}; the run was trained on {saved.get('observation_space')} / "
                f"{saved.get('action_space')}"
            )
        # A network built in Python is needed again to restore its weights.
        torso = agent_lib.saved_builder(saved, "torso", torso)
        critic_torso = agent_lib.saved_builder(saved, "critic_torso", critic_torso)
    for builder, role in ((torso, "actor"), (critic_torso or torso, "critic")):
        if builder is not None:  # A torso that does not map [B, ...] to [B, F]: say so now.
            networks.check_torso(builder, probed.spec.observation, role)
    return config, source, probed, torso, critic_torso


def run(
    config: Config,
    explicit: set[str],
    env=None,
    *,
    cluster=None,
    strategy=None,
    torso=None,
    critic_torso=None,
    callbacks: Iterable[Callable[[dict], object]] = (),
) -> dict:
    """Checks everything, makes the envs, writes flags.json and env.json, then trains.

    Nothing is written before every check has passed and every env copy is made.
    explicit: the settings the user gave (only RESUMABLE ones may change on --resume).
    """
    from tfppo import agent as agent_lib
    from tfppo import envs as envs_lib
    from tfppo import trainer

    chief = cluster is None or cluster.is_chief
    config, source, probed, torso, critic_torso = _prepare(config, explicit, env, chief, torso, critic_torso)
    vector_env = envs_lib.make_vector_env(config, source, probed)  # Checks every copy's spaces.
    try:
        # Built (and a resumed run restored) before anything is written: a network that cannot
        # be built or a checkpoint that cannot be restored leaves the run directory as it was.
        run_ = trainer.Trainer(
            config,
            config.logdir,
            cluster=cluster,
            strategy=strategy,
            source=source,
            probed=probed,
            vector_env=vector_env,
            torso=torso,
            critic_torso=critic_torso,
            callbacks=callbacks,
        )
        if chief:
            record = {**probed.record(source), "network": agent_lib.network_record(torso, critic_torso)}
            rundir.write_new(config.logdir, config, record)
        return run_.train()
    finally:
        vector_env.close()  # A no-op once the trainer closed it.


def train(
    config: Config | None = None,
    *,
    env=None,
    logdir: str | None = None,
    callbacks: Callable[[dict], object] | Iterable[Callable[[dict], object]] = (),
    torso=None,
    critic_torso=None,
) -> dict:
    """Trains one run and returns its summary (summary.json's contents).

    config: every setting (tfppo.Config; default: the CartPole-v1 preset). With
      `config.resume`, the run in `logdir` continues with its saved settings; of the fields
      set here only the budget, evaluation and checkpoint settings may differ.
    env: a registered gymnasium id, "module:EnvId", or a callable returning a new
      gymnasium.Env (your class, or a function adding wrappers and constructor arguments),
      called once per vector env copy. Default: config.env (with config.env_kwargs).
    logdir: the run directory (default config.logdir, else runs/<env>_<method>_seed<seed>_<time>).
    callbacks: a callable or a list of them, each given every update's record (the metrics.jsonl
      row); one that returns a true value stops training cleanly (checkpoint, final evaluation
      and SavedModel as usual). One that raises stops training with a checkpoint
      (tfppo.trainer.CallbackError).
    torso / critic_torso: builders `observation_shape -> keras.Model` mapping [B, *shape] to
      [B, features], replacing the MLP torsos (critic_torso defaults to another `torso`).

    Raises ConfigError for bad settings, envs or networks, before anything is written.
    """
    config = config if config is not None else Config()
    if not isinstance(config, Config):
        raise ConfigError(
            f"config={_short(config)} ({type(config).__name__}); expected a tfppo.Config, e.g. "
            "tfppo.Config(total_timesteps=20_000)"
        )
    if logdir is not None:
        config = dataclasses.replace(config, logdir=logdir)
    return run(
        config,
        _given(config),
        env,
        torso=torso,
        critic_torso=critic_torso,
        callbacks=_callbacks(callbacks),
    )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _callbacks(callbacks) -> list:
    """One callable or an iterable of them; anything else is refused before training starts."""
    if callable(callbacks):
        return [callbacks]
    try:
        listed = list(callbacks)
    except TypeError:
        raise ConfigError(
            f"callbacks={_short(callbacks)} ({type(callbacks).__name__}); expected a callable or a list of them"
        ) from None
    for index, callback in enumerate(listed):
        if not callable(callback):
            raise ConfigError(
                f"callbacks[{index}]={_short(callback)} ({type(callback).__name__}) is not callable; "
                "expected a function of the update's record"
            )
    return listed
