"""Acting in NumPy: the actor's and critic's forward pass on a copy of their weights.

A TensorFlow call costs ~0.6 ms on the machines tfppo is tuned for, far more than the forward
pass of a small MLP in NumPy (~0.02 ms), so by default the env loop acts with this mirror and
TensorFlow is called once per update. The Keras models stay the only source of truth: `sync()`
copies their weights after every update, and tests check that both paths give the same
distribution parameters and values. `--policy_backend=tf` acts with the compiled Policy.
"""

from __future__ import annotations

import numpy as np

from tfppo.envs import EnvSpec

# gSDE's variance floor inside the square root, as SB3's StateDependentNoiseDistribution; defined
# here (no TensorFlow) and used by tfppo.networks too.
GSDE_EPSILON = 1e-6

_ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "linear": lambda x: x,
}


def _read(variable, weights):
    return weights[id(variable)] if weights else variable.numpy()


def _dense(layer, weights=None):
    name = getattr(layer.activation, "__name__", "linear")
    if name not in _ACTIVATIONS:
        raise ValueError(f"no NumPy mirror for activation {name!r}; use --policy_backend=tf")
    return _read(layer.kernel, weights), _read(layer.bias, weights), _ACTIVATIONS[name]


def unsupported_layers(actor, critic) -> list[str]:
    """Names of the torso layers this mirror cannot follow (empty: it can mirror both networks).

    The mirror follows keras.Sequential torsos of Dense layers with the activations above (the
    MLP tfppo builds, or a custom torso of the same form), and tfppo's ObservationTorso of any
    observation kind: its decoding, its CNNs (valid-padded Conv2D + Flatten) and that MLP, all
    computing in float32 (not under --compute_dtype=bfloat16).
    """
    import keras

    from tfppo.networks import ObservationTorso, torso_layers

    found = []
    for torso in (actor.torso, critic.torso):
        # --compute_dtype=bfloat16: the mirror computes in float32.
        found += [
            f"{type(layer).__name__} in {layer.compute_dtype}"
            for layer in torso_layers(torso)
            if layer.compute_dtype != "float32"
        ]
        if isinstance(torso, ObservationTorso):
            if not torso.encoded and torso.spec.single is None:  # a custom torso on a Dict / Tuple
                found.append(type(torso.body).__name__)
                continue
            for index in torso.image_encoders:
                for layer in getattr(torso, f"cnn_{index}").layers:
                    if type(layer) is keras.layers.Conv2D:
                        if layer.padding != "valid" or layer.activation.__name__ not in _ACTIVATIONS:
                            found.append("Conv2D")
                    elif type(layer) is not keras.layers.Flatten:
                        found.append(type(layer).__name__)
            torso = torso.body
        if not isinstance(torso, keras.Sequential):
            found.append(type(torso).__name__)
            continue
        for layer in torso.layers:
            name = getattr(getattr(layer, "activation", None), "__name__", None)
            if type(layer) is keras.layers.Identity:
                continue
            if type(layer) is not keras.layers.Dense or name not in _ACTIVATIONS:
                found.append(type(layer).__name__)
    return sorted(set(found))


# Above this many convolution multiply-adds per observation, the compiled TF policy acts faster
# than the mirror: the Nature CNN (7.7M on 84x84x4) took 5.9 ms per 8-env step in TF (one
# thread) and 9.3 ms in NumPy; MinAtar's 16-filter 3x3 (37k on 10x10x4, per torso) took 1.2 ms in NumPy
# and 3.0 ms in TF for 64 envs.
CONV_WORK_LIMIT = 1_000_000


def conv_work(actor, critic) -> int:
    """Convolution multiply-adds per observation in the actor's and critic's torsos."""
    from tfppo.networks import ObservationTorso

    total = 0
    torsos = {id(t): t for t in (actor.torso, critic.torso)}.values()
    for torso in torsos:
        if not isinstance(torso, ObservationTorso) or not torso.encoded:
            continue
        for index in torso.image_encoders:
            height, width, channels = torso.spec.components[index].image_hwc
            for layer in getattr(torso, f"cnn_{index}").layers:
                if type(layer).__name__ != "Conv2D":
                    continue
                (kh, kw), (stride, _) = layer.kernel_size, layer.strides
                height, width = (height - kh) // stride + 1, (width - kw) // stride + 1
                total += height * width * kh * kw * channels * layer.filters
                channels = layer.filters
    return total


class ParityError(RuntimeError):
    """The NumPy mirror and the Keras networks disagree: the mirror no longer follows networks.py."""


def _forward(layers, x):
    for kernel, bias, activation in layers:
        x = activation(x @ kernel + bias)
    return x


def _conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, stride: int, activation) -> np.ndarray:
    """A valid-padded 2-D convolution, [B, H, W, C] -> [B, H', W', F], as one matrix product
    over the [kh, kw, C] patches (im2col)."""
    height, width, channels, filters = kernel.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (height, width), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # [B, H', W', C, kh, kw]
    batch, out_h, out_w = windows.shape[:3]
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(batch * out_h * out_w, -1)
    out = patches @ kernel.reshape(-1, filters) + bias
    return activation(out).reshape(batch, out_h, out_w, filters)


class _EncoderMirror:
    """networks.ObservationTorso in NumPy: decode the stored observation, the CNN of each image
    component, concatenate, the MLP."""

    def __init__(self, torso, weights):
        self.spec = torso.spec
        self.convs = {}
        for index in torso.image_encoders:
            layers = getattr(torso, f"cnn_{index}").layers
            self.convs[index] = [
                (*_dense(layer, weights), layer.strides[0])
                for layer in layers
                if type(layer).__name__ == "Conv2D"
            ]
        self.mlp = _dense_layers(torso.body, weights)

    def _decode(self, stored: np.ndarray) -> list[np.ndarray]:
        """networks.decode in NumPy."""
        spec, batch = self.spec, stored.shape[0]
        single = spec.single
        if single is not None and single.kind in ("vector", "image"):
            pieces = [stored.astype(np.float32)]
        else:
            bounds = np.cumsum([c.size for c in spec.components])[:-1]
            pieces = np.split(stored.astype(np.float32), bounds, axis=1)
        decoded = []
        for component, piece in zip(spec.components, pieces, strict=True):
            if component.kind == "image":
                piece = piece.reshape(batch, *component.shape)
                if component.pixel_scale != 1.0:
                    piece = piece * np.float32(component.pixel_scale)
                if component.channels_first:
                    piece = piece.transpose(0, 2, 3, 1)
            elif component.kind in ("discrete", "multi_discrete"):
                indices = piece.astype(np.int64)
                piece = np.concatenate(
                    [
                        np.eye(n, dtype=np.float32)[np.clip(indices[:, i], 0, n - 1)]
                        * ((indices[:, i] >= 0) & (indices[:, i] < n))[:, None]
                        for i, n in enumerate(component.nvec)
                    ],
                    axis=1,
                )
            elif component.kind == "vector" and not component.shape:
                piece = piece.reshape(batch, 1)
            decoded.append(piece)
        return decoded

    def __call__(self, stored: np.ndarray) -> np.ndarray:
        parts = self._decode(stored)
        for index, convs in self.convs.items():
            x = parts[index]
            for kernel, bias, activation, stride in convs:
                x = _conv(x, kernel, bias, stride, activation)
            parts[index] = x.reshape(x.shape[0], -1)
        parts = [p.reshape(p.shape[0], -1) for p in parts]
        features = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
        return _forward(self.mlp, features)


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)  # = 1 / (1 + exp(-x)), without overflow warnings


class _MemoryMirror:
    """memory.Memory's one step in NumPy: (features [B, F], state [B, S]) -> (outputs, state)."""

    def __init__(self, memory, weights):
        self.kind, self.units = memory.kind, memory.units
        self.kernel = _read(memory.kernel, weights)
        self.recurrent_kernel = _read(memory.recurrent_kernel, weights)
        self.bias = _read(memory.bias, weights)
        self.after = _dense_layers(memory.after, weights) if memory.after else []

    def __call__(self, features: np.ndarray, state: np.ndarray):
        units = self.units
        if self.kind == "lstm":
            gates = features @ self.kernel + self.bias + state[:, :units] @ self.recurrent_kernel
            i, f, c, o = np.split(gates, 4, axis=-1)
            cell = _sigmoid(f) * state[:, units:] + _sigmoid(i) * np.tanh(c)
            hidden = _sigmoid(o) * np.tanh(cell)
            return _forward(self.after, hidden), np.concatenate([hidden, cell], axis=-1).astype(np.float32)
        x_z, x_r, x_h = np.split(features @ self.kernel + self.bias[0], 3, axis=-1)
        r_z, r_r, r_h = np.split(state @ self.recurrent_kernel + self.bias[1], 3, axis=-1)
        z, r = _sigmoid(x_z + r_z), _sigmoid(x_r + r_r)
        hidden = (z * state + (1.0 - z) * np.tanh(x_h + r * r_h)).astype(np.float32)
        return _forward(self.after, hidden), hidden


def _torso_mirror(torso, weights):
    """x -> features: the torso's forward pass in NumPy."""
    from tfppo.networks import ObservationTorso

    if isinstance(torso, ObservationTorso):
        return _EncoderMirror(torso, weights)
    layers = _dense_layers(torso, weights)
    return lambda x: _forward(layers, x)


def _dense_layers(model, weights) -> list:
    """A Sequential MLP's layers as (kernel, bias, activation); an Identity layer is skipped."""
    return [_dense(layer, weights) for layer in model.layers if type(layer).__name__ != "Identity"]


class NumpyPolicy:
    """Same interface as tfppo.policy.Policy: step, mode and value on NumPy arrays."""

    def __init__(self, actor, critic, spec: EnvSpec, seed: int, num_envs: int = 1):
        """num_envs: the batch `step` acts for (gSDE keeps one exploration matrix per env)."""
        from tfppo.memory import state_sizes

        self.actor, self.critic, self.spec = actor, critic, spec
        self.actor_size, self.critic_size = state_sizes(actor, critic)
        self.shared = critic.torso is actor.torso  # --shared_torso: one torso pass feeds both heads
        self.state_size = self.actor_size + self.critic_size
        self.recurrent = self.state_size > 0
        self.kind = spec.action.kind
        self.rng = np.random.default_rng(seed)
        self.num_envs = num_envs
        self.checked = False  # the first step compares this mirror with the Keras networks
        self.sync()
        if self.sigma_mode == "gsde":
            self.reset_noise()

    def sync(self, weights: dict | None = None) -> None:
        """Copies the current weights of the Keras models.

        weights: {id(variable): value} of every variable, already read (tfppo.learner.Learner.weights
        after an update); None or empty: read from the models.
        """
        head = self.actor.head
        self.actor_torso = _torso_mirror(self.actor.torso, weights)
        self.critic_torso = _torso_mirror(self.critic.torso, weights)
        self.value_head = [_dense(self.critic.value, weights)]
        self.value_scale = (
            (_read(self.critic.value_std, weights), _read(self.critic.value_mean, weights))
            if self.critic.norm_value
            else None
        )
        self.actor_memory = self.critic_memory = None
        if self.recurrent:
            self.actor_memory = _MemoryMirror(self.actor.memory, weights)
            self.critic_memory = (
                _MemoryMirror(self.critic.memory, weights) if self.critic_size else self.actor_memory
            )
        self.sigma_mode = None
        if self.kind in ("discrete", "multi_discrete", "binary"):
            self.logits_head = [_dense(head.logits, weights)]
            return
        if self.kind == "hybrid":
            self.logits_head = [_dense(head.action_type.logits, weights)]
            head = head.parameters
        self.loc_head = [_dense(head.loc, weights)]
        self.sigma_mode = head.sigma_mode
        if self.sigma_mode == "fixed":
            self.fixed_scale = np.float32(head.sigma_init)
        elif self.sigma_mode == "state_independent":
            self.fixed_scale = (np.exp(_read(head.log_std, weights)) + head.sigma_min).astype(np.float32)
        elif self.sigma_mode == "gsde":
            log_std = _read(head.log_std, weights)
            self.gsde_std = np.broadcast_to(np.exp(log_std), (log_std.shape[0], self.spec.action.dim))
            self.sigma_min = np.float32(head.sigma_min)
        else:
            self.scale_head = [_dense(head.scale_head, weights)]
            self.sigma_min = np.float32(head.sigma_min)
        self.center, self.half_range = head.center, head.half_range

    def initial_state(self, batch_size: int) -> np.ndarray:
        """The recurrent state of new episodes: zeros [batch_size, S] (S = 0: feed-forward)."""
        return np.zeros((batch_size, self.state_size), np.float32)

    def _split(self, state, batch_size: int):
        state = self.initial_state(batch_size) if state is None else state
        critic = state[:, self.actor_size :] if self.critic_size else state[:, : self.actor_size]
        return state[:, : self.actor_size], critic

    def params(self, observation: np.ndarray, state=None) -> dict[str, np.ndarray]:
        """The parameters of ActionSpec.param_dims(), each [B, width], as Actor.params computes them."""
        return self._params_and_state(observation, state)[0]

    def _features(self, observation, state):
        """(what the actor's head reads, the actor's next state or None), as Actor.features."""
        features = self.actor_torso(observation)
        next_state = None
        if self.recurrent:
            features, next_state = self.actor_memory(features, self._split(state, len(observation))[0])
        return features, next_state

    def _params_and_state(self, observation, state):
        features, next_state = self._features(observation, state)
        return self._head(features), next_state

    def _head(self, features):
        params = {}
        if self.kind != "box":
            params["logits"] = _forward(self.logits_head, features).astype(np.float32)
            if self.kind != "hybrid":
                return params
        loc = _forward(self.loc_head, features)
        if self.center is not None:
            loc = self.center + self.half_range * np.tanh(loc)
        if self.sigma_mode == "state_dependent":
            scale = np.logaddexp(0.0, _forward(self.scale_head, features)) + self.sigma_min
        elif self.sigma_mode == "gsde":  # networks.GaussianHead's gSDE scale, and the features
            variance = np.square(features) @ np.square(self.gsde_std)
            scale = np.sqrt(variance + GSDE_EPSILON) + self.sigma_min
            params["latent"] = features.astype(np.float32)
        else:
            scale = np.empty(loc.shape, np.float32)  # np.broadcast_to costs 7x this copy
            scale[...] = self.fixed_scale
        params.update(loc=loc.astype(np.float32, copy=False), scale=scale.astype(np.float32, copy=False))
        return params

    def _value_and_state(self, observation, state):
        features = self.critic_torso(observation)
        next_state = None
        if self.recurrent:
            features, next_state = self.critic_memory(features, self._split(state, len(observation))[1])
        return self._value(features), next_state

    def _value(self, features):
        value = _forward(self.value_head, features)[:, 0]
        if self.value_scale is None:
            return value
        std, mean = self.value_scale
        return value * std + mean

    def value(self, observation: np.ndarray, state=None) -> np.ndarray:
        return self._value_and_state(observation, state)[0]

    def _joined(self, actor_state, critic_state):
        return np.concatenate([actor_state, critic_state], axis=1) if self.critic_size else actor_state

    def reset_noise(self) -> None:
        """gSDE: new exploration weights [B, F, A] ~ N(0, std^2) for every env."""
        if self.sigma_mode == "gsde":
            shape = (self.num_envs, *self.gsde_std.shape)
            self.exploration = (self.rng.standard_normal(shape) * self.gsde_std).astype(np.float32)

    def _categorical(self, logits, mask, sample: bool) -> np.ndarray:
        """Samples (Gumbel-max) or takes the argmax of each row; [B, W] logits -> [B] int32."""
        if mask is not None:
            logits = np.where(mask, logits, -np.inf)
        if sample:
            logits = logits - np.log(-np.log(self.rng.uniform(1e-12, 1.0, logits.shape)))
        return np.argmax(logits, axis=-1).astype(np.int32)

    def _choose(self, params, mask, sample: bool) -> np.ndarray:
        spec = self.spec.action
        if self.kind == "discrete":
            return self._categorical(params["logits"], mask, sample)
        if self.kind == "binary":  # P(bit = 1) = sigmoid(logit): sample as u < sigmoid(logit).
            logits = params["logits"]
            if sample:
                return (self.rng.uniform(size=logits.shape) < 1.0 / (1.0 + np.exp(-logits))).astype(np.int32)
            return (logits > 0).astype(np.int32)
        if self.kind == "multi_discrete":
            bounds = np.cumsum(spec.nvec)[:-1]
            masks = [None] * len(spec.nvec) if mask is None else np.split(mask, bounds, axis=1)
            parts = np.split(params["logits"], bounds, axis=1)
            return np.stack([self._categorical(p, m, sample) for p, m in zip(parts, masks, strict=True)], -1)
        loc = params["loc"]
        if sample and "latent" in params:  # gSDE: the features through this env's weights
            continuous = loc + np.einsum("bf,bfa->ba", params["latent"], self.exploration)
        else:
            continuous = loc + params["scale"] * self.rng.standard_normal(loc.shape) if sample else loc
        if self.kind == "box":
            return continuous.astype(np.float32)
        action_type = self._categorical(params["logits"], mask, sample).astype(np.float32)
        return np.concatenate([action_type[:, None], continuous], axis=1).astype(np.float32)

    def check_parity(self, observation: np.ndarray, atol: float = 1e-4) -> None:
        """Raises ParityError unless this mirror gives the Keras networks' parameters and values
        on `observation` (one eager TensorFlow call; the first step makes it)."""
        import tensorflow as tf

        from tfppo.memory import split_state

        state = self.initial_state(len(observation))
        if self.recurrent:  # a state that is not zero, so the recurrent weights count
            state = np.random.default_rng(0).uniform(-0.5, 0.5, state.shape).astype(np.float32)
        actor_state, critic_state = split_state(tf.constant(state), self.actor, self.critic)
        expected = {k: v.numpy() for k, v in self.actor.params(observation, actor_state).items()}
        expected["value"] = self.critic(observation, critic_state).numpy()
        mirrored = {**self.params(observation, state), "value": self.value(observation, state)}
        for key, value in expected.items():
            error = float(np.max(np.abs(mirrored[key] - value))) if value.size else 0.0
            if not error <= atol * (1.0 + float(np.max(np.abs(value)))):
                raise ParityError(
                    f"the NumPy acting mirror's {key} differs from the Keras networks' by {error:.3g} "
                    "on the first observations: tfppo.numpy_policy no longer follows tfppo.networks; "
                    "train with --policy_backend=tf and report it"
                )
        self.checked = True

    def step(
        self, observation: np.ndarray, mask: np.ndarray | None = None, state=None
    ) -> dict[str, np.ndarray]:
        """Samples actions for [B, D] observations; returns action, value and the parameters
        (with --recurrent, "state": the next state, from `state` [B, S], default zeros)."""
        if not self.checked:
            self.check_parity(observation)
        if self.shared:  # as networks.shared_heads: the torso (and memory) once for both heads
            features, actor_state = self._features(observation, state)
            params, value, critic_state = self._head(features), self._value(features), None
        else:
            params, actor_state = self._params_and_state(observation, state)
            value, critic_state = self._value_and_state(observation, state)
        out = {"action": self._choose(params, mask, True), "value": value, **params}
        if self.recurrent:
            out["state"] = self._joined(actor_state, critic_state)
        return out

    def mode(self, observation: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return self._choose(self.params(observation), mask, False)

    def mode_and_state(self, observation: np.ndarray, mask: np.ndarray | None, state: np.ndarray):
        """(the deterministic action, the next recurrent state) from state [B, S]."""
        params, actor_state = self._params_and_state(observation, state)
        if not self.recurrent:
            return self._choose(params, mask, False), state
        # The critic's own memory advances too (none with --shared_torso: the actor's is the state).
        critic_state = self._value_and_state(observation, state)[1] if self.critic_size else None
        return self._choose(params, mask, False), self._joined(actor_state, critic_state)
