"""Multi-worker training on `tf.distribute.MultiWorkerMirroredStrategy`, configured by TF_CONFIG.

Every worker runs its own envs and an identical replica of the actor and critic (worker 0's
weights are broadcast at the start). Inside the compiled update every gradient is all-reduced
(mean) before it is applied, so the replicas stay identical; the advantage mean and std come
from one all-reduce of (sum, sum of squares, count), so they are the statistics of the whole
global batch, whatever the number of workers; the KL that stops epochs and adapts lambda is
all-reduced too, so every worker takes the same branch. Episode statistics are all-reduced
once per update. Worker 0 (the chief) alone writes summaries, checkpoints and the SavedModel.

Without TF_CONFIG (or with one worker in it) nothing here is used and no collective op runs.
The strategy object only sets up the cluster (gRPC server, collective runtime); the all-reduces
are collective ops in the compiled update (`Replicas`).
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

from tfppo import signals
from tfppo.config import ConfigError

# The strategy's own collectives wait at most this long for a peer. tfppo's all-reduces (Replicas)
# run without a timeout: TensorFlow 2.20 starts one watchdog thread per collective op execution
# that has one (it sleeps out the timeout), ~50 threads per update here, thousands per minute
# until thread creation fails and the process aborts. A dead peer is still detected: the
# strategy's health check aborts every collective op of the process (UnavailableError, ~8 s).
COLLECTIVE_TIMEOUT_S = 60.0


@dataclasses.dataclass(frozen=True)
class Cluster:
    num_workers: int
    index: int

    @property
    def is_chief(self) -> bool:
        return self.index == 0


def cluster_from_env(environ=None) -> Cluster | None:
    """The cluster TF_CONFIG describes, or None for single-process training."""
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not raw.strip():
        return None
    try:
        tf_config = json.loads(raw)
        workers = tf_config["cluster"]["worker"]
        task_type, index = tf_config["task"]["type"], int(tf_config["task"]["index"])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"TF_CONFIG={raw!r} is not JSON like "
            '{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": 0}}'
        ) from None
    if set(tf_config["cluster"]) != {"worker"} or task_type != "worker":
        raise ConfigError(
            f"TF_CONFIG: tfppo uses only 'worker' tasks (worker 0 is the chief), got "
            f"cluster {sorted(tf_config['cluster'])} and task type {task_type!r}"
        )
    if not 0 <= index < len(workers):
        raise ConfigError(f"TF_CONFIG: task index {index} is not in 0..{len(workers) - 1}")
    if len(workers) == 1:
        return None
    return Cluster(len(workers), index)


def make_strategy() -> tf.distribute.Strategy:
    """The strategy; must be created before TensorFlow runs its first op in this process."""
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING,
        timeout_seconds=COLLECTIVE_TIMEOUT_S,
    )
    return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


class Replicas:
    """All-reduces inside compiled code; the identity with one worker.

    Raw collective ops (`CollectiveReduceV2`) rather than a replica context's `all_reduce`: they
    can sit inside the update's graph loops (a replica context's merge_call cannot), and one
    call serves a whole list of tensors (packed into one vector: one network round trip). The
    strategy only sets up the cluster; every worker traces the same ops in the same order, so
    the instance keys, counted at trace time, match across workers.
    """

    GROUP_KEY = 4242  # A group of our own, apart from the strategy's.

    def __init__(self, num_workers: int = 1):
        self.num_workers = num_workers
        self._instance_key = 1000

    @property
    def active(self) -> bool:
        return self.num_workers > 1

    def sum(self, value):
        """value: a tensor or a list of tensors of one float dtype."""
        if not self.active:
            return value
        tensors = value if isinstance(value, (list, tuple)) else [value]
        flat = tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)
        self._instance_key += 1
        reduced = tf.raw_ops.CollectiveReduceV2(
            input=flat,
            group_size=self.num_workers,
            group_key=self.GROUP_KEY,
            instance_key=self._instance_key,
            ordering_token=[],
            merge_op="Add",
            final_op="Id",
            communication_hint="ring",
            timeout_seconds=0,  # no watchdog thread per execution (see COLLECTIVE_TIMEOUT_S)
        )
        sizes = [int(tf.size(t)) if tf.executing_eagerly() else t.shape.num_elements() for t in tensors]
        parts = tf.split(reduced, sizes)
        out = [tf.reshape(p, tf.shape(t)) for p, t in zip(parts, tensors, strict=True)]
        return out if isinstance(value, (list, tuple)) else out[0]

    def mean(self, value):
        if not self.active:
            return value
        summed = self.sum(value)
        if isinstance(summed, list):
            return [t / self.num_workers for t in summed]
        return summed / self.num_workers

    def moments(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Mean and variance of x over every worker's x: one all-reduce of (sum, sum x^2, n)."""
        x64 = tf.cast(tf.reshape(x, [-1]), tf.float64)
        stats = tf.stack(
            [tf.reduce_sum(x64), tf.reduce_sum(tf.square(x64)), tf.cast(tf.size(x64), tf.float64)]
        )
        total, total_sq, count = tf.unstack(self.sum(stats))
        mean = total / count
        variance = tf.maximum(total_sq / count - tf.square(mean), 0.0)
        return tf.cast(mean, x.dtype), tf.cast(variance, x.dtype)


def broadcast_from_chief(replicas: Replicas, variables, is_chief: bool) -> None:
    """Gives every worker the chief's values of the float `variables` (one all-reduce)."""
    # Keras 3 variables wrap a tf.Variable in `.value`; integer counters are not broadcast.
    variables = [v if isinstance(v, tf.Variable) else v.value for v in variables]
    variables = [v for v in variables if v.dtype == tf.float32]

    @tf.function
    def broadcast():
        values = [v.read_value() if is_chief else tf.zeros_like(v) for v in variables]
        for variable, value in zip(variables, replicas.sum(values), strict=True):
            variable.assign(value)

    broadcast()


class LocalStats:
    """The run's counters and episode statistics as reported: this process's collector."""

    def __init__(self, collector):
        self.collector = collector

    # Multi-worker stops are coordinated through GlobalStats; one process raises at once.
    stop_requested = False

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
        self.values = np.zeros(9)
        self._sum = tf.function(replicas.sum, input_signature=[tf.TensorSpec([9], tf.float64)])

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
            1.0 if signals.pending() else 0.0,  # a stop signal on this worker
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

    @property
    def stop_requested(self) -> bool:
        """A stop signal reached some worker before this update's all-reduce."""
        return bool(self.values[8] > 0)
