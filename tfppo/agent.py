"""A run's trainable state built from a Config and an EnvSpec, with no env: networks, learner,
normalisers, counters and the checkpoint that holds them.

The trainer builds one to train, `tfppo.export` and `tfppo.load` build one to restore a
checkpoint; nothing else builds networks. `from_run(logdir)` rebuilds a run's Agent from its
run directory (flags.json, env.json) and restores a checkpoint, without making an env.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfppo import distributed, networks, rundir
from tfppo import envs as envs_lib
from tfppo import learner as learner_lib
from tfppo.config import Config, ConfigError
from tfppo.normalization import Normalizers
from tfppo.policy import Policy

RETURN_WINDOW = 100


class TrainState(tf.Module):
    """Counters checkpointed with the run, so --resume continues it."""

    def __init__(self):
        super().__init__(name="train_state")
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.episodes = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.wall_s = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.recent_returns = tf.Variable(tf.zeros([RETURN_WINDOW], tf.float64), trainable=False)
        self.num_recent = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.best_return_mean = tf.Variable(-np.inf, dtype=tf.float64, trainable=False)
        # The best periodic evaluation (--eval_every): LOGDIR/best holds its policy.
        self.best_eval_return_mean = tf.Variable(-np.inf, dtype=tf.float64, trainable=False)


class Agent:
    """Actor, critic, compiled acting policy, learner, normalisers and counters of one run.

    torso / critic_torso: optional builders `observation_shape -> keras.Model` ([B, ...] ->
    [B, features]) replacing the MLP torsos (see tfppo.networks.build).
    """

    def __init__(
        self,
        spec: envs_lib.EnvSpec,
        config: Config,
        torso=None,
        critic_torso=None,
        replicas: distributed.Replicas | None = None,
    ):
        self.spec, self.config = spec, config
        self.actor, self.critic = networks.build(spec, config, torso, critic_torso)
        self.custom_network = torso is not None or critic_torso is not None
        self.tf_policy = Policy(self.actor, self.critic, spec, config.seed, config.num_envs)
        self.learner = learner_lib.Learner(self.actor, self.critic, spec, config, replicas)
        self.state = TrainState()
        self.normalizers = Normalizers(spec.observation, config.num_envs, config, replicas)
        self.restored = None  # the checkpoint restore() read, if any
        # The object names are the checkpoint's format: keep them.
        self.checkpoint = tf.train.Checkpoint(
            normalizers=self.normalizers,
            actor=self.actor,
            critic=self.critic,
            learner=self.learner,
            policy_rng=self.tf_policy.rng,
            state=self.state,
        )

    def manager(self, logdir: str) -> tf.train.CheckpointManager:
        return tf.train.CheckpointManager(
            self.checkpoint, rundir.path(logdir, rundir.CHECKPOINT_DIR), max_to_keep=3
        )

    def restore(self, path: str) -> None:
        """Restores one checkpoint; ConfigError naming it if it cannot be read."""
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except Exception as error:  # Truncated data, a garbage index, missing files, ...
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"checkpoint {path} cannot be restored: {reason[:200]}") from None
        self.normalizers.pull()
        self.restored = path

    def restore_newest(self, logdir: str) -> tuple[str, list[str]]:
        """Restores the newest checkpoint of a run that restores, falling back to older ones.

        Returns (its path, what was skipped and why); ConfigError if none restores.
        """
        skipped = []
        for path in rundir.checkpoints(logdir):
            try:
                self.restore(path)
                return path, skipped
            except ConfigError as error:
                skipped.append(str(error))
        where = rundir.path(logdir, rundir.CHECKPOINT_DIR)
        raise ConfigError(f"no checkpoint in {where} restores: {'; '.join(skipped) or 'there are none'}")


def network_record(torso, critic_torso) -> dict:
    """What env.json keeps of custom torso builders (None: the MLP)."""
    return {
        "torso": envs_lib.factory_name(torso) if torso is not None else None,
        "critic_torso": envs_lib.factory_name(critic_torso) if critic_torso is not None else None,
    }


def saved_builder(record: dict, key: str, given):
    """The torso builder a saved run used: `given`, else imported by name; None for the MLP."""
    name = record.get("network", {}).get(key)
    if given is not None or name is None:
        return given
    try:
        return envs_lib.import_object(name)
    except ConfigError:
        raise ConfigError(
            f"this run's {key.replace('_', ' ')} was built by {name}, which cannot be imported here; "
            f"pass the same builder again ({key}=BUILDER) from Python"
        ) from None


def from_run(logdir: str, checkpoint: str = "", torso=None, critic_torso=None):
    """(Agent restored from a checkpoint of the run in `logdir`, its env.json record or None).

    checkpoint: a checkpoint prefix; default the newest that restores (older ones are fallen
    back to, as --resume does). No env is made, except for a run written before env.json
    existed (its spec is then read from one env, by id).
    """
    if not rundir.is_run(logdir):
        raise ConfigError(f"--logdir={logdir!r} has no {rundir.FLAGS_FILE}; expected a tfppo run directory")
    config = rundir.read_config(logdir)
    record = rundir.read_env(logdir)
    if record is not None:
        spec = envs_lib.spec_from_dict(record["spec"])
    else:
        spec = envs_lib.probe_spec(config.env, config.use_mask, config.image_layout)
        record = {"source": {"id": config.env}, "observation_space": "", "action_space": ""}
    agent = Agent(
        spec,
        config,
        saved_builder(record, "torso", torso),
        saved_builder(record, "critic_torso", critic_torso),
    )
    if checkpoint:
        if not tf.io.gfile.exists(checkpoint + ".index"):
            raise ConfigError(f"--checkpoint={checkpoint!r}: no such checkpoint (no {checkpoint}.index)")
        agent.restore(checkpoint)
    else:
        agent.restore_newest(logdir)
    return agent, record
