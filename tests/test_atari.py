"""tfppo.atari: CleanRL's Atari wrapper stack, lazy registration, MinAtar ids. No TensorFlow.

Needs ale-py, opencv-python-headless and minatar (requirements-dev.txt); skipped without them.
"""

from __future__ import annotations

import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from tfppo import atari
from tfppo.config import ConfigError

pytest.importorskip("ale_py", reason="ale-py is not installed: pip install 'tfppo[atari]'")
pytest.importorskip("cv2", reason="opencv-python-headless is not installed: pip install 'tfppo[atari]'")

atari.register()


def make(game: str = "Breakout", **kwargs) -> gym.Env:
    return gym.make(atari.ATARI_ID, game=game, **kwargs)


def play_game(env: gym.Env, seed: int, policy=None):
    """Random actions (or `policy(step)`) until the game is over. Yields per step
    (reward, terminated, truncated, info, lives after the step)."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    for step in range(20_000):
        action = policy(step) if policy else int(rng.integers(env.action_space.n))
        _, reward, terminated, truncated, info = env.step(action)
        yield reward, terminated, truncated, info, env.unwrapped.ale.lives()
        if "episode" in info:
            return
        if terminated or truncated:
            env.reset()
    raise AssertionError("the game did not end in 20,000 steps")


def record_raw_rewards(env: gym.Env) -> list[float]:
    """Every reward the emulator gives, reset steps included (a probe on the ALE env)."""
    rewards, base, step = [], env.unwrapped, env.unwrapped.step

    def probe(action):
        result = step(action)
        rewards.append(float(result[1]))
        return result

    base.step = probe
    return rewards


def test_spaces_and_first_observation():
    env = make("Breakout")
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == gym.spaces.Discrete(4)
    observation, _ = env.reset(seed=0)
    assert observation.shape == (4, 84, 84) and observation.dtype == np.uint8
    assert env.observation_space.contains(observation)
    # A reset fills the stack with the first frame.
    assert all(np.array_equal(frame, observation[0]) for frame in observation)
    custom = make("Pong", frame_stack=2, screen_size=64)
    assert custom.observation_space.shape == (2, 64, 64)
    assert custom.action_space == gym.spaces.Discrete(6)


def test_lost_life_ends_the_episode_but_not_the_game():
    env = make("Breakout")
    ends, frames = [], []
    for _, terminated, truncated, info, lives in play_game(env, seed=3):
        frame = env.unwrapped.ale.getEpisodeFrameNumber()
        assert not frames or frame > frames[-1], "the game restarted"
        frames.append(frame)
        if terminated or truncated:
            ends.append((lives, "episode" in info))
    # Breakout's 5 lives: 4 life-loss episodes without statistics, then the game over with them.
    assert ends == [(4, False), (3, False), (2, False), (1, False), (0, True)]


def test_episode_statistics_hold_the_raw_game_score_once():
    env = make("SpaceInvaders")  # 3 lives; invaders score 5 to 30 points, so clipping shows.
    raw = record_raw_rewards(env)
    steps = list(play_game(env, seed=0))
    with_statistics = [info for _, _, _, info, _ in steps if "episode" in info]
    assert len(with_statistics) == 1 and "episode" in steps[-1][3]
    agent_rewards = [reward for reward, *_ in steps]
    assert set(agent_rewards) <= {-1.0, 0.0, 1.0}
    episode = with_statistics[0]["episode"]
    assert episode["r"] == sum(raw) > sum(agent_rewards) > 0
    assert episode["l"] == len(raw)  # Emulator frames (4 per agent step), as in CleanRL's logs.


def test_rewards_are_the_sign_of_the_unclipped_ones():
    rng = np.random.default_rng(1)
    actions = rng.integers(6, size=300)
    clipped, unclipped = make("SpaceInvaders"), make("SpaceInvaders", clip_reward=False)
    clipped.reset(seed=5)
    unclipped.reset(seed=5)
    seen = []
    for action in actions:
        a = clipped.step(int(action))
        b = unclipped.step(int(action))
        np.testing.assert_array_equal(a[0], b[0])
        assert a[1] == np.sign(b[1])
        seen.append(b[1])
        if a[2] or a[3]:
            break
    assert max(seen) > 1  # The unclipped env did score more than 1 at once.


def test_fire_reset_launches_the_ball():
    # Only NOOPs after each reset: the ball still falls, so the resets must have pressed FIRE.
    env = make("Breakout")
    steps = list(play_game(env, seed=0, policy=lambda step: 0))
    assert sum(terminated for _, terminated, *_ in steps) == 5
    assert len(steps) < 1_000


def test_noop_reset_takes_1_to_noop_max_frames():
    # Frames at the first observation: the NOOPs, then FIRE and action 2 of 4 frames each.
    def first_frames(seeds, **kwargs) -> list[int]:
        env = make("Breakout", **kwargs)
        return [env.reset(seed=seed)[1]["episode_frame_number"] for seed in seeds]

    frames = first_frames(range(8))
    assert all(1 + 8 <= f <= 30 + 8 for f in frames)
    assert len(set(frames)) > 3
    assert first_frames([0]) == frames[:1]  # Same seed, same NOOPs.
    assert first_frames([0, 1], noop_max=0) == [8, 8]
    assert first_frames([0], noop_max=0, frame_skip=2) == [4]


def test_frame_stack_puts_the_newest_frame_last():
    stacked, single = make("Breakout"), make("Breakout", frame_stack=1)
    previous, _ = stacked.reset(seed=2)
    single.reset(seed=2)
    rng = np.random.default_rng(2)
    for _ in range(20):
        action = int(rng.integers(4))
        observation, *_ = stacked.step(action)
        frame, *_ = single.step(action)
        np.testing.assert_array_equal(observation[-1], frame[0])
        np.testing.assert_array_equal(observation[:-1], previous[1:])
        previous = observation
    assert not np.array_equal(observation[0], observation[-1])


def test_same_seed_same_run():
    def run(seed: int):
        env, rng = make("Pong"), np.random.default_rng(0)
        observations = [env.reset(seed=seed)[0]]
        for _ in range(50):
            observations.append(env.step(int(rng.integers(6)))[0])
        return np.stack(observations)

    np.testing.assert_array_equal(run(7), run(7))
    assert not np.array_equal(run(7), run(8))


def test_vector_env_of_atari():
    envs = gym.vector.SyncVectorEnv([lambda: make("Breakout") for _ in range(2)])
    observations, _ = envs.reset(seed=[0, 1])
    assert observations.shape == (2, 4, 84, 84) and observations.dtype == np.uint8
    observations, rewards, *_ = envs.step(np.array([1, 2]))
    assert observations.shape == (2, 4, 84, 84) and rewards.shape == (2,)


def test_bad_arguments_raise_config_errors():
    with pytest.raises(ConfigError, match="game='Brekout' is not an ALE game"):
        atari.make_atari(game="Brekout")
    with pytest.raises(ConfigError, match="frame_stack=0"):
        atari.make_atari(frame_stack=0)
    with pytest.raises(ConfigError, match="frame_skip, not frameskip"):
        atari.make_atari(frameskip=4)


@pytest.mark.parametrize(
    ("env_id", "shape", "actions"),
    [("MinAtar/Breakout-v1", (10, 10, 4), 3), ("MinAtar/SpaceInvaders-v1", (10, 10, 6), 4)],
)
def test_minatar_ids(env_id, shape, actions):
    pytest.importorskip("minatar", reason="minatar is not installed: pip install 'tfppo[minatar]'")
    atari.ensure_registered(env_id)
    env = gym.make(env_id)
    assert env.observation_space.shape == shape and env.observation_space.dtype == np.bool_
    assert env.action_space == gym.spaces.Discrete(actions)
    observation, _ = env.reset(seed=0)
    assert observation.shape == shape and observation.dtype == np.bool_
    observation, *_ = env.step(0)
    assert observation.shape == shape and observation.dtype == np.bool_


@pytest.mark.parametrize(
    ("env_id", "missing", "install"),
    [
        ("ALE/Pong-v5", "ale_py", "tfppo[atari]"),
        (atari.ATARI_ID, "cv2", "tfppo[atari]"),
        ("MinAtar/Breakout-v1", "minatar", "tfppo[minatar]"),
    ],
)
def test_a_missing_package_is_one_config_error_line(monkeypatch, env_id, missing, install):
    monkeypatch.setattr(gym, "registry", {})  # As in a fresh process: nothing registered yet.
    for name in [m for m in sys.modules if m == missing or m.startswith(missing + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now raises ImportError.
    with pytest.raises(ConfigError) as raised:
        atari.ensure_registered(env_id)
    message = str(raised.value)
    assert "\n" not in message
    assert (
        repr(env_id) in message
        and f"pip install '{install}'" in message
        and ".venv/bin/pip install" in message
    )


def test_other_ids_and_import_pull_in_nothing():
    atari.ensure_registered("CartPole-v1")  # Not ours: nothing to do.
    code = (
        "import sys, tfppo.atari as a; a.ensure_registered('CartPole-v1'); "
        "print(sorted(m for m in ('ale_py', 'cv2', 'minatar', 'tensorflow') if m in sys.modules))"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
