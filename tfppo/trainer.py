"""The training loop: envs -> rollout -> advantages -> learner -> metrics and checkpoints.

`train(config, logdir)` runs one experiment in a prepared logdir and returns its summary.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from tfppo import distributed, evaluation, networks, plot
from tfppo import envs as envs_lib
from tfppo import export as export_lib
from tfppo import learner as learner_lib
from tfppo import rollout as rollout_lib
from tfppo.config import Config, ConfigError
from tfppo.metrics import MetricsLogger
from tfppo.normalization import Normalizers
from tfppo.numpy_policy import NumpyPolicy
from tfppo.policy import Policy

RETURN_WINDOW = 100
CHECKPOINT_DIR = "checkpoints"


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN, an interrupted run); the message says what was kept."""


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


def has_checkpoint(logdir: str) -> bool:
    return tf.train.latest_checkpoint(os.path.join(logdir, CHECKPOINT_DIR)) is not None


def configure_threads(config: Config) -> None:
    """Must run before TensorFlow executes its first op; later (e.g. in tests) it is a no-op."""
    if (
        config.intra_op_threads
        and tf.config.threading.get_intra_op_parallelism_threads() != config.intra_op_threads
    ):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)
        except RuntimeError:  # the runtime already started in this process
            pass


class LocalStats:
    """The run's counters and episode statistics as reported: this process's collector."""

    def __init__(self, collector: rollout_lib.Collector):
        self.collector = collector

    def refresh(self) -> None:
        """Called after every update (a no-op here)."""

    @property
    def env_steps(self) -> int:
        return self.collector.env_steps

    @property
    def episodes(self) -> int:
        return self.collector.episodes

    def return_mean(self) -> float:
        return self.collector.return_mean()

    def length_mean(self) -> float:
        lengths = self.collector.recent_lengths
        return float(np.mean(lengths)) if lengths else float("nan")

    def success_rate(self) -> float | None:
        return self.collector.success_rate()


class GlobalStats(LocalStats):
    """Sums over every worker, from one all-reduce per update, continuing a restored run's counts.

    Every worker computes the same numbers, so every worker takes the same stop decision.
    """

    def __init__(self, collector, replicas, base_steps: int, base_episodes: int):
        super().__init__(collector)
        self.base_steps, self.base_episodes = base_steps, base_episodes
        self.values = np.zeros(8)
        self._sum = tf.function(replicas.sum, input_signature=[tf.TensorSpec([8], tf.float64)])

    def refresh(self) -> None:
        c = self.collector
        local = [
            c.env_steps,
            c.episodes,
            sum(c.recent_returns),
            len(c.recent_returns),
            sum(c.recent_successes),
            len(c.recent_successes),
            sum(c.recent_lengths),
            len(c.recent_lengths),
        ]
        self.values = self._sum(tf.constant(local, tf.float64)).numpy()

    @property
    def env_steps(self) -> int:
        return self.base_steps + int(self.values[0])

    @property
    def episodes(self) -> int:
        return self.base_episodes + int(self.values[1])

    def return_mean(self) -> float:
        return self.values[2] / self.values[3] if self.values[3] else float("nan")

    def length_mean(self) -> float:
        return self.values[6] / self.values[7] if self.values[7] else float("nan")

    def success_rate(self) -> float | None:
        return self.values[4] / self.values[5] if self.values[5] else None


class _NoLogger:
    """What a non-chief worker writes: nothing."""

    def write_episodes(self, finished) -> None:
        pass

    def write(self, record) -> None:
        pass

    def close(self, final=None) -> None:
        pass


def weights_digest(*models) -> str:
    """A short hash of every weight: equal on every worker while replicas stay in sync."""
    digest = hashlib.sha256()
    for model in models:
        for variable in model.variables:
            digest.update(np.ascontiguousarray(variable.numpy()).tobytes())
    return digest.hexdigest()[:16]


def seed_everything(config: Config) -> None:
    keras.utils.set_random_seed(config.seed)  # Python, NumPy and TF global seeds.
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()


class Trainer:
    def __init__(
        self,
        config: Config,
        logdir: str,
        checkpoint: str | None = None,
        cluster: distributed.Cluster | None = None,
        strategy=None,
    ):
        """cluster and strategy: multi-worker training (tfppo.distributed); None: one process."""
        self.config, self.logdir = config, logdir
        self.cluster, self.strategy = cluster, strategy
        self.is_chief = cluster is None or cluster.is_chief
        worker = cluster.index if cluster else 0
        configure_threads(config)
        seed_everything(config)
        self.env = envs_lib.make_vector_env(config)
        self.spec = envs_lib.probe_spec(config.env, config.use_mask)
        self.actor, self.critic = networks.build(self.spec, config)
        self.tf_policy = Policy(self.actor, self.critic, self.spec, config.seed)
        self.replicas = distributed.Replicas(cluster.num_workers if cluster else 1)
        self.learner = learner_lib.Learner(self.actor, self.critic, self.spec, config, self.replicas)
        self.state = TrainState()
        self.normalizers = Normalizers(self.spec.observation_shape, config.num_envs, config)
        self.checkpoint = tf.train.Checkpoint(
            normalizers=self.normalizers,
            actor=self.actor,
            critic=self.critic,
            learner=self.learner,
            policy_rng=self.tf_policy.rng,
            state=self.state,
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, os.path.join(logdir, CHECKPOINT_DIR), max_to_keep=3
        )
        if config.resume:
            path = checkpoint or self.manager.latest_checkpoint
            self.checkpoint.restore(path).assert_existing_objects_matched()
            self.normalizers.pull()
        # A resumed run meets new episodes, not a replay of the first ones; workers differ.
        env_seed = config.seed + 100_003 * int(self.state.updates.numpy()) + 1_000_003 * worker
        self.policy = self.tf_policy
        if config.policy_backend == "numpy":
            self.policy = NumpyPolicy(self.actor, self.critic, self.spec, env_seed + 17)
        self.collector = rollout_lib.Collector(
            self.env,
            self.spec,
            env_seed,
            config.reward_shift,
            config.reward_scale,
            RETURN_WINDOW,
            normalizers=self.normalizers,
            train_on_clipped_actions=config.train_on_clipped_actions,
        )
        # Python mirrors of the checkpointed counters; _sync_state writes them back.
        self.updates = int(self.state.updates.numpy())
        self.wall_s = float(self.state.wall_s.numpy())
        self.best_return_mean = float(self.state.best_return_mean.numpy())
        recent = self.state.recent_returns.numpy()[: int(self.state.num_recent.numpy())]
        self.collector.recent_returns.extend(recent.tolist())
        if strategy is None:
            self.collector.env_steps = int(self.state.global_step.numpy())
            self.collector.episodes = int(self.state.episodes.numpy())
            self.stats = LocalStats(self.collector)
        else:  # Local counters from 0; the global ones continue the checkpoint's.
            self.stats = GlobalStats(
                self.collector,
                self.replicas,
                int(self.state.global_step.numpy()),
                int(self.state.episodes.numpy()),
            )
            trained = self.actor.variables + self.critic.variables + list(self.learner.variables)
            distributed.broadcast_from_chief(self.replicas, trained, self.is_chief)
            print(f"tfppo worker {cluster.index}/{cluster.num_workers} ready", flush=True)
        self.rollout = rollout_lib.Rollout(config.num_steps, config.num_envs, self.spec)

    def _done(self) -> bool:
        config = self.config
        if config.total_timesteps and self.stats.env_steps >= config.total_timesteps:
            return True
        return bool(config.max_episodes and self.stats.episodes >= config.max_episodes)

    def _progress(self) -> float:
        config, fractions = self.config, []
        if config.total_timesteps:
            fractions.append(self.stats.env_steps / config.total_timesteps)
        if config.max_episodes:
            fractions.append(self.stats.episodes / config.max_episodes)
        return min(max(fractions), 1.0)

    def _count_update(self, wall_s: float, mean: float) -> None:
        """Advances the run's counters (Python mirrors of TrainState; see _sync_state);
        mean: the last-100 return after this update."""
        self.updates += 1
        self.wall_s = wall_s
        if self.collector.recent_returns and mean > self.best_return_mean:
            self.best_return_mean = mean

    def _sync_state(self) -> None:
        """Python counters -> TrainState's variables, before a checkpoint (not every update:
        each assign is an eager TensorFlow call)."""
        recent = np.zeros(RETURN_WINDOW)
        values = list(self.collector.recent_returns)
        recent[: len(values)] = values
        self.state.global_step.assign(self.stats.env_steps)
        self.state.episodes.assign(self.stats.episodes)
        self.state.updates.assign(self.updates)
        self.state.recent_returns.assign(recent)
        self.state.num_recent.assign(len(values))
        self.state.wall_s.assign(self.wall_s)
        self.state.best_return_mean.assign(self.best_return_mean)

    def save(self) -> str:
        """A checkpoint (the chief's only in multi-worker training); returns its path."""
        if not self.is_chief:
            return self.manager.latest_checkpoint or ""
        self._sync_state()
        self.normalizers.push()
        return self.manager.save(checkpoint_number=self.updates)

    def _update_once(self) -> dict[str, float]:
        config = self.config
        started = time.perf_counter()
        self.collector.collect(self.rollout, self.policy.step, self.policy.value)
        collected = time.perf_counter()
        advantages, returns = self.rollout.advantages(config.gamma, config.gae_lambda)
        metrics = self.learner.update(self.rollout.flatten(advantages, returns), self._progress())
        self.stats.refresh()
        self.policy.sync(self.learner.weights)
        self.collect_s += collected - started
        self.update_s += time.perf_counter() - collected
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        if bad:
            raise TrainingError(
                f"non-finite {', '.join(bad)} at update {self.updates + 1} "
                f"(env step {self.stats.env_steps}); training stopped, last good checkpoint "
                f"kept: {self.manager.latest_checkpoint or 'none yet'}"
            )
        return metrics

    def train(self) -> dict[str, float]:
        config = self.config
        start_steps, wall_before = self.stats.env_steps, self.wall_s
        started = time.time()
        self.collect_s = self.update_s = 0.0
        logger = (
            MetricsLogger(
                self.logdir,
                config.total_timesteps,
                config.max_episodes,
                self.stats.env_steps,
                self.stats.episodes,
            )
            if self.is_chief
            else _NoLogger()
        )
        record = None
        try:
            while not self._done():
                metrics = self._update_once()
                elapsed = time.time() - started
                mean = self.stats.return_mean()
                self._count_update(wall_before + elapsed, mean)
                record = {
                    "global_step": self.stats.env_steps,
                    "update": self.updates,
                    "episodes": self.stats.episodes,
                    "episode_return_mean": mean,
                    "episode_length_mean": self.stats.length_mean(),
                    "success_rate": self.stats.success_rate(),
                    "sps": (self.stats.env_steps - start_steps) / max(elapsed, 1e-9),
                    "wall_s": wall_before + elapsed,
                    "collect_fraction": self.collect_s / max(self.collect_s + self.update_s, 1e-9),
                    **metrics,
                }
                logger.write_episodes(self.collector.drain_finished())
                logger.write(record)
                if record["update"] % config.checkpoint_every == 0:
                    self.save()
        except KeyboardInterrupt:
            if self.strategy is not None:  # A checkpoint would need the other workers.
                raise TrainingError(
                    f"interrupted at env step {self.stats.env_steps}; last checkpoint "
                    f"{self.manager.latest_checkpoint or 'none yet'}; continue with --resume"
                ) from None
            path = self.save()
            raise TrainingError(
                f"interrupted at env step {self.stats.env_steps}; checkpoint saved to {path}; continue with --resume"
            ) from None
        except tf.errors.OpError as error:
            if self.strategy is None:
                raise
            raise TrainingError(
                f"worker {self.cluster.index} lost contact with another worker at update "
                f"{self.updates + 1} ({type(error).__name__}); training stopped; "
                f"last checkpoint {self.manager.latest_checkpoint or 'none yet'}: restart every "
                "worker with --resume"
            ) from None
        finally:
            logger.close(record)
            self.env.close()
        checkpoint = self.save()
        return self._finish(record, checkpoint, time.time() - started, start_steps)

    def export(self, path: str, **extra) -> str:
        """Writes a SavedModel of the current policy (see tfppo.export) to a new directory."""
        figures = {
            "global_step": self.stats.env_steps,
            "episodes": self.stats.episodes,
            "episode_return_mean": self.stats.return_mean(),
            **extra,
        }
        space = self.env.single_observation_space, self.env.single_action_space
        meta = export_lib.metadata(self.config, self.spec, *space, figures)
        constants = self.normalizers.observation_constants()
        return export_lib.export(self.actor, self.critic, self.spec, meta, path, constants)

    def _export_final(self, eval_returns: list) -> str:
        """LOGDIR/saved_model; a resumed run replaces its earlier export only once the new one is written."""
        final = os.path.join(self.logdir, export_lib.SAVED_MODEL_DIR)
        staging = final + ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        self.export(staging, eval_return_mean=float(np.mean(eval_returns)) if eval_returns else None)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        return final

    def evaluate(self, episodes: int) -> list:
        def act(observation, mask):
            return self.policy.mode(self.normalizers.observation(observation, update=False), mask)

        return evaluation.run_episodes(self.config.env, act, episodes, self.config.seed + 10_000, self.spec)

    def _finish(self, record, checkpoint: str, elapsed: float, start_steps: int) -> dict[str, float]:
        if not self.is_chief:  # The chief evaluates, exports and writes the summary.
            return {
                "worker": self.cluster.index,
                "global_step": self.stats.env_steps,
                "weights_digest": weights_digest(self.actor, self.critic),
            }
        returns = self.evaluate(self.config.eval_episodes) if self.config.eval_episodes else []
        steps = self.stats.env_steps
        summary = {
            "env": self.config.env,
            "method": self.config.method,
            "seed": self.config.seed,
            "global_step": steps,
            "episodes": self.stats.episodes,
            "updates": self.updates,
            "episode_return_mean": self.stats.return_mean(),
            "best_return_mean": self.best_return_mean,
            "success_rate": self.stats.success_rate(),
            "eval_episodes": len(returns),
            "eval_return_mean": float(np.mean(returns)) if returns else None,
            "eval_return_std": float(np.std(returns)) if returns else None,
            "wall_s": self.wall_s,
            "sps": (steps - start_steps) / max(elapsed, 1e-9),
            "collect_fraction": self.collect_s / max(self.collect_s + self.update_s, 1e-9),
            "checkpoint": checkpoint,
            "saved_model": self._export_final(returns),
            "logdir": self.logdir,
        }
        if self.cluster is not None:
            summary["num_workers"] = self.cluster.num_workers
            summary["weights_digest"] = weights_digest(self.actor, self.critic)
        if record is not None:
            summary["learning_curve"] = plot.plot_runs(
                [self.logdir],
                os.path.join(self.logdir, "learning_curve.png"),
                title=f"{self.config.env} ({self.config.method}, seed {self.config.seed})",
            )
        with open(os.path.join(self.logdir, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        return summary


def train(config: Config, logdir: str, cluster=None, strategy=None) -> dict[str, float]:
    """One run in a prepared logdir; cluster and strategy for multi-worker training."""
    if config.resume and not has_checkpoint(logdir):
        raise ConfigError(f"--resume: no checkpoint in {os.path.join(logdir, CHECKPOINT_DIR)}")
    if cluster is not None and (config.norm_obs or config.norm_reward):
        raise ConfigError(
            "--norm_obs and --norm_reward are not supported with several workers yet "
            "(each worker would normalise with its own statistics)"
        )
    return Trainer(config, logdir, cluster=cluster, strategy=strategy).train()
