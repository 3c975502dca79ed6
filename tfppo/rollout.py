"""Time-major rollout storage [T, B, ...], GAE with correct truncation, and the env loop.

Letters: T steps per env per rollout, B envs, N = T * B, D observation dim, A action dim.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np

from tfppo import envs as envs_lib
from tfppo.config import ConfigError, call_user, user_error


def compute_gae(
    rewards: np.ndarray,
    values: np.ndarray,
    terminated: np.ndarray,
    truncated: np.ndarray,
    truncation_values: np.ndarray,
    last_value: np.ndarray,
    gamma: float,
    gae_lambda: float,
):
    """Generalised advantage estimation over a time-major rollout.

    Args:
      rewards: [T, B] reward of step t.
      values: [T, B] V(s_t) recorded when acting.
      terminated: [T, B] bool, the episode ended in a terminal state at step t (V = 0 after).
      truncated: [T, B] bool, the episode was cut at step t (time limit): bootstrap from
        V(final observation), given in `truncation_values`.
      truncation_values: [T, B] V(final observation of step t); read only where truncated.
      last_value: [B] V(s_T), the observation after the rollout.
      gamma, gae_lambda: discount and GAE lambda; lambda = 1 gives the bootstrapped discounted
        return minus V(s_t) (the tutorial's advantage).

    Returns:
      (advantages [T, B], returns [T, B]) float32, returns = advantages + values.
    """
    num_steps = rewards.shape[0]
    # Everything but the recursion at once, element for element what a step-by-step loop does
    # (float32 deltas; the recursion in float64, as NumPy promotes the bool-times-float factor).
    next_values = np.concatenate([values[1:], last_value.astype(np.float32)[None]])
    bootstrap = np.where(truncated, truncation_values, next_values)
    bootstrap = np.where(terminated, 0.0, bootstrap)
    delta = rewards + gamma * bootstrap - values
    factor = gamma * gae_lambda * ~(terminated | truncated)  # [T, B] float64: 0 where an episode ends
    # The recursion in Python floats (IEEE doubles, as NumPy's float64), one env at a time: a
    # NumPy call per step costs ~1 us each on rows of a few envs (26 ms per Hopper update).
    columns = np.empty(delta.shape[::-1], np.float64)
    for env, (deltas, factors) in enumerate(zip(delta.T.tolist(), factor.T.tolist(), strict=True)):
        column = [0.0] * num_steps
        advantage = 0.0
        for t in range(num_steps - 1, -1, -1):
            advantage = deltas[t] + factors[t] * advantage
            column[t] = advantage
        columns[env] = column
    advantages = np.ascontiguousarray(columns.T, dtype=np.float32)
    return advantages, (advantages + values).astype(np.float32)


class Rollout:
    """Preallocated [T, B, ...] arrays for one rollout."""

    def __init__(self, num_steps: int, num_envs: int, spec: envs_lib.EnvSpec, state_size: int = 0):
        """state_size: S of a recurrent policy's state (0: feed-forward). Then the rollout also
        keeps `state` [T, B, S], the state the policy acted from at step t (zero at an episode's
        first step), `start` [T, B], true where step t began an episode, and `final_state`
        [T, B, S], the state after step t (what V(final observation) is computed from)."""
        T, B = num_steps, num_envs
        self.num_steps, self.num_envs = T, B
        self.observation = np.zeros((T, B) + spec.observation_shape, spec.observation_dtype)
        self.action = np.zeros((T, B) + spec.action.action_shape, spec.action.action_dtype)
        self.mask = np.ones((T, B, spec.action.mask_width), bool) if spec.has_mask else None
        self.reward = np.zeros((T, B), np.float32)
        self.terminated = np.zeros((T, B), bool)
        self.truncated = np.zeros((T, B), bool)
        self.final_observation = np.zeros_like(self.observation)
        self.behavior_value = np.zeros((T, B), np.float32)
        self.behavior_params = {
            k: np.zeros((T, B, d), np.float32) for k, d in spec.action.param_dims().items()
        }
        self.truncation_value = np.zeros((T, B), np.float32)
        self.last_value = np.zeros((B,), np.float32)
        self.state = np.zeros((T, B, state_size), np.float32) if state_size else None
        self.start = np.zeros((T, B), bool) if state_size else None
        self.final_state = np.zeros((T, B, state_size), np.float32) if state_size else None

    def advantages(self, gamma: float, gae_lambda: float):
        """(advantages [T, B], returns [T, B]) by GAE over this rollout."""
        return compute_gae(
            self.reward,
            self.behavior_value,
            self.terminated,
            self.truncated,
            self.truncation_value,
            self.last_value,
            gamma,
            gae_lambda,
        )

    def flatten(self, advantages: np.ndarray, returns: np.ndarray) -> dict[str, np.ndarray]:
        """The learner's batch: every [T, B, ...] array as [N, ...], N = T * B."""
        n = self.num_steps * self.num_envs

        def flat(x):
            return x.reshape((n,) + x.shape[2:])

        batch = {
            "observation": flat(self.observation),
            "action": flat(self.action),
            "behavior_value": flat(self.behavior_value),
            "advantage": flat(advantages),
            "return": flat(returns),
        }
        batch.update({f"behavior_{k}": flat(v) for k, v in self.behavior_params.items()})
        if self.mask is not None:
            batch["mask"] = flat(self.mask)
        if self.state is not None:
            batch["state"], batch["start"] = flat(self.state), flat(self.start)
        return batch


# (observation, mask[, state]) -> {"action", "value", params[, "state"]}; a recurrent policy
# (state_size > 0) takes the state [B, S] and returns the next one.
PolicyStep = Callable[..., dict[str, np.ndarray]]
ValueFn = Callable[..., np.ndarray]  # (observation[, state]) -> V [B]


class Collector:
    """Steps a vector env with a policy, fills Rollouts and keeps episode statistics.

    The env sees clipped Box actions; the rollout keeps the raw sample (the clipped one with
    `train_on_clipped_actions`, the tutorial's choice, for parity). Episode returns are
    the undiscounted sum of the raw env reward; training rewards are (r + shift) * scale.
    """

    def __init__(
        self,
        vector_env,
        spec: envs_lib.EnvSpec,
        seed: int,
        reward_shift: float,
        reward_scale: float,
        window: int = 100,
        normalizers=None,
        train_on_clipped_actions: bool = False,
        env_episodes: bool = False,
        state_size: int = 0,
    ):
        """state_size: S of a recurrent policy's state, carried from step to step and across
        rollouts, zeroed where an episode ended (0: feed-forward).

        env_episodes: the envs report their episodes (gymnasium's RecordEpisodeStatistics,
        info["episode"]); those are the episodes counted, with their return and length. An
        Atari env ends its training episode at each lost life but reports the whole game."""
        self.env = vector_env
        self.train_on_clipped_actions = train_on_clipped_actions
        self.env_episodes = env_episodes
        self.spec = spec
        self.reward_shift, self.reward_scale = reward_shift, reward_scale
        self.normalizers = normalizers
        self.num_envs = vector_env.num_envs
        seeds = [seed + i for i in range(self.num_envs)]
        observation, info = call_user("the env's reset", vector_env.reset, seed=seeds)
        observation, self.mask = envs_lib.split_observation(observation, info, spec)
        self.observation = self._normalize(observation, update=True)
        self.running_return = np.zeros(self.num_envs, np.float64)
        self.running_length = np.zeros(self.num_envs, np.int64)
        self.recent_returns = collections.deque(maxlen=window)
        self.recent_lengths = collections.deque(maxlen=window)
        self.recent_successes = collections.deque(maxlen=window)  # from info["is_success"], if any
        self.episodes = 0
        self.env_steps = 0
        self.finished = []  # (env step, return, length) of episodes ended since the last drain.
        self.state = np.zeros((self.num_envs, state_size), np.float32) if state_size else None
        self.start = np.ones(self.num_envs, bool)

    def _normalize(self, observation: np.ndarray, update: bool) -> np.ndarray:
        if self.normalizers is None:
            return observation
        return self.normalizers.observation(observation, update)

    def collect(
        self,
        rollout: Rollout,
        policy_step: PolicyStep,
        value_fn: ValueFn,
        reset_noise: Callable[[], None] | None = None,
        noise_every: int = -1,
    ) -> None:
        """Fills `rollout`. reset_noise (gSDE): called at the start and, with noise_every > 0,
        before every noise_every-th step."""
        for t in range(rollout.num_steps):
            if reset_noise is not None and (t == 0 or (noise_every > 0 and t % noise_every == 0)):
                reset_noise()
            envs_lib.check_mask(self.mask, self.spec.action, self.env_steps)
            if self.state is None:
                out = policy_step(self.observation, self.mask)
            else:
                out = policy_step(self.observation, self.mask, self.state)
                rollout.state[t], rollout.start[t] = self.state, self.start
            rollout.observation[t] = self.observation
            if rollout.mask is not None:
                rollout.mask[t] = self.mask
            action = out["action"]
            if self.train_on_clipped_actions:
                action = envs_lib.clip_action(self.spec.action, action)
            rollout.action[t] = action
            rollout.behavior_value[t] = out["value"]
            for key, array in rollout.behavior_params.items():
                array[t] = out[key]
            self._step(rollout, t, envs_lib.env_action(self.spec.action, out["action"]), out.get("state"))
        recurrent = self.state is not None
        rollout.last_value[:] = (
            value_fn(self.observation, self.state) if recurrent else value_fn(self.observation)
        )
        cut = rollout.truncated & ~rollout.terminated
        rollout.truncation_value[:] = 0.0
        if cut.any():  # One critic call for every truncation of the rollout.
            final = rollout.final_observation[cut]
            values = value_fn(final, rollout.final_state[cut]) if recurrent else value_fn(final)
            rollout.truncation_value[cut] = values

    def _step(self, rollout: Rollout, t: int, action: np.ndarray, next_state=None) -> None:
        """One env step; next_state: a recurrent policy's state after acting (None: feed-forward).

        The bookkeeping of ended episodes runs only on steps where one ended: with one env
        (the MuJoCo presets) this loop's own work is comparable to the env's."""
        try:
            observation, reward, terminated, truncated, info = self.env.step(action)
        except ConfigError as error:  # the vector env's own checks (a refused reward or observation)
            raise ConfigError(f"{error} (at env step {self.env_steps})") from error
        except Exception as error:  # the user's env: one line naming it, not a traceback
            raise user_error(f"the env's step at env step {self.env_steps}", error) from error
        reward = np.asarray(reward, np.float64)
        if not np.isfinite(reward).all():
            env = int(np.flatnonzero(~np.isfinite(reward))[0])
            raise ConfigError(
                f"env {env} returned reward {reward[env]} at env step {self.env_steps}; expected a finite number"
            )
        self.env_steps += self.num_envs
        next_observation, next_mask = envs_lib.split_observation(observation, info, self.spec)
        if next_observation.dtype != np.uint8 and not np.isfinite(next_observation).all():
            env = int(np.flatnonzero(envs_lib.non_finite_rows(next_observation))[0])
            raise ConfigError(f"env {env} returned a non-finite observation at env step {self.env_steps}")
        done = np.logical_or(terminated, truncated)
        any_done = bool(done.any())
        train_reward = (reward + self.reward_shift) * self.reward_scale
        if self.normalizers is not None:
            train_reward = self.normalizers.reward(train_reward, done)
        rollout.reward[t] = train_reward
        rollout.terminated[t] = terminated
        rollout.truncated[t] = truncated
        if any_done:
            final, _ = envs_lib.split_observation(_final_observations(info, observation), {}, self.spec)
            bad = done & envs_lib.non_finite_rows(final)
            if bad.any():  # Bootstrapped through V(final observation): a NaN there poisons the loss.
                raise ConfigError(
                    f"env {int(np.flatnonzero(bad)[0])} returned a non-finite final observation (the one "
                    f"that ends its episode) at env step {self.env_steps}"
                )
            rollout.final_observation[t][done] = self._normalize(final[done], update=False)
        next_observation = self._normalize(next_observation, update=True)
        if any_done:
            rollout.final_observation[t][~done] = next_observation[~done]
        else:
            rollout.final_observation[t] = next_observation
        self.running_return += reward
        self.running_length += 1
        if any_done:
            self._end_episodes(done, info)
        self.observation, self.mask = next_observation, next_mask
        if next_state is not None:  # The memory of an ended episode is forgotten.
            rollout.final_state[t] = next_state
            self.state = np.where(done[:, None], 0.0, next_state).astype(np.float32)
            self.start = done

    def _end_episodes(self, done: np.ndarray, info: dict) -> None:
        """Counts the episodes that ended this step (their return, length, success) and restarts
        the running sums of their envs."""
        successes = _final_successes(info, done)
        reported = _final_episodes(info, done) if self.env_episodes else None
        for env in np.flatnonzero(done):
            if reported is None:
                episode_return, length = float(self.running_return[env]), int(self.running_length[env])
            elif reported[0][env]:
                episode_return, length = float(reported[1][env]), int(reported[2][env])
            else:  # The training episode ended (a lost life), the env's episode goes on.
                continue
            if successes is not None:
                self.recent_successes.append(bool(successes[env]))
            self.recent_returns.append(episode_return)
            self.recent_lengths.append(length)
            self.finished.append((self.env_steps, episode_return, length))
            self.episodes += 1
        self.running_return[done] = 0.0
        self.running_length[done] = 0

    def counters(self) -> tuple:
        """The episode counters and statistics, to roll back to (see restore_counters)."""
        return (
            self.env_steps,
            self.episodes,
            tuple(self.recent_returns),
            tuple(self.recent_lengths),
            tuple(self.recent_successes),
        )

    def restore_counters(self, counters: tuple) -> None:
        """Back to `counters()`: a rollout cut short is discarded, with its steps and episodes."""
        self.env_steps, self.episodes, returns, lengths, successes = counters
        for queue, values in zip(
            (self.recent_returns, self.recent_lengths, self.recent_successes),
            (returns, lengths, successes),
            strict=True,
        ):
            queue.clear()
            queue.extend(values)
        self.finished = []

    def drain_finished(self) -> list:
        """The (env step, return, length) of every episode ended since the last call."""
        finished, self.finished = self.finished, []
        return finished

    def return_mean(self) -> float:
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")

    def success_rate(self) -> float | None:
        """Share of the last `window` episodes whose final info said is_success (None: never said)."""
        return float(np.mean(self.recent_successes)) if self.recent_successes else None


def _final_successes(info: dict, done: np.ndarray) -> np.ndarray | None:
    """[B] bool is_success of the episodes that ended this step, if the env reports it."""
    final_info = info.get("final_info")
    if not isinstance(final_info, dict) or "is_success" not in final_info:
        return None
    return np.asarray(final_info["is_success"], bool) & done


def _final_episodes(info: dict, done: np.ndarray):
    """(ended [B] bool, return [B], length [B]) from RecordEpisodeStatistics' info["episode"]
    of the envs whose step ended an episode; nothing ended where the env reports none."""
    final_info = info.get("final_info")
    if not isinstance(final_info, dict) or "episode" not in final_info:
        return np.zeros_like(done), None, None
    episode = final_info["episode"]
    ended = np.asarray(final_info.get("_episode", done), bool) & done
    return ended, np.asarray(episode["r"], np.float64), np.asarray(episode["l"], np.int64)


def _final_observations(info: dict, observation):
    """The observations that ended episodes this step (SAME_STEP autoreset puts them in info)."""
    final = info["final_obs"]
    if isinstance(observation, dict):
        return {
            k: np.stack([f[k] if f is not None else observation[k][i] for i, f in enumerate(final)])
            for k in observation
        }
    if isinstance(observation, tuple):
        return tuple(
            np.stack([f[k] if f is not None else part[i] for i, f in enumerate(final)])
            for k, part in enumerate(observation)
        )
    return np.stack([f if f is not None else observation[i] for i, f in enumerate(final)])
