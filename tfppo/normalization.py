"""Running observation normalisation and reward scaling, updated from training data only.

Both keep their statistics in NumPy (they change every env step, which must not cost a
TensorFlow call) and mirror them into tf.Variables for checkpoints and the SavedModel.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfppo.config import ConfigError
from tfppo.envs import clip
from tfppo.observations import vector_spec


def moments(batch: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """(count, mean, variance) over the first axis of a float64 batch. One row (one env, the
    MuJoCo presets) is its own mean with variance 0: the bits of mean(0) and var(0), without
    their reductions, which cost more than the rest of an env step's bookkeeping."""
    if batch.shape[0] == 1:
        return 1, batch[0], np.zeros_like(batch[0])
    return batch.shape[0], batch.mean(0), batch.var(0)


class RunningMeanStd:
    """Mean and variance of a stream of [N, ...] batches (Chan et al.'s parallel update)."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4  # a tiny prior count, as in Stable-Baselines3 and CleanRL

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        if batch.shape[0] == 1:  # one env (the MuJoCo presets): the general update's bits, fewer ops
            self._update_one(batch[0])
            return
        batch_count, batch_mean, batch_var = moments(batch)
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total

    def _update_one(self, row: np.ndarray) -> None:
        """`update` with a batch of one row: its mean is the row, its variance 0, its count 1.
        The general formula's terms for those (+ 0 x 1, x 1) change no bit, so they are left out:
        a step of a one-env preset runs this twice (observation and return)."""
        delta = row - self.mean
        total = self.count + 1
        self.mean = self.mean + delta / total
        self.var = (self.var * self.count + delta**2 * self.count / total) / total
        self.count = total


def merge(a: tuple, b: tuple) -> tuple:
    """Chan et al.'s exact merge of two (count, mean, M2) moment sets, M2 = var * count."""
    (count_a, mean_a, m2_a), (count_b, mean_b, m2_b) = a, b
    total = count_a + count_b
    if total == 0:
        return a
    delta = mean_b - mean_a
    mean = mean_a + delta * count_b / total
    return total, mean, m2_a + m2_b + delta**2 * count_a * count_b / total


class SyncedMeanStd(RunningMeanStd):
    """RunningMeanStd of every worker's data, all-reduced once per update (`sync`).

    Between syncs it holds the global statistics of the last sync merged with this worker's data
    since then, so a worker normalises with everything it can know; after a sync every worker
    holds the same statistics: those of all workers' data, merged exactly.
    """

    def __init__(self, shape: tuple[int, ...] = ()):
        super().__init__(shape)
        self.rebase()

    def rebase(self) -> None:
        """The current statistics become the shared base (after a sync or a restore)."""
        self.base = (self.count, self.mean.copy(), self.var * self.count)
        self.local = (0.0, np.zeros_like(self.mean), np.zeros_like(self.mean))

    def update(self, batch: np.ndarray) -> None:
        count, mean, var = moments(np.asarray(batch, np.float64))
        self.local = merge(self.local, (count, mean, var * count))
        self._set(merge(self.base, self.local))

    def _set(self, moments: tuple) -> None:
        self.count, self.mean, m2 = moments
        self.var = m2 / self.count

    def packed(self) -> np.ndarray:
        """This worker's data since the last sync as sums that add across workers:
        [n, n * mean, M2 + n * mean^2] (flattened)."""
        count, mean, m2 = self.local
        return np.concatenate([[count], np.ravel(count * mean), np.ravel(m2 + count * mean**2)])

    def unpack_sync(self, summed: np.ndarray) -> None:
        """Merges the all-reduced `packed()` of every worker into the base."""
        size = self.mean.size
        count = summed[0]
        if count > 0:
            mean = summed[1 : 1 + size].reshape(self.mean.shape) / count
            m2 = np.maximum(summed[1 + size :].reshape(self.mean.shape) - count * mean**2, 0.0)
            self._set(merge(self.base, (count, mean, m2)))
        else:
            self._set(self.base)
        self.rebase()


class Normalizers(tf.Module):
    """Observation normaliser (optional) and reward scaler (optional) of one run.

    observation -> clip((o - mean) / sqrt(var + 1e-8), -obs_clip, obs_clip)
    reward -> clip(r / sqrt(var(discounted return) + 1e-8), -reward_clip, reward_clip), where the
    discounted return R <- gamma R + r runs per env and restarts with each episode.
    """

    EPSILON = 1e-8

    def __init__(self, observation, num_envs: int, config, replicas=None):
        """observation: the run's tfppo.observations.ObservationSpec (or a vector's shape);
        only its vector components are normalised (images, indices and bits pass unchanged).
        replicas: tfppo.distributed.Replicas; with several workers the statistics are
        all-reduced once per update (`sync`), so every replica normalises alike."""
        super().__init__(name="normalizers")
        if isinstance(observation, tuple):
            observation = vector_spec(*observation)
        self.storage_shape = observation.storage_shape
        # None: the whole stored row is one vector (normalised as a whole); else its vector slots.
        self.slots = None if observation.is_vector else observation.vector_slots()
        if config.norm_obs and self.slots is not None and not self.slots.size:
            raise ConfigError(
                f"--norm_obs normalises vector observations; this env's observation ({observation.describe()}) "
                "has none (images are scaled to [0, 1] in the networks instead)"
            )
        observation_shape = self.storage_shape if self.slots is None else (int(self.slots.size),)
        self.replicas = replicas if replicas is not None and replicas.active else None
        Stats = SyncedMeanStd if self.replicas is not None else RunningMeanStd
        self.norm_obs, self.norm_reward = config.norm_obs, config.norm_reward
        self.obs_clip, self.reward_clip, self.gamma = (
            config.norm_obs_clip,
            config.norm_reward_clip,
            config.gamma,
        )
        self.obs_stats = Stats(tuple(observation_shape))
        self.return_stats = Stats(())
        self.discounted_return = np.zeros(num_envs, np.float64)
        self.obs_mean = tf.Variable(self.obs_stats.mean, dtype=tf.float64, trainable=False, name="obs_mean")
        self.obs_var = tf.Variable(self.obs_stats.var, dtype=tf.float64, trainable=False, name="obs_var")
        self.obs_count = tf.Variable(
            self.obs_stats.count, dtype=tf.float64, trainable=False, name="obs_count"
        )
        self.return_var = tf.Variable(1.0, dtype=tf.float64, trainable=False, name="return_var")
        self.return_count = tf.Variable(
            self.return_stats.count, dtype=tf.float64, trainable=False, name="return_count"
        )

    def observation(self, observation: np.ndarray, update: bool) -> np.ndarray:
        """Normalises [B, D] observations; `update` adds them to the statistics first."""
        if not self.norm_obs:
            return observation
        values = observation if self.slots is None else observation[:, self.slots]
        if update:
            self.obs_stats.update(values)
        normalized = (values - self.obs_stats.mean) / np.sqrt(self.obs_stats.var + self.EPSILON)
        normalized = clip(normalized, -self.obs_clip, self.obs_clip).astype(np.float32)
        if self.slots is None:
            return normalized
        observation = observation.copy()
        observation[:, self.slots] = normalized
        return observation

    def reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Scales the [B] rewards of one step by the running std of the discounted return."""
        if not self.norm_reward:
            return reward
        # In place: assigning an attribute of a tf.Module goes through its tracking (~10 us).
        returns = self.discounted_return
        returns *= self.gamma
        returns += reward
        self.return_stats.update(returns)
        returns[done] = 0.0
        scaled = reward / np.sqrt(self.return_stats.var + self.EPSILON)
        return clip(scaled, -self.reward_clip, self.reward_clip)

    def push(self) -> None:
        """NumPy statistics -> tf.Variables (before a checkpoint or an export)."""
        self.obs_mean.assign(self.obs_stats.mean)
        self.obs_var.assign(self.obs_stats.var)
        self.obs_count.assign(self.obs_stats.count)
        self.return_var.assign(self.return_stats.var)
        self.return_count.assign(self.return_stats.count)

    def pull(self) -> None:
        """tf.Variables -> NumPy statistics (after a restore)."""
        self.obs_stats.mean, self.obs_stats.var = self.obs_mean.numpy(), self.obs_var.numpy()
        self.obs_stats.count = float(self.obs_count.numpy())
        self.return_stats.var, self.return_stats.count = (
            self.return_var.numpy(),
            float(self.return_count.numpy()),
        )
        for stats in (self.obs_stats, self.return_stats):
            if isinstance(stats, SyncedMeanStd):
                stats.rebase()

    def sync(self) -> None:
        """Several workers: every worker's statistics since the last sync, all-reduced (one
        collective op for both normalisers) and merged; a no-op in one process."""
        if self.replicas is None or not (self.norm_obs or self.norm_reward):
            return
        observation = self.obs_stats.packed()
        local = np.concatenate([observation, self.return_stats.packed()])
        if not hasattr(self, "_sum"):
            spec = tf.TensorSpec(local.shape, tf.float64)
            self._sum = tf.function(self.replicas.sum, input_signature=[spec])
        summed = self._sum(tf.constant(local)).numpy()
        self.obs_stats.unpack_sync(summed[: observation.size])
        self.return_stats.unpack_sync(summed[observation.size :])

    def observation_constants(self):
        """(mean, 1 / std, clip) as float32 for a graph; None when observations are not normalised."""
        if not self.norm_obs:
            return None
        mean = self.obs_stats.mean.astype(np.float32)
        scale = (1.0 / np.sqrt(self.obs_stats.var + self.EPSILON)).astype(np.float32)
        if self.slots is None:
            return mean, scale, np.float32(self.obs_clip)
        # Over the whole stored row: slots that are not vector values pass unchanged.
        full = [np.zeros(self.storage_shape, np.float32), np.ones(self.storage_shape, np.float32)]
        clip = np.full(self.storage_shape, np.inf, np.float32)
        full[0][self.slots], full[1][self.slots], clip[self.slots] = mean, scale, self.obs_clip
        return full[0], full[1], clip
