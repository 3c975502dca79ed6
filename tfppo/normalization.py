"""Running observation normalisation and reward scaling, updated from training data only.

Both keep their statistics in NumPy (they change every env step, which must not cost a
TensorFlow call) and mirror them into tf.Variables for checkpoints and the SavedModel.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class RunningMeanStd:
    """Mean and variance of a stream of [N, ...] batches (Chan et al.'s parallel update)."""

    def __init__(self, shape: tuple[int, ...] = ()):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4  # a tiny prior count, as in Stable-Baselines3 and CleanRL

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        batch_mean, batch_var, batch_count = batch.mean(0), batch.var(0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total


class Normalizers(tf.Module):
    """Observation normaliser (optional) and reward scaler (optional) of one run.

    observation -> clip((o - mean) / sqrt(var + 1e-8), -obs_clip, obs_clip)
    reward -> clip(r / sqrt(var(discounted return) + 1e-8), -reward_clip, reward_clip), where the
    discounted return R <- gamma R + r runs per env and restarts with each episode.
    """

    EPSILON = 1e-8

    def __init__(self, observation_shape, num_envs: int, config):
        super().__init__(name="normalizers")
        self.norm_obs, self.norm_reward = config.norm_obs, config.norm_reward
        self.obs_clip, self.reward_clip, self.gamma = (
            config.norm_obs_clip,
            config.norm_reward_clip,
            config.gamma,
        )
        self.obs_stats = RunningMeanStd(tuple(observation_shape))
        self.return_stats = RunningMeanStd(())
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
        if update:
            self.obs_stats.update(observation)
        normalized = (observation - self.obs_stats.mean) / np.sqrt(self.obs_stats.var + self.EPSILON)
        return np.clip(normalized, -self.obs_clip, self.obs_clip).astype(np.float32)

    def reward(self, reward: np.ndarray, done: np.ndarray) -> np.ndarray:
        """Scales the [B] rewards of one step by the running std of the discounted return."""
        if not self.norm_reward:
            return reward
        self.discounted_return = self.discounted_return * self.gamma + reward
        self.return_stats.update(self.discounted_return)
        self.discounted_return[done] = 0.0
        scaled = reward / np.sqrt(self.return_stats.var + self.EPSILON)
        return np.clip(scaled, -self.reward_clip, self.reward_clip)

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

    def observation_constants(self):
        """(mean, 1 / std, clip) as float32 for a graph; None when observations are not normalised."""
        if not self.norm_obs:
            return None
        scale = 1.0 / np.sqrt(self.obs_stats.var + self.EPSILON)
        return self.obs_stats.mean.astype(np.float32), scale.astype(np.float32), np.float32(self.obs_clip)
