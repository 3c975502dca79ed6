"""Small example environments for tfppo's masked and hybrid action spaces.

Importing this module registers four gymnasium ids. `gymnasium.make` can also import it for
you if you put the module in front of the id, so that works in a fresh process (async vector
envs, `--env` flags):

    gymnasium.make("tfppo.example_envs:tfppo/MaskedGrid-v0")

The envs are plain NumPy and deterministic for a given `reset(seed=...)`. Each one draws its
randomness from `self.np_random`. They have no rendering: `render_mode` must be None.

tfppo/MaskedGrid-v0 (`MaskedGridEnv`, 50 steps): Discrete actions with a state-dependent
    invalid-action mask, in the spirit of Huang and Ontanon, "A Closer Look at Invalid Action
    Masking in Policy Gradient Algorithms" (2020). An agent on a 6 x 6 grid has to reach a
    goal. A vertical wall fills column 3 except its top and bottom cells. There are 20
    actions, 4 directions x jump lengths 1..5 (action = 5 * direction + length - 1; up, down,
    left, right). A jump is valid only if every cell it crosses is inside the grid and not a
    wall, and it does not pass over the goal (the agent has to land on it). Usually 3 to 10
    of the 20 actions are valid. The mask is `info["action_mask"]`, a bool array of shape
    [20], from reset and from step. An invalid action is still accepted: the agent stays
    put, the reward gets an extra -0.1, and `info["invalid_action"]` is True. So an unmasked
    agent can learn, just more slowly. Reward: -0.02 per step, +1 when the agent reaches the
    goal, which ends the episode. The optimal return is 1 - 0.02 * L, where L is the fewest
    valid jumps from the start to the goal. On the default map L is 1 to 3, so the optimum
    is 0.94 to 0.98. `optimal_return()` gives it for the current episode. Observation: agent
    and goal (row, col) and goal - agent, all divided by size - 1, so 6 float32 values.

tfppo/MaskedMultiDiscrete-v0 (`MaskedMultiDiscreteEnv`, 20 steps): MultiDiscrete([3, 5, 2])
    actions with a per-dimension mask. At each step a target value is drawn for each
    dimension. The observation shows the targets as concatenated one-hot vectors (10
    float32 values). The reward is the number of dimensions whose action matches its target,
    0 to 3. `info["action_mask"]` is a tuple of bool arrays with shapes (3,), (5,) and (2,),
    gymnasium's convention for MultiDiscrete masks. Each array always allows the target and
    allows each wrong value with probability 1/2, redrawn at every step. A masked-out value
    is never the target, so it scores 0 (there is no other penalty). The task never ends by
    itself: the registered TimeLimit truncates it after 20 steps. The optimal return is
    3 * 20 = 60 (`OPTIMAL_RETURN`). A uniform random policy expects about 20.7, and a random
    policy that respects the mask about 34.4.

tfppo/HybridMoving-v0 (`HybridMovingEnv`, 200 steps): parameterised actions in the spirit
    of gym-hybrid's Moving env. A point agent in the square [-1, 1]^2 has a position, a
    heading and a speed (per step, 0 to 0.05, starting at 0). It has to reach a target disc
    of radius 0.1. The action is Tuple((Discrete(3), Box(-1, 1, (2,)))):
        type 0, accelerate: speed += 0.02 * parameters[0], clipped to [0, 0.05];
        type 1, turn: heading += pi * parameters[1];
        type 2, brake (gym-hybrid's "break"): speed = 0, and the parameters are ignored.
    Each type uses only its own parameter. That mapping is `PARAMETER_MASK` (also
    `info["parameter_mask"]`): row = action type, column = parameter. After the action the
    agent moves by its speed along its heading, clipped to the square. Reward: the decrease
    in distance to the target centre, plus 10 on entering the disc. Entering the disc
    terminates the episode with `info["is_success"]` True. The shaping telescopes, so a
    successful episode returns 10 + d0 - d_T, where d0 is the start distance (at least 0.5)
    and R - 0.05 < d_T < R. So every success scores within 0.05 of `optimal_return()` =
    10 + d0 - R. With discounting, the fastest path is optimal: turn once, accelerate and go
    straight, about 10 to 60 steps. The observation (10 float32 values) is the position,
    cos/sin of the heading, speed / 0.05, (target - position) / 2, distance / (2 sqrt 2),
    and cos/sin of the bearing to the target relative to the heading.

tfppo/HybridMovingDict-v0 (`HybridMovingDictEnv`): the same env with the action space
    Dict({"action_type": Discrete(3), "parameters": Box(-1, 1, (2,))}).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import register

from tfppo import atari

# (row, col) deltas of the MaskedGrid directions: up, down, left, right.
GRID_DIRECTIONS = ((-1, 0), (1, 0), (0, -1), (0, 1))


def _check_render_mode(render_mode: str | None) -> None:
    if render_mode is not None:
        raise ValueError(f"render_mode={render_mode!r}: the tfppo example envs do not render")


class MaskedGridEnv(gym.Env):
    """Reach the goal on a walled grid with 4 x (size - 1) jump actions, most of them masked."""

    metadata = {"render_modes": []}
    STEP_COST = 0.02
    INVALID_PENALTY = 0.1
    GOAL_REWARD = 1.0

    def __init__(self, size: int = 6, render_mode: str | None = None):
        _check_render_mode(render_mode)
        if size < 4:
            raise ValueError(f"size={size}; expected at least 4")
        self.render_mode = render_mode
        self.size = size
        self.max_jump = size - 1
        self.walls = self.default_walls(size)
        self.free_cells = [(int(r), int(c)) for r, c in np.argwhere(~self.walls)]
        self.action_space = spaces.Discrete(len(GRID_DIRECTIONS) * self.max_jump)
        low = np.array([0, 0, 0, 0, -1, -1], dtype=np.float32)
        self.observation_space = spaces.Box(low, np.ones(6, np.float32), dtype=np.float32)
        self.agent, self.goal = self.free_cells[0], self.free_cells[-1]
        self._optimal_return = 0.0

    @staticmethod
    def default_walls(size: int) -> np.ndarray:
        """Bool [size, size]: column size // 2 is a wall except for its first and last rows."""
        walls = np.zeros((size, size), dtype=bool)
        walls[1 : size - 1, size // 2] = True
        return walls

    def decode(self, action: int) -> tuple[tuple[int, int], int]:
        """Returns ((row, col) direction, jump length) of an action."""
        return GRID_DIRECTIONS[action // self.max_jump], action % self.max_jump + 1

    def destination(self, cell: tuple[int, int], action: int) -> tuple[int, int] | None:
        """The (row, col) `action` takes an agent at `cell` to, or None if it is invalid there."""
        (d_row, d_col), length = self.decode(action)
        for step in range(1, length + 1):
            row, col = cell[0] + step * d_row, cell[1] + step * d_col
            if not (0 <= row < self.size and 0 <= col < self.size) or self.walls[row, col]:
                return None
            if step < length and (row, col) == self.goal:
                return None  # A jump may not pass over the goal.
        return row, col

    def action_mask(self) -> np.ndarray:
        """Bool [num_actions]: which actions are valid at the agent's cell."""
        return np.array([self.destination(self.agent, a) is not None for a in range(self.action_space.n)])

    def shortest_path_length(self, start: tuple[int, int]) -> int:
        """The fewest valid jumps from `start` to the goal (breadth-first search)."""
        distances = {start: 0}
        queue = deque([start])
        while queue:
            cell = queue.popleft()
            if cell == self.goal:
                return distances[cell]
            for action in range(self.action_space.n):
                nxt = self.destination(cell, action)
                if nxt is not None and nxt not in distances:
                    distances[nxt] = distances[cell] + 1
                    queue.append(nxt)
        raise RuntimeError(f"goal {self.goal} is unreachable from {start}")

    def optimal_return(self) -> float:
        """The best undiscounted return of the current episode: 1 - 0.02 * (fewest jumps)."""
        return self._optimal_return

    def _observation(self) -> np.ndarray:
        agent, goal = np.array(self.agent), np.array(self.goal)
        return (np.concatenate([agent, goal, goal - agent]) / (self.size - 1)).astype(np.float32)

    def _info(self, invalid_action: bool = False) -> dict[str, Any]:
        return {"action_mask": self.action_mask(), "invalid_action": invalid_action}

    def _free_cell(self, cell: Any, name: str) -> tuple[int, int]:
        row, col = (int(x) for x in cell)
        if not (0 <= row < self.size and 0 <= col < self.size) or self.walls[row, col]:
            raise ValueError(f"options[{name!r}]={(row, col)} is not a free cell of the grid")
        return row, col

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Random distinct free agent and goal cells; options {"agent": (r, c), "goal": (r, c)} fix them."""
        super().reset(seed=seed)
        options = options or {}
        first, second = self.np_random.choice(len(self.free_cells), size=2, replace=False)
        self.agent = self._free_cell(options.get("agent", self.free_cells[first]), "agent")
        self.goal = self._free_cell(options.get("goal", self.free_cells[second]), "goal")
        if self.agent == self.goal:
            raise ValueError(f"agent and goal are both at {self.agent}")
        steps = self.shortest_path_length(self.agent)
        self._optimal_return = self.GOAL_REWARD - self.STEP_COST * steps
        return self._observation(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        destination = self.destination(self.agent, int(action))
        reward = -self.STEP_COST
        if destination is None:
            reward -= self.INVALID_PENALTY  # An invalid action is a no-op with a penalty.
        else:
            self.agent = destination
        terminated = self.agent == self.goal
        if terminated:
            reward += self.GOAL_REWARD
        return self._observation(), float(reward), terminated, False, self._info(destination is None)


class MaskedMultiDiscreteEnv(gym.Env):
    """Match a per-step target in every dimension of MultiDiscrete(nvec); a mask hides wrong values."""

    metadata = {"render_modes": []}
    EPISODE_STEPS = 20  # The registered TimeLimit.
    OPTIMAL_RETURN = 60.0  # 3 dimensions x 20 steps.

    def __init__(self, nvec=(3, 5, 2), keep_probability: float = 0.5, render_mode: str | None = None):
        _check_render_mode(render_mode)
        self.render_mode = render_mode
        self.nvec = np.asarray(nvec, dtype=np.int64)
        if self.nvec.ndim != 1 or np.any(self.nvec < 2):
            raise ValueError(f"nvec={nvec}; expected a 1-D sequence of sizes >= 2")
        self.keep_probability = keep_probability
        self.action_space = spaces.MultiDiscrete(self.nvec)
        size = int(self.nvec.sum())
        self.observation_space = spaces.Box(0.0, 1.0, (size,), dtype=np.float32)
        self.targets = np.zeros(len(self.nvec), dtype=np.int64)
        self.mask: tuple[np.ndarray, ...] = tuple(np.ones(n, dtype=bool) for n in self.nvec)

    def _draw(self) -> None:
        """New targets and a new mask: the target plus each wrong value with keep_probability."""
        self.targets = np.array([self.np_random.integers(n) for n in self.nvec], dtype=np.int64)
        mask = []
        for n, target in zip(self.nvec, self.targets, strict=True):
            keep = self.np_random.random(n) < self.keep_probability
            keep[target] = True
            mask.append(keep)
        self.mask = tuple(mask)

    def _observation(self) -> np.ndarray:
        return np.concatenate(
            [np.eye(n, dtype=np.float32)[t] for n, t in zip(self.nvec, self.targets, strict=True)]
        )

    def _info(self) -> dict[str, Any]:
        return {"action_mask": tuple(m.copy() for m in self.mask)}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self._draw()
        return self._observation(), self._info()

    def step(self, action):
        if not self.action_space.contains(np.asarray(action, dtype=np.int64)):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        reward = float(np.sum(np.asarray(action) == self.targets))
        self._draw()
        return self._observation(), reward, False, False, self._info()


class HybridMovingEnv(gym.Env):
    """Steer a point to a target disc with accelerate(a) / turn(angle) / brake actions."""

    metadata = {"render_modes": []}
    ACCELERATE, TURN, BRAKE = 0, 1, 2
    PARAMETER_MASK = np.array([[True, False], [False, True], [False, False]])
    ACCELERATION = 0.02  # Speed change per unit of parameter 0.
    MAX_SPEED = 0.05  # Per step; below the target diameter, so the agent cannot jump over it.
    MAX_TURN = np.pi  # Heading change per unit of parameter 1.
    TARGET_RADIUS = 0.1
    SUCCESS_BONUS = 10.0
    MIN_START_DISTANCE = 0.5
    MAX_DISTANCE = 2.0 * np.sqrt(2.0)

    def __init__(self, render_mode: str | None = None):
        _check_render_mode(render_mode)
        self.render_mode = render_mode
        self.action_space = spaces.Tuple((spaces.Discrete(3), spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)))
        low = np.array([-1, -1, -1, -1, 0, -1, -1, 0, -1, -1], dtype=np.float32)
        self.observation_space = spaces.Box(low, np.ones(10, np.float32), dtype=np.float32)
        self.position = np.zeros(2)
        self.target = np.ones(2)
        self.heading = 0.0
        self.speed = 0.0
        self.distance = self.initial_distance = float(np.linalg.norm(self.target - self.position))

    def split_action(self, action) -> tuple[int, np.ndarray]:
        """(action type, float64 parameters clipped to [-1, 1]) from a Tuple action."""
        action_type, parameters = action
        return int(action_type), np.clip(np.asarray(parameters, dtype=np.float64), -1.0, 1.0)

    def optimal_return(self) -> float:
        """Any success returns between this and this + MAX_SPEED: 10 + d0 - TARGET_RADIUS."""
        return self.SUCCESS_BONUS + self.initial_distance - self.TARGET_RADIUS

    def _observation(self) -> np.ndarray:
        offset = self.target - self.position
        bearing = np.arctan2(offset[1], offset[0]) - self.heading
        values = [
            *self.position,
            np.cos(self.heading),
            np.sin(self.heading),
            self.speed / self.MAX_SPEED,
            *(offset / 2.0),
            self.distance / self.MAX_DISTANCE,
            np.cos(bearing),
            np.sin(bearing),
        ]
        return np.clip(
            np.array(values, dtype=np.float32), self.observation_space.low, self.observation_space.high
        )

    def _info(self, success: bool = False) -> dict[str, Any]:
        return {
            "parameter_mask": self.PARAMETER_MASK.copy(),
            "is_success": success,
            "distance": self.distance,
        }

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Agent anywhere (heading uniform, speed 0); target in [-0.8, 0.8]^2, at least 0.5 away."""
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1.0, 1.0, size=2)
        self.heading = float(self.np_random.uniform(-np.pi, np.pi))
        self.speed = 0.0
        self.target = self.np_random.uniform(-0.8, 0.8, size=2)
        while np.linalg.norm(self.target - self.position) < self.MIN_START_DISTANCE:
            self.target = self.np_random.uniform(-0.8, 0.8, size=2)
        self.distance = self.initial_distance = float(np.linalg.norm(self.target - self.position))
        return self._observation(), self._info()

    def step(self, action):
        action_type, parameters = self.split_action(action)
        if action_type == self.ACCELERATE:
            self.speed = min(max(self.speed + self.ACCELERATION * float(parameters[0]), 0.0), self.MAX_SPEED)
        elif action_type == self.TURN:
            heading = self.heading + self.MAX_TURN * parameters[1]
            self.heading = float((heading + np.pi) % (2.0 * np.pi) - np.pi)
        elif action_type == self.BRAKE:
            self.speed = 0.0
        else:
            raise ValueError(f"action type {action_type}; expected 0 (accelerate), 1 (turn) or 2 (brake)")
        velocity = self.speed * np.array([np.cos(self.heading), np.sin(self.heading)])
        self.position = np.clip(self.position + velocity, -1.0, 1.0)
        distance = float(np.linalg.norm(self.target - self.position))
        reward, self.distance = self.distance - distance, distance
        success = distance < self.TARGET_RADIUS
        if success:
            reward += self.SUCCESS_BONUS
        return self._observation(), float(reward), success, False, self._info(success)


class HybridMovingDictEnv(HybridMovingEnv):
    """HybridMovingEnv with Dict({"action_type": Discrete(3), "parameters": Box(-1, 1, (2,))}) actions."""

    def __init__(self, render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        self.action_space = spaces.Dict(
            {"action_type": spaces.Discrete(3), "parameters": spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)}
        )

    def split_action(self, action) -> tuple[int, np.ndarray]:
        return super().split_action((action["action_type"], action["parameters"]))


def _register(env_id: str, entry_point: str, max_episode_steps: int) -> None:
    if env_id not in gym.registry:  # Importing twice (or reloading) must not warn.
        register(
            id=env_id, entry_point=f"tfppo.example_envs:{entry_point}", max_episode_steps=max_episode_steps
        )


_register("tfppo/MaskedGrid-v0", "MaskedGridEnv", 50)
_register("tfppo/MaskedMultiDiscrete-v0", "MaskedMultiDiscreteEnv", MaskedMultiDiscreteEnv.EPISODE_STEPS)
_register("tfppo/HybridMoving-v0", "HybridMovingEnv", 200)
_register("tfppo/HybridMovingDict-v0", "HybridMovingDictEnv", 200)
atari.register()  # tfppo/Atari-v0: CleanRL's Atari preprocessing (needs the [atari] extra to make)
