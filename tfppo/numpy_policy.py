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

    The mirror follows keras.Sequential torsos of Dense layers with the activations above: the
    MLP tfppo builds, or a custom torso of the same form.
    """
    import keras

    found = []
    for torso in (actor.torso, critic.torso):
        if not isinstance(torso, keras.Sequential):
            found.append(type(torso).__name__)
            continue
        for layer in torso.layers:
            name = getattr(getattr(layer, "activation", None), "__name__", None)
            if type(layer) is not keras.layers.Dense or name not in _ACTIVATIONS:
                found.append(type(layer).__name__)
    return sorted(set(found))


class ParityError(RuntimeError):
    """The NumPy mirror and the Keras networks disagree: the mirror no longer follows networks.py."""


def _forward(layers, x):
    for kernel, bias, activation in layers:
        x = activation(x @ kernel + bias)
    return x


class NumpyPolicy:
    """Same interface as tfppo.policy.Policy: step, mode and value on NumPy arrays."""

    def __init__(self, actor, critic, spec: EnvSpec, seed: int):
        self.actor, self.critic, self.spec = actor, critic, spec
        self.kind = spec.action.kind
        self.rng = np.random.default_rng(seed)
        self.checked = False  # the first step compares this mirror with the Keras networks
        self.sync()

    def sync(self, weights: dict | None = None) -> None:
        """Copies the current weights of the Keras models.

        weights: {id(variable): value} of every variable, already read (tfppo.learner.Learner.weights
        after an update); None or empty: read from the models.
        """
        head = self.actor.head
        self.actor_torso = [_dense(layer, weights) for layer in self.actor.torso.layers]
        self.critic_torso = [_dense(layer, weights) for layer in self.critic.torso.layers]
        self.value_head = [_dense(self.critic.value, weights)]
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
        else:
            self.scale_head = [_dense(head.scale_head, weights)]
            self.sigma_min = np.float32(head.sigma_min)
        self.center, self.half_range = head.center, head.half_range

    def params(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        """The parameters of ActionSpec.param_dims(), each [B, width], as Actor.params computes them."""
        features = _forward(self.actor_torso, observation)
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
        else:
            scale = np.broadcast_to(self.fixed_scale, loc.shape)
        params.update(loc=loc.astype(np.float32), scale=scale.astype(np.float32))
        return params

    def value(self, observation: np.ndarray) -> np.ndarray:
        return _forward(self.value_head, _forward(self.critic_torso, observation))[:, 0]

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
        continuous = loc + params["scale"] * self.rng.standard_normal(loc.shape) if sample else loc
        if self.kind == "box":
            return continuous.astype(np.float32)
        action_type = self._categorical(params["logits"], mask, sample).astype(np.float32)
        return np.concatenate([action_type[:, None], continuous], axis=1).astype(np.float32)

    def check_parity(self, observation: np.ndarray, atol: float = 1e-4) -> None:
        """Raises ParityError unless this mirror gives the Keras networks' parameters and values
        on `observation` (one eager TensorFlow call; the first step makes it)."""
        expected = {k: v.numpy() for k, v in self.actor.params(observation).items()}
        expected["value"] = self.critic(observation).numpy()
        mirrored = {**self.params(observation), "value": self.value(observation)}
        for key, value in expected.items():
            error = float(np.max(np.abs(mirrored[key] - value))) if value.size else 0.0
            if not error <= atol * (1.0 + float(np.max(np.abs(value)))):
                raise ParityError(
                    f"the NumPy acting mirror's {key} differs from the Keras networks' by {error:.3g} "
                    "on the first observations: tfppo.numpy_policy no longer follows tfppo.networks; "
                    "train with --policy_backend=tf and report it"
                )
        self.checked = True

    def step(self, observation: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Samples actions for [B, D] observations; returns action, value and the parameters."""
        if not self.checked:
            self.check_parity(observation)
        params = self.params(observation)
        return {"action": self._choose(params, mask, True), "value": self.value(observation), **params}

    def mode(self, observation: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        return self._choose(self.params(observation), mask, False)
