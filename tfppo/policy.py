"""Acting: one compiled call per env step serves all B envs.

`step` samples actions and returns, in one call, what the rollout stores: the action, its
log-prob, V(s) and the distribution's parameters. Sampling uses stateless seeds drawn from a
checkpointed `tf.random.Generator`, so the same seed gives the same actions.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfppo import distributions, memory
from tfppo.envs import EnvSpec
from tfppo.networks import gsde_std, shared_heads


class Policy(tf.Module):
    def __init__(self, actor, critic, spec: EnvSpec, seed: int, num_envs: int = 1):
        """num_envs: the batch `step` acts for (gSDE keeps one exploration matrix per env)."""
        super().__init__(name="policy")
        self.actor, self.critic, self.spec = actor, critic, spec
        self.kind = spec.action.kind
        self.rng = tf.random.Generator.from_seed(seed)
        # --recurrent: the state [B, S] the calls take and return (S = 0: feed-forward).
        self.state_size = sum(memory.state_sizes(actor, critic))
        self.recurrent = self.state_size > 0
        self.gsde = getattr(actor.head, "sigma_mode", None) == "gsde"
        self.shared = critic.torso is actor.torso  # --shared_torso: one torso pass feeds both heads
        if self.gsde:  # [B, F, A] weights: env b's noise is latent_b @ exploration[b]
            shape = (num_envs, *actor.head.log_std.shape[:1], spec.action.dim)
            self.exploration = tf.Variable(tf.zeros(shape), trainable=False, name="exploration")
            self.compiled_reset_noise = tf.function(self._reset_noise, input_signature=[])
            self.reset_noise()
        observation = tf.TensorSpec(
            (None,) + spec.observation_shape, tf.as_dtype(spec.observation_dtype), "observation"
        )
        state = tf.TensorSpec((None, self.state_size), tf.float32, "state")
        signature = [observation]
        if spec.has_mask:
            signature.append(tf.TensorSpec((None, spec.action.mask_width), tf.bool, "mask"))
        extra = [state] if self.recurrent else []
        self.compiled_step = tf.function(self._step, input_signature=signature + extra)
        self.compiled_mode = tf.function(self._mode, input_signature=signature + extra)
        self.compiled_value = tf.function(self._value, input_signature=[observation] + extra)

    def initial_state(self, batch_size: int) -> np.ndarray:
        """The recurrent state of new episodes: zeros [batch_size, S] (S = 0: feed-forward)."""
        return np.zeros((batch_size, self.state_size), np.float32)

    def _unpack(self, rest):
        """The optional (mask, state) arguments of the compiled calls, by what the policy has."""
        rest = list(rest)
        mask = rest.pop(0) if self.spec.has_mask else None
        state = rest.pop(0) if self.recurrent else None
        return mask, state

    def _split(self, state):
        return memory.split_state(state, self.actor, self.critic) if state is not None else (None, None)

    def _joined(self, actor_state, critic_state):
        parts = [actor_state] + ([critic_state] if memory.state_sizes(self.actor, self.critic)[1] else [])
        return tf.concat(parts, axis=-1)

    def _reset_noise(self):
        std = gsde_std(self.actor.head.log_std, self.spec.action.dim)
        seed = tf.cast(self.rng.make_seeds(1)[:, 0], tf.int32)
        self.exploration.assign(tf.random.stateless_normal(tf.shape(self.exploration), seed) * std)
        return tf.constant(0)

    def reset_noise(self) -> None:
        """gSDE: new exploration weights for every env (a no-op for the other sigma modes)."""
        if self.gsde:
            self.compiled_reset_noise()

    def _step(self, observation, *rest) -> dict[str, tf.Tensor]:
        mask, state = self._unpack(rest)
        actor_state, critic_state = self._split(state)
        if self.shared:
            params, value, actor_state = shared_heads(self.actor, self.critic, observation, actor_state)
            params = dict(params)
        else:
            params, actor_state = self.actor.params_and_state(observation, actor_state)
            params = dict(params)
            value, critic_state = self.critic.value_and_state(observation, critic_state)
        latent = params.pop("latent", None)
        distribution = distributions.from_params(self.spec.action, params, mask)
        if latent is None:
            seed = tf.cast(self.rng.make_seeds(1)[:, 0], tf.int32)
            action = distribution.sample(seed=seed)
        else:  # gSDE: the noise is a function of the features, fixed between resamples.
            action = params["loc"] + tf.einsum("bf,bfa->ba", latent, self.exploration)
        out = {
            "action": action,
            "log_prob": distribution.log_prob(action),
            "value": value,
        }
        out.update(params)
        if self.recurrent:
            out["state"] = self._joined(actor_state, critic_state)
        return out

    def _mode(self, observation, *rest):
        mask, state = self._unpack(rest)
        actor_state, critic_state = self._split(state)
        params, actor_state = self.actor.params_and_state(observation, actor_state)
        action = distributions.mode(
            self.spec.action, distributions.from_params(self.spec.action, params, mask)
        )
        if not self.recurrent:
            return action
        # The critic's own memory advances too (none with --shared_torso: the actor's is the state).
        if memory.state_sizes(self.actor, self.critic)[1]:
            _, critic_state = self.critic.value_and_state(observation, critic_state)
        return {"action": action, "state": self._joined(actor_state, critic_state)}

    def _value(self, observation, state=None) -> tf.Tensor:
        return self.critic(observation, self._split(state)[1])

    def _args(self, observation: np.ndarray, mask: np.ndarray | None, state=None):
        args = (observation, mask) if self.spec.has_mask else (observation,)
        if self.recurrent:
            args += (self.initial_state(len(observation)) if state is None else state,)
        return args

    def step(
        self, observation: np.ndarray, mask: np.ndarray | None = None, state=None
    ) -> dict[str, np.ndarray]:
        """Samples actions for a batch of observations [B, D]; returns NumPy arrays (with
        --recurrent, "state": the next state, from `state` [B, S], default initial_state)."""
        out = self.compiled_step(*self._args(observation, mask, state))
        return {key: value.numpy() for key, value in out.items()}

    def mode(self, observation: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """The deterministic (most likely / mean) action, raw (not clipped); feed-forward only
        (a recurrent policy acts with mode_and_state)."""
        return self.compiled_mode(*self._args(observation, mask)).numpy()

    def mode_and_state(self, observation: np.ndarray, mask: np.ndarray | None, state: np.ndarray):
        """(the deterministic action, the next recurrent state) from state [B, S]."""
        if not self.recurrent:
            return self.mode(observation, mask), state
        out = self.compiled_mode(*self._args(observation, mask, state))
        return out["action"].numpy(), out["state"].numpy()

    def value(self, observation: np.ndarray, state=None) -> np.ndarray:
        """V(s) [B]; with --recurrent, from the state [B, S] (default initial_state)."""
        args = (observation,)
        if self.recurrent:
            args += (self.initial_state(len(observation)) if state is None else state,)
        return self.compiled_value(*args).numpy()

    def sync(self, weights: dict | None = None) -> None:
        """Nothing to do: the compiled functions read the Keras variables directly."""
