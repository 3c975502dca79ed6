"""Deterministic evaluation episodes on a fresh, single (non-vector) env."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfppo import envs as envs_lib

ActFn = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def _make(env_id: str, video_dir: str):
    if not video_dir:
        return envs_lib.make_env(env_id)
    try:
        import moviepy  # noqa: F401  (gymnasium's RecordVideo writes with it)
    except ImportError:
        raise envs_lib.ConfigError("--video_dir needs moviepy: pip install moviepy") from None
    import os

    import gymnasium as gym

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, no display needed
    try:
        env = envs_lib.make_env(env_id, render_mode="rgb_array")
    except (ValueError, TypeError) as error:
        raise envs_lib.ConfigError(f"--video_dir: {env_id} cannot render frames ({error})") from None
    return gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)


def run_episodes(
    env_id: str, act: ActFn, episodes: int, seed: int, spec: envs_lib.EnvSpec, video_dir: str = ""
) -> list[float]:
    """Plays `episodes` episodes with `act(observation [1, D], mask [1, W] or None) -> [1, ...]`.

    Episode i is reset with seed + i; returns are the undiscounted sums of the raw env reward.
    Box actions (and hybrid parameters) are clipped to the bounds before the env sees them.
    """
    env = _make(env_id, video_dir)
    returns = []
    try:
        for episode in range(episodes):
            observation, info = env.reset(seed=seed + episode)
            total, done = 0.0, False
            while not done:
                obs, mask = envs_lib.split_observation(*envs_lib.batch_one(observation, info), spec.has_mask)
                batched_action = envs_lib.env_action(spec.action, np.asarray(act(obs, mask)))
                action = envs_lib.unbatch_action(spec.action, batched_action)
                observation, reward, terminated, truncated, info = env.step(action)
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns
