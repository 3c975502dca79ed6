"""The training loop: envs -> rollout -> advantages -> learner -> metrics and checkpoints.

`train(config, logdir)` runs one experiment in a prepared logdir and returns its summary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf
import threadpoolctl

from tfppo import agent as agent_lib
from tfppo import distributed, evaluation, plot, rundir, signals
from tfppo import envs as envs_lib
from tfppo import export as export_lib
from tfppo import rollout as rollout_lib
from tfppo.agent import RETURN_WINDOW
from tfppo.config import Config, ConfigError
from tfppo.metrics import MetricsLogger
from tfppo.numpy_policy import CONV_WORK_LIMIT, NumpyPolicy, conv_work, unsupported_layers


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN, an interrupted run); the message says what was kept."""


class CallbackError(TrainingError):
    """A callback raised; training stopped with a checkpoint. __cause__ is the callback's error."""


def configure_threads(config: Config) -> None:
    """TensorFlow's threads per op and NumPy's BLAS threads (the acting mirror's matrix
    products) both follow --intra_op_threads. TensorFlow's must be set before it executes its
    first op; later (e.g. in tests) that part is a no-op.

    BLAS: OpenBLAS's default threads spin on every product; with the other core busy, a
    [64, 400] x [400, 256] acting step took 9.5 ms with them and 0.66 ms with one thread."""
    if config.intra_op_threads:
        threadpoolctl.threadpool_limits(limits=config.intra_op_threads, user_api="blas")
    if (
        config.intra_op_threads
        and tf.config.threading.get_intra_op_parallelism_threads() != config.intra_op_threads
    ):
        try:
            tf.config.threading.set_intra_op_parallelism_threads(config.intra_op_threads)
        except RuntimeError:  # the runtime already started in this process
            pass


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
    """One run: its envs, its Agent (networks, learner, normalisers) and the training loop.

    source / probed / vector_env: how the envs are made, what one of them said and the vector
    env (tfppo.envs); by default made here from config.env. torso / critic_torso: builders of custom torsos (tfppo.networks.build).
    callbacks: called with every update's record (a copy); one returning a true value stops training.
    cluster and strategy: multi-worker training (tfppo.distributed); None: one process.
    """

    def __init__(
        self,
        config: Config,
        logdir: str,
        checkpoint: str | None = None,
        cluster: distributed.Cluster | None = None,
        strategy=None,
        *,
        source: envs_lib.EnvSource | None = None,
        probed: envs_lib.Probe | None = None,
        vector_env=None,
        torso=None,
        critic_torso=None,
        callbacks=(),
    ):
        self.config, self.logdir = config, logdir
        self.cluster, self.strategy = cluster, strategy
        self.callbacks = list(callbacks)
        self.is_chief = cluster is None or cluster.is_chief
        worker = cluster.index if cluster else 0
        configure_threads(config)
        self.source = source or envs_lib.source_of(None, config)
        self.probed = probed or envs_lib.probe(self.source, config.use_mask, config.image_layout)
        self.spec = self.probed.spec
        seed_everything(config)
        self.env = vector_env or envs_lib.make_vector_env(config, self.source, self.probed)
        self.replicas = distributed.Replicas(cluster.num_workers if cluster else 1)
        self.agent = agent_lib.Agent(self.spec, config, torso, critic_torso, self.replicas)
        self.actor, self.critic = self.agent.actor, self.agent.critic
        self.learner, self.state = self.agent.learner, self.agent.state
        self.normalizers, self.tf_policy = self.agent.normalizers, self.agent.tf_policy
        self.manager = self.agent.manager(logdir)
        self.restored = self._restore(checkpoint) if config.resume else None
        # A resumed run meets new episodes, not a replay of the first ones; workers differ.
        env_seed = config.seed + 100_003 * int(self.state.updates.numpy()) + 1_000_003 * worker
        self.policy = self._acting_policy(env_seed + 17)
        self.collector = rollout_lib.Collector(
            self.env,
            self.spec,
            env_seed,
            config.reward_shift,
            config.reward_scale,
            RETURN_WINDOW,
            normalizers=self.normalizers,
            train_on_clipped_actions=config.train_on_clipped_actions,
            env_episodes=self.probed.reports_episodes,
            state_size=self.policy.state_size,
        )
        # Python mirrors of the checkpointed counters; _sync_state writes them back.
        self.updates = int(self.state.updates.numpy())
        self.wall_s = float(self.state.wall_s.numpy())
        self.best_return_mean = float(self.state.best_return_mean.numpy())
        self.best_eval_return_mean = float(self.state.best_eval_return_mean.numpy())
        recent = self.state.recent_returns.numpy()[: int(self.state.num_recent.numpy())]
        self.collector.recent_returns.extend(recent.tolist())
        if strategy is None:
            self.collector.env_steps = int(self.state.global_step.numpy())
            self.collector.episodes = int(self.state.episodes.numpy())
            self.stats = distributed.LocalStats(self.collector)
        else:  # Local counters from 0; the global ones continue the checkpoint's.
            self.stats = distributed.GlobalStats(
                self.collector,
                self.replicas,
                int(self.state.global_step.numpy()),
                int(self.state.episodes.numpy()),
            )
            trained = self.actor.variables + self.critic.variables + list(self.learner.variables)
            distributed.broadcast_from_chief(self.replicas, trained, self.is_chief)
            print(f"tfppo worker {cluster.index}/{cluster.num_workers} ready", flush=True)
        self.rollout = rollout_lib.Rollout(
            config.num_steps, config.num_envs, self.spec, self.policy.state_size
        )
        self.eval_env = None  # made at the first periodic evaluation
        every = config.eval_every
        self.next_eval = (self.stats.env_steps // every + 1) * every if every else 0

    def _restore(self, checkpoint: str | None) -> str | None:
        """--resume: the given checkpoint, else the newest that restores (saying what was
        skipped); None for a run stopped before its first checkpoint (it starts again)."""
        if checkpoint:
            self.agent.restore(checkpoint)
            return checkpoint
        if not rundir.has_checkpoint(self.logdir):
            if self.is_chief:
                print(
                    f"tfppo: {self.logdir} has no checkpoint yet: the run starts from the beginning",
                    flush=True,
                )
            return None
        path, skipped = self.agent.restore_newest(self.logdir)
        if skipped and self.is_chief:
            print(f"tfppo: resuming from {path}; skipped {'; '.join(skipped)}", flush=True)
        return path

    def _acting_policy(self, seed: int):
        """The NumPy mirror where it can follow the networks (the fast path), else the compiled policy."""
        if self.config.policy_backend != "numpy":
            return self.tf_policy
        unsupported = unsupported_layers(self.actor, self.critic)
        if unsupported:
            if self.is_chief:
                print(
                    f"tfppo: acting with the compiled TF policy: the NumPy mirror follows tfppo's "
                    f"encoders and Dense layers, not this torso ({', '.join(unsupported)})",
                    flush=True,
                )
            return self.tf_policy
        work = conv_work(self.actor, self.critic)
        if work > CONV_WORK_LIMIT:
            if self.is_chief:
                print(
                    f"tfppo: acting with the compiled TF policy: its convolutions ({work:,} multiply-adds "
                    "per observation) run faster in TensorFlow than in the NumPy mirror",
                    flush=True,
                )
            return self.tf_policy
        return NumpyPolicy(self.actor, self.critic, self.spec, seed, self.config.num_envs)

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
        self.state.best_eval_return_mean.assign(self.best_eval_return_mean)

    def save(self) -> str:
        """A checkpoint (the chief's only in multi-worker training); returns its path.

        A stop signal waits until it is written. A filesystem that refuses (full, read-only)
        stops training with the last good checkpoint kept and the temporary files removed.
        """
        if not self.is_chief:
            return self.manager.latest_checkpoint or ""
        with signals.deferred():
            self._sync_state()
            self.normalizers.push()
            try:
                return self.manager.save(checkpoint_number=self.updates)
            except (OSError, tf.errors.OpError) as error:
                directory = rundir.path(self.logdir, rundir.CHECKPOINT_DIR)
                for name in os.listdir(directory) if os.path.isdir(directory) else []:
                    if name.startswith(f"ckpt-{self.updates}_temp"):
                        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
                reason = getattr(error, "strerror", None) or getattr(error, "message", None) or str(error)
                raise TrainingError(
                    f"cannot write checkpoint {self.updates} in {directory}: {reason.splitlines()[0]}; "
                    f"training stopped, last good checkpoint kept: {self._last_good()}"
                ) from None

    def _last_good(self) -> str:
        found = rundir.checkpoints(self.logdir)
        return found[0] if found else "none yet"

    def _collect(self) -> None:
        started = time.perf_counter()
        self.collector.collect(
            self.rollout,
            self.policy.step,
            self.policy.value,
            self.policy.reset_noise,
            self.config.sde_sample_freq,
        )
        self.collect_s += time.perf_counter() - started

    def _learn(self) -> dict[str, float]:
        """The update on the collected rollout."""
        config = self.config
        collected = time.perf_counter()
        advantages, returns = self.rollout.advantages(config.gamma, config.gae_lambda)
        metrics, weights = self.learner.update(self.rollout.flatten(advantages, returns), self._progress())
        self.stats.refresh()
        self.normalizers.sync()  # several workers: everyone's statistics, merged (else a no-op)
        self.policy.sync(weights)
        self.update_s += time.perf_counter() - collected
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v))
        if bad:
            raise TrainingError(
                f"non-finite {', '.join(bad)} at update {self.updates + 1} "
                f"(env step {self.stats.env_steps}); training stopped, last good checkpoint "
                f"kept: {self._last_good()}"
            )
        return metrics

    def _record(self, metrics, start_steps: int, elapsed: float, wall_before: float) -> dict:
        """Counts the update and returns its record (a metrics.jsonl row; what callbacks get)."""
        mean = self.stats.return_mean()
        self._count_update(wall_before + elapsed, mean)
        return {
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

    def _evaluate_periodically(self, record: dict) -> None:
        """Every --eval_every env steps (the chief): deterministic episodes on a separate env with
        the same seeds each time; the best policy so far is exported to LOGDIR/best/saved_model."""
        config = self.config
        if not config.eval_every or not self.is_chief or self.stats.env_steps < self.next_eval:
            return
        self.next_eval = (self.stats.env_steps // config.eval_every + 1) * config.eval_every
        if self.eval_env is None:
            self.eval_env = evaluation.make_env(self.source)
        # A stop signal (held back until this update is logged) cuts the evaluation short: a
        # SIGTERM's grace period is for the checkpoint, not for --eval_every_episodes episodes.
        # The cut evaluation is not recorded; a resumed run evaluates at the next --eval_every.
        returns = self._play(self.eval_env, config.eval_every_episodes, config.seed + 20_000, signals.pending)
        if signals.pending():
            return
        mean = float(np.mean(returns))
        record.update(eval_return_mean=mean, eval_return_std=float(np.std(returns)))
        if mean > self.best_eval_return_mean:
            self.best_eval_return_mean = mean
            best = rundir.path(self.logdir, os.path.join(rundir.BEST_DIR, rundir.SAVED_MODEL_DIR))
            self._export_replacing(best, eval_return_mean=mean, eval_global_step=self.stats.env_steps)
        record["eval_best_return_mean"] = self.best_eval_return_mean

    def _run_callbacks(self, record: dict) -> str | None:
        """The name of the callback that asked to stop, or None. One that raises stops training
        with a checkpoint (CallbackError names it)."""
        for callback in self.callbacks:
            try:
                stop = callback(dict(record))
            except Exception as error:  # The user's code: keep the run, name the callback.
                path = self.save()
                name = getattr(callback, "__qualname__", type(callback).__qualname__)
                raise CallbackError(
                    f"callback {name} raised {type(error).__name__}: {error} at update {self.updates}; "
                    f"training stopped, checkpoint saved to {path}"
                ) from error
            if stop:
                return repr(callback)
        return None

    def _stop_if_signalled(self) -> None:
        """Multi-worker: a stop signal on any worker (all-reduced with the episode statistics)
        stops every worker after the same update, with one checkpoint written by the chief."""
        if not self.stats.stop_requested:
            return
        path = self.save()
        here = signals.pending()
        raise TrainingError(
            f"stopped by {here or 'a signal to another worker'} at update {self.updates} on every "
            f"worker; checkpoint {path or 'saved by the chief'}; continue with --resume"
        )

    def _open_logger(self):
        """The chief's MetricsLogger (after dropping what a killed run logged past its
        checkpoint); nothing for the other workers."""
        if not self.is_chief:
            return _NoLogger()
        if self.config.resume:
            rundir.truncate_logs(self.logdir, self.updates, self.stats.env_steps)
        config = self.config
        return MetricsLogger(
            self.logdir,
            config.total_timesteps,
            config.max_episodes,
            self.stats.env_steps,
            self.stats.episodes,
        )

    def _interrupted(self, interrupt: KeyboardInterrupt, completed: tuple) -> TrainingError:
        """A stop signal in one process: the rollout cut short is discarded with its steps and
        episodes (the checkpoint and the logs agree on the last completed update), then a checkpoint."""
        name = getattr(interrupt, "signal_name", "SIGINT")
        if self.strategy is not None:  # A checkpoint would need the other workers.
            return TrainingError(
                f"interrupted ({name}) at env step {self.stats.env_steps}; last checkpoint "
                f"{self._last_good()}; continue with --resume"
            )
        self.collector.restore_counters(completed)
        path = self.save()
        return TrainingError(
            f"interrupted ({name}) at env step {self.stats.env_steps}; checkpoint saved to {path}; "
            "continue with --resume"
        )

    def train(self) -> dict[str, float]:
        start_steps, wall_before = self.stats.env_steps, self.wall_s
        started = time.time()
        self.collect_s = self.update_s = 0.0
        logger = self._open_logger()
        record, self.stopped_by = None, None
        polling = signals.polled() if self.strategy is not None else contextlib.nullcontext()
        completed = self.collector.counters()
        try:
            with polling:
                while not self._done() and self.stopped_by is None:
                    self._collect()  # a stop signal here discards the rollout (see _interrupted)
                    # A signal during the update or its logs waits for both: the checkpoint it
                    # leads to and the logs then agree on the last update.
                    with signals.deferred():
                        metrics = self._learn()
                        record = self._record(metrics, start_steps, time.time() - started, wall_before)
                        self._evaluate_periodically(record)
                        logger.write_episodes(self.collector.drain_finished())
                        logger.write(record)
                        completed = self.collector.counters()
                    self._stop_if_signalled()
                    self.stopped_by = self._run_callbacks(record)
                    if record["update"] % self.config.checkpoint_every == 0:
                        self.save()
        except KeyboardInterrupt as interrupt:
            raise self._interrupted(interrupt, completed) from None
        except ConfigError as error:  # the env's (a step that raised, a non-finite reward)
            raise ConfigError(
                f"{error}; training stopped, last good checkpoint kept: {self._last_good()}"
            ) from error.__cause__
        except tf.errors.OpError as error:
            if self.strategy is None:
                raise
            raise TrainingError(
                f"worker {self.cluster.index} lost contact with another worker at update "
                f"{self.updates + 1} ({type(error).__name__}); training stopped; "
                f"last checkpoint {self._last_good()}: restart every worker with --resume"
            ) from None
        finally:
            logger.close(record)
            self.env.close()
            if self.eval_env is not None:
                self.eval_env.close()
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
        meta = export_lib.metadata(self.config, self.spec, self.probed.record(self.source), figures)
        return export_lib.export_agent(self.agent, path, meta)

    def _export_replacing(self, final: str, **extra) -> str:
        """Exports to `final`, replacing an earlier export only once the new one is written."""
        staging = final + ".partial"
        shutil.rmtree(staging, ignore_errors=True)
        self.export(staging, **extra)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        return final

    def _play(self, env, episodes: int, seed: int, stop=None) -> list:
        state = self.policy.initial_state(1)

        def start():  # a new episode: a recurrent policy's memory starts empty
            nonlocal state
            state = self.policy.initial_state(1)

        def act(observation, mask):
            nonlocal state
            action, state = self.policy.mode_and_state(
                self.normalizers.observation(observation, update=False), mask, state
            )
            return action

        return evaluation.run_episodes(env, act, episodes, seed, self.spec, start, stop)

    def evaluate(self, episodes: int) -> list:
        """The final evaluation: `episodes` deterministic episodes, seeds seed + 10000 + i."""
        env = evaluation.make_env(self.source)
        try:
            return self._play(env, episodes, self.config.seed + 10_000)
        finally:
            env.close()

    def _finish(self, record, checkpoint: str, elapsed: float, start_steps: int) -> dict[str, float]:
        self.normalizers.push()  # The digest covers the normalisation statistics too.
        if not self.is_chief:  # The chief evaluates, exports and writes the summary.
            return {
                "worker": self.cluster.index,
                "global_step": self.stats.env_steps,
                "weights_digest": weights_digest(self.actor, self.critic, self.normalizers),
            }
        returns = self.evaluate(self.config.eval_episodes) if self.config.eval_episodes else []
        steps = self.stats.env_steps
        eval_mean = float(np.mean(returns)) if returns else None
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
            "eval_return_mean": eval_mean,
            "eval_return_std": float(np.std(returns)) if returns else None,
            "wall_s": self.wall_s,
            "sps": (steps - start_steps) / max(elapsed, 1e-9),
            "collect_fraction": self.collect_s / max(self.collect_s + self.update_s, 1e-9),
            "checkpoint": checkpoint,
            "saved_model": self._export_replacing(
                rundir.path(self.logdir, rundir.SAVED_MODEL_DIR), eval_return_mean=eval_mean
            ),
            "logdir": self.logdir,
        }
        if self.config.eval_every:
            summary["best_eval_return_mean"] = self.best_eval_return_mean
            best = rundir.path(self.logdir, os.path.join(rundir.BEST_DIR, rundir.SAVED_MODEL_DIR))
            summary["best_saved_model"] = best if os.path.isdir(best) else None
        if self.stopped_by is not None:
            summary["stopped_by"] = self.stopped_by
        if self.cluster is not None:
            summary["num_workers"] = self.cluster.num_workers
            summary["weights_digest"] = weights_digest(self.actor, self.critic, self.normalizers)
        if record is not None:
            summary["learning_curve"] = plot.plot_runs(
                [self.logdir],
                rundir.path(self.logdir, rundir.LEARNING_CURVE_FILE),
                title=f"{self.config.env} ({self.config.method}, seed {self.config.seed})",
            )
        with open(rundir.path(self.logdir, rundir.SUMMARY_FILE), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
        return summary


def train(config: Config, logdir: str, cluster=None, strategy=None, **kwargs) -> dict[str, float]:
    """One run in a prepared logdir (tfppo.api.run is the whole start); kwargs go to Trainer."""
    return Trainer(config, logdir, cluster=cluster, strategy=strategy, **kwargs).train()
