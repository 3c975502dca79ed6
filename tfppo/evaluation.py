"""Deterministic evaluation episodes on a fresh, single (non-vector) env."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfppo import envs as envs_lib
from tfppo.config import call_user

ActFn = Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def make_env(source: envs_lib.EnvSource, video_dir: str = ""):
    """One evaluation env from the run's source; with video_dir, every episode recorded as MP4."""
    if not video_dir:
        return source.make()
    try:
        import moviepy  # noqa: F401  (gymnasium's RecordVideo writes with it)
    except ImportError:
        raise envs_lib.ConfigError("--video_dir needs moviepy: pip install moviepy") from None
    import os

    import gymnasium as gym

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen, no display needed
    try:
        env = source.make(render_mode="rgb_array")
    except (ValueError, TypeError, envs_lib.ConfigError) as error:
        raise envs_lib.ConfigError(f"--video_dir: {source.name} cannot render frames ({error})") from None
    return gym.wrappers.RecordVideo(env, video_dir, episode_trigger=lambda _: True, disable_logger=True)


def run_episodes(
    env,
    act: ActFn,
    episodes: int,
    seed: int,
    spec: envs_lib.EnvSpec,
    start: Callable[[], None] | None = None,
    stop: Callable[[], object] | None = None,
) -> list[float]:
    """Plays `episodes` episodes with `act(observation [1, D], mask [1, W] or None) -> [1, ...]`.

    start: called before every episode (a recurrent policy resets its state there).
    stop: asked before every step; once it returns something true, the episodes end there and
    the returns of the finished ones come back (fewer than `episodes`).
    Episode i is reset with seed + i; returns are the undiscounted sums of the raw env reward.
    Box actions (and hybrid parameters) are clipped to the bounds before the env sees them.
    The caller owns `env` (and closes it).
    """
    returns = []
    for episode in range(episodes):
        observation, info = call_user(
            f"the evaluation env's reset (episode {episode})", env.reset, seed=seed + episode
        )
        if start is not None:
            start()
        total, done = 0.0, False
        while not done:
            if stop is not None and stop():
                return returns
            obs, mask = envs_lib.split_observation(*envs_lib.batch_one(observation, info), spec)
            batched_action = envs_lib.env_action(spec.action, np.asarray(act(obs, mask)))
            action = envs_lib.unbatch_action(spec.action, batched_action)
            observation, reward, terminated, truncated, info = call_user(
                f"the evaluation env's step (episode {episode})", env.step, action
            )
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns
