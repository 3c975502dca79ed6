"""Memory for partially observed envs (--recurrent): an LSTM or GRU between the torso and the
heads, and the layout of the recurrent state the acting paths, the rollout and the export carry.

The state of a policy is one float32 array [B, S]: the actor's memory state, then the critic's
(absent when the critic shares the actor's memory, --shared_torso). An LSTM's state is (h, c),
2 x units wide; a GRU's is h. Zeros start every episode.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


class Memory(keras.layers.Layer):
    """An LSTM or GRU cell over the torso's features: features [B, F] and state [B, S] ->
    outputs [B, U] and the next state (U = units; S = 2U for the LSTM (h, c), U for the GRU).

    The weights follow Keras' LSTMCell / GRUCell (reset_after) layout, gate order i, f, c, o and
    z, r, h, so the NumPy acting mirror (tfppo.numpy_policy) repeats the same arithmetic.
    `sequence` runs it over time-major features [L*K, F] (K sequences of L steps) from an initial
    state [K, S], zeroing the state before every step whose `starts` is true (a new episode).
    """

    def __init__(self, kind: str, units: int, after: keras.Layer | None = None, **kwargs):
        """after: the MLP between the memory and the heads (--rnn_hidden_sizes), or None."""
        super().__init__(**kwargs)
        self.kind, self.units, self.after = kind, units, after
        self.gates = 4 if kind == "lstm" else 3
        self.state_size = 2 * units if kind == "lstm" else units

    def build(self, input_shape) -> None:
        width = self.gates * self.units
        self.kernel = self.add_weight(
            shape=(int(input_shape[-1]), width), initializer="glorot_uniform", name="kernel"
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width), initializer="orthogonal", name="recurrent_kernel"
        )
        if self.kind == "lstm":  # forget-gate bias 1 (Jozefowicz et al. 2015, Keras' unit_forget_bias)
            bias = np.zeros(width, np.float32)
            bias[self.units : 2 * self.units] = 1.0
            self.bias = self.add_weight(
                shape=(width,), initializer=keras.initializers.Constant(bias), name="bias"
            )
        else:  # input and recurrent biases
            self.bias = self.add_weight(shape=(2, width), initializer="zeros", name="bias")

    def _cell(self, projected: tf.Tensor, state: tf.Tensor) -> tf.Tensor:
        """One step from the input projection x @ kernel (+ bias) [B, G]; returns the next state."""
        units = self.units
        if self.kind == "lstm":
            hidden, cell = state[:, :units], state[:, units:]
            gates = projected + tf.matmul(hidden, self.recurrent_kernel)
            i, f, c, o = tf.split(gates, 4, axis=-1)
            cell = tf.sigmoid(f) * cell + tf.sigmoid(i) * tf.tanh(c)
            return tf.concat([tf.sigmoid(o) * tf.tanh(cell), cell], axis=-1)
        recurrent = tf.matmul(state, self.recurrent_kernel) + self.bias[1]
        x_z, x_r, x_h = tf.split(projected, 3, axis=-1)
        r_z, r_r, r_h = tf.split(recurrent, 3, axis=-1)
        z, r = tf.sigmoid(x_z + r_z), tf.sigmoid(x_r + r_r)
        return z * state + (1.0 - z) * tf.tanh(x_h + r * r_h)

    def _project(self, features: tf.Tensor) -> tf.Tensor:
        bias = self.bias if self.kind == "lstm" else self.bias[0]
        return tf.matmul(features, self.kernel) + bias

    def call(self, features: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One step for a batch: (outputs [B, U], next state [B, S])."""
        state = self._cell(self._project(features), state)
        return state[:, : self.units], state

    def sequence(
        self, features: tf.Tensor, starts: tf.Tensor, state: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """features [L*K, F] time-major, starts [L*K] bool, state [K, S] -> (outputs [L*K, U],
        final state [K, S]). The input projection is one matrix product over all L*K rows; only
        the recurrent part loops over the L steps."""
        batch = tf.shape(state)[0]
        projected = tf.reshape(self._project(features), [-1, batch, self.gates * self.units])
        keep = tf.reshape(1.0 - tf.cast(starts, tf.float32), [-1, batch, 1])

        def body(previous, inputs):
            step_projected, step_keep = inputs
            return self._cell(step_projected, previous * step_keep)

        # Unrolling steps per iteration measured no faster; XLA 1.5x but a 4 s compile (docs/recurrent.md).
        states = tf.scan(body, (projected, keep), initializer=state)  # [L, K, S]
        outputs = tf.reshape(states[:, :, : self.units], [-1, self.units])
        return outputs, states[-1]


def state_sizes(actor, critic) -> tuple[int, int]:
    """(S_actor, S_critic): the widths of the actor's and the critic's parts of the recurrent
    state [B, S_actor + S_critic]; S_critic is 0 when the critic shares the actor's memory."""
    actor_size = actor.memory.state_size if actor.memory is not None else 0
    if critic.memory is None or critic.memory is actor.memory:
        return actor_size, 0
    return actor_size, critic.memory.state_size


def split_state(state, actor, critic):
    """The recurrent state [B, S] -> (the actor's part, the critic's part); (None, None) without memory."""
    actor_size, critic_size = state_sizes(actor, critic)
    if actor_size == 0:
        return None, None
    actor_state = state[:, :actor_size]
    return actor_state, (state[:, actor_size:] if critic_size else actor_state)
