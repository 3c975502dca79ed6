"""Atari (ALE) and MinAtar envs: registration on demand and CleanRL's Atari preprocessing.

`ensure_registered(env_id)` makes `ALE/...` and `MinAtar/...` ids known to gymnasium, importing
ale-py or minatar only then (importing minatar takes ~2.6 s here: it pulls in seaborn and
scipy), and turns a missing package into one ConfigError line with the install command.

`make_atari(game)` is registered as `tfppo/Atari-v0`:

    --env=tfppo/Atari-v0 --env_kwargs='{"game": "Pong"}'

It reproduces the env of CleanRL's `ppo_atari.py` (the SB3 / openai-baselines Atari wrappers),
so returns compare with CleanRL's published numbers (docs/atari.md). From the emulator up:

1. `ALE/<game>-v5` with frameskip=1, repeat_action_probability=0 and the minimal action set:
   the settings of the `<game>NoFrameskip-v4` id CleanRL uses (ALE caps a game at 108,000
   frames, 30 minutes).
2. RecordEpisodeStatistics, first, so `info["episode"]` ({"r", "l", "t"}) holds the raw game
   score and length in emulator frames, and appears only on the step the game really ends:
   the life-loss "episodes" above it never reset it.
3. AtariPreprocessing: 1-30 random NOOP frames at a game's start, the action repeated for 4
   frames with the reward summed and the last two frames max-pooled, a grayscale 84x84 frame
   (ALE's own grayscale, then cv2 INTER_AREA; CleanRL resizes RGB, then converts to gray).
4. EpisodicLife: a lost life ends the episode (terminated=True) but not the game; the next
   reset takes one NOOP step and play goes on. Not AtariPreprocessing's terminal_on_life_loss,
   which would also start a new game.
5. FireReset, in games with FIRE: every reset (after a lost life too) presses FIRE, then action 2.
6. ClipReward: the reward the agent trains on is its sign, -1, 0 or +1.
7. FrameStackObservation: the last 4 frames, oldest first, newest last; a reset fills all 4
   with the first frame.

Observation: Box(0, 255, (frame_stack, screen_size, screen_size), uint8), channels first
((4, 84, 84) by default). Actions: Discrete(game's minimal action set).
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym
import numpy as np

from tfppo.config import ConfigError

ATARI_ID = "tfppo/Atari-v0"
# Tested together (requirements-dev.txt); pyproject's `atari` and `minatar` extras hold ranges.
INSTALL = {
    "atari": "pip install 'tfppo[atari]' (or .venv/bin/pip install ale-py==0.12.1 opencv-python-headless==5.0.0.93)",
    "minatar": "pip install 'tfppo[minatar]' (or .venv/bin/pip install minatar==1.0.15)",
}


def _require(env_id: str, module: str, extra: str):
    """Imports `module`, or raises one ConfigError line naming the env and the install command."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = error.name or module
        raise ConfigError(
            f"--env={env_id!r} needs {missing!r}, which is not installed: {INSTALL[extra]}"
        ) from None


def _namespace_registered(prefix: str) -> bool:
    return any(name.startswith(prefix) for name in gym.registry)


def ensure_registered(env_id: str) -> None:
    """Registers what `gym.make(env_id)` needs; other ids are left alone.

    `ALE/...`: ale-py's envs. `MinAtar/...`: minatar's (`minatar.gym.register_envs()`).
    `tfppo/Atari-v0`: checks that ale-py and OpenCV import, and registers the id.
    Raises ConfigError (one line, with the pip command) when the package is missing.
    """
    if env_id.startswith("ALE/"):
        if not _namespace_registered("ALE/"):
            gym.register_envs(_require(env_id, "ale_py", "atari"))
    elif env_id.startswith("MinAtar/"):
        if not _namespace_registered("MinAtar/"):
            _require(env_id, "minatar.gym", "minatar").register_envs()
    elif env_id == ATARI_ID:
        _require(env_id, "ale_py", "atari")
        _require(env_id, "cv2", "atari")  # AtariPreprocessing resizes with OpenCV.
        register()


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode (terminated=True); only the game's real end resets it.

    DQN's (Mnih et al. 2015) trick, as openai-baselines' and SB3's EpisodicLifeEnv do it: the
    value of a state then never counts on lives to come. A life counts as lost when ALE's life
    counter drops and stays above 0 (at 0 the game itself ends, sometimes a few frames later,
    as in Q*bert). After a lost life, reset() takes one NOOP step instead of a new game; a
    reset with a seed always starts a new game.
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0
        self._game_over = True

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        # ALE's 108,000-frame cap truncates the game: that is its end too.
        self._game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self._lives:
            terminated = True
        self._lives = lives
        return observation, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self._game_over or seed is not None:
            observation, info = self.env.reset(seed=seed, options=options)
        else:
            observation, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:  # The game ended during the NOOP: start a new one.
                observation, info = self.env.reset(options=options)
        self._lives = self.env.unwrapped.ale.lives()
        self._game_over = False
        return observation, info


class FireReset(gym.Wrapper):
    """Presses FIRE, then action 2, after every reset: games such as Breakout wait for FIRE
    before play starts (openai-baselines' FireResetEnv). Needs FIRE as action 1."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireReset needs FIRE as action 1 of at least 3, got {meanings}")

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        observation, info = self.env.reset(seed=seed, options=options)
        for action in (1, 2):
            observation, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                observation, info = self.env.reset(options=options)
        return observation, info


class ClipReward(gym.RewardWrapper):
    """The reward's sign: -1.0, 0.0 or +1.0 (DQN's reward clipping)."""

    def reward(self, reward) -> float:
        return float(np.sign(reward))


def make_atari(
    game: str = "Breakout",
    frame_stack: int = 4,
    episodic_life: bool = True,
    clip_reward: bool = True,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    **kwargs: Any,
) -> gym.Env:
    """The Atari env of CleanRL's ppo_atari.py for one ALE game (see the module docstring).

    game: an ALE game name as in `ALE/<game>-v5` ("Breakout", "Pong", "SpaceInvaders", ...).
    frame_stack: frames per observation (F); the observation is [F, screen_size, screen_size] uint8.
    episodic_life / clip_reward: CleanRL's EpisodicLifeEnv / ClipRewardEnv (both on there).
    noop_max: at most this many NOOP frames at a game's start (0: none).
    frame_skip: frames per agent step; the last two are max-pooled.
    **kwargs: passed to gym.make for the ALE env, e.g. render_mode="rgb_array", or
        repeat_action_probability=0.25 for the sticky actions of Machado et al. (2018).
    """
    env_id = f"ALE/{game}-v5"
    ensure_registered(env_id)
    if env_id not in gym.registry:
        raise ConfigError(
            f"{ATARI_ID}: game={game!r} is not an ALE game (no id {env_id}); try 'Breakout' or 'Pong'"
        )
    for name, value, least in (("frame_stack", frame_stack, 1), ("frame_skip", frame_skip, 1)):
        if value < least:
            raise ConfigError(f"{ATARI_ID}: {name}={value} must be at least {least}")
    if noop_max < 0 or screen_size < 1:
        raise ConfigError(f"{ATARI_ID}: noop_max={noop_max} must be >= 0 and screen_size={screen_size} >= 1")
    if "frameskip" in kwargs:
        raise ConfigError(f"{ATARI_ID}: set frame_skip, not frameskip (ALE must step one frame at a time)")
    settings = {"repeat_action_probability": 0.0, "full_action_space": False, **kwargs}
    env = gym.make(env_id, frameskip=1, **settings)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size, terminal_on_life_loss=False
    )
    if episodic_life:
        env = EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    if clip_reward:
        env = ClipReward(env)
    return gym.wrappers.FrameStackObservation(env, frame_stack)


def register() -> None:
    """Registers `tfppo/Atari-v0` (make_atari) once; tfppo.example_envs calls it."""
    if ATARI_ID not in gym.registry:
        gym.register(id=ATARI_ID, entry_point="tfppo.atari:make_atari")
