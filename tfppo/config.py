"""Every setting of a tfppo run: one frozen dataclass, its validation and derived values.

This module knows nothing about absl; `tfppo.flags` defines one flag per field with the same
name and builds a `Config` from them. Defaults are the literature's (PPO paper, CleanRL,
Stable-Baselines3) unless the docstring says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import traceback

METHODS = ("clip", "kl_pen")
SIGMA_MODES = ("fixed", "state_independent", "state_dependent", "gsde")
ACTIVATIONS = ("tanh", "relu", "elu")
NORM_ADV_MODES = ("none", "batch", "minibatch")
KL_RULES = ("ppo", "dppo")
VECTOR_MODES = ("sync", "async", "envpool")
POLICY_BACKENDS = ("numpy", "tf")
IMAGE_LAYOUTS = ("auto", "hwc", "chw")
CNNS = ("auto", "nature", "small", "flatten")
HYBRID_RATIOS = ("joint", "per_head")
RATIOS = ("log_prob", "prob_eps")
RECURRENT = ("none", "lstm", "gru")
DENSE_INITS = ("glorot", "torch")
COMPUTE_DTYPES = ("float32", "bfloat16")
# Seeds derived from --seed (per env, worker and resumed update) stay well inside int64 and
# TensorFlow's int32 stateless seeds.
MAX_SEED = 2**31 - 1


class ConfigError(ValueError):
    """A setting a user chose is invalid. The message names the value and what was expected."""


def user_error(what: str, error: Exception) -> ConfigError:
    """One line for an error the user's code raised: `what` raised it, its message's first line
    and the line of code that raised it (raise the result `from error` to keep the traceback)."""
    lines = str(error).strip().splitlines()
    frames = traceback.extract_tb(error.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name})" if frames else ""
    return ConfigError(f"{what} raised {type(error).__name__}: {lines[0] if lines else ''}{where}")


def call_user(what: str, function, *args, **kwargs):
    """Calls the user's code (an env factory, a torso builder); whatever it raises becomes a
    ConfigError naming `what` and the error (the original stays its __cause__)."""
    try:
        return function(*args, **kwargs)
    except ConfigError:
        raise
    except Exception as error:
        raise user_error(what, error) from error


@dataclasses.dataclass(frozen=True)
class Config:
    """One training run. The defaults are the default experiment: CartPole-v1 with the
    rl-baselines3-zoo PPO preset (8 envs x 32 steps, 20 epochs of one 256-sample minibatch,
    gamma 0.98, GAE lambda 0.8, learning rate 1e-3 and clip range 0.2 decaying linearly to 0).
    Flagfiles for other envs set every field that differs, the schedules included.

    Rollouts: every update collects `num_steps` steps from each of `num_envs` envs, so a batch
    holds N = num_steps * num_envs transitions, split into `num_minibatches` minibatches.
    The actor makes `actor_epochs` passes over the batch and the critic `critic_epochs` passes
    (the tutorial's A_UPDATE_STEPS and C_UPDATE_STEPS with one minibatch).
    """

    # Experiment.
    env: str = "CartPole-v1"
    env_kwargs: str = ""  # a JSON object of keyword arguments for gym.make (a dict is accepted too).
    seed: int = 0
    logdir: str = ""
    resume: bool = False
    total_timesteps: int = 100_000
    max_episodes: int = 0  # 0: no episode limit.
    num_envs: int = 8
    vector_mode: str = "sync"
    time_feature: bool = False  # append the episode's elapsed fraction t / T to the observation.
    eval_episodes: int = 10
    eval_every: int = 0  # env steps between periodic evaluations (0: only the final one).
    eval_every_episodes: int = 5  # deterministic episodes per periodic evaluation.
    checkpoint_every: int = 50  # updates between checkpoints; the last update always saves.
    use_mask: bool = True  # apply the env's invalid-action mask (False: to see what it buys).
    intra_op_threads: int = 1  # TF threads per op; 1 measured fastest for small networks (0: TF's default).
    jit_compile: bool = False  # XLA-compile the whole update (measured: docs/recurrent.md).
    # The dtype tfppo's own torso layers (CNN and MLP) compute in; weights, heads, losses and
    # optimizer stay float32, and exports compute in float32 (measured: docs/atari.md).
    compute_dtype: str = "float32"
    single_threaded_update: bool = False  # the update's kernels inline (TF's single-threaded executor).
    step_latency_ms: float = 0.0  # benchmarks: every env step also sleeps this long (a slow simulator).
    policy_backend: str = "numpy"  # acting: a NumPy mirror of the networks, or compiled TF.
    deterministic: bool = True  # TF op determinism: same seed, same numbers.

    # Rollout and advantages.
    num_steps: int = 32
    gamma: float = 0.98
    gae_lambda: float = 0.8
    reward_shift: float = 0.0  # env reward r is trained on as (r + reward_shift) * reward_scale.
    reward_scale: float = 1.0
    norm_adv: str = "batch"
    norm_obs: bool = False  # running mean/std observation normalisation (baked into the export).
    norm_obs_clip: float = 10.0
    norm_reward: bool = False  # divide rewards by the running std of the discounted return.
    norm_reward_clip: float = 10.0
    norm_value: bool = False  # the critic's head predicts returns normalised by their running mean and std.
    train_on_clipped_actions: bool = False  # the tutorial's bug: store the env's clipped action.

    # Objective.
    method: str = "clip"
    clip_epsilon: float = 0.2
    kl_target: float = 0.01
    kl_lambda_init: float = 0.5
    kl_lambda_min: float = 1e-4
    kl_lambda_max: float = 10.0
    kl_rule: str = "ppo"
    target_kl: float | None = None  # None: off; else stop the actor epochs once the batch KL exceeds it.
    ent_coef: float = 0.0
    ratio: str = "log_prob"  # exp(log pi - log pi_old), or the tutorial's pi / (pi_old + 1e-5).
    hybrid_ratio: str = "joint"  # hybrid actions: one ratio of the joint probability, or one per head.
    vf_coef: float = 0.5  # weight of the value loss when actor and critic share a torso.
    clip_value: float = 0.0  # 0: off; else PPO2's value clipping around the behaviour value.
    anneal_clip: bool = True  # decay clip_epsilon linearly to 0 over the run.
    kl_hinge_coef: float = 0.0  # kl_pen: coef * max(0, KL - 2 target)^2 (Heess et al. 2017).

    # Optimisation.
    actor_lr: float = 1e-3
    critic_lr: float = 1e-3
    actor_epochs: int = 20
    critic_epochs: int = 20
    num_minibatches: int = 1
    max_grad_norm: float = 0.5  # 0: no clipping.
    joint_grad_norm: bool = False  # one norm over actor and vf_coef * critic gradients (SB3's way).
    anneal_lr: bool = True

    # Networks.
    hidden_sizes: tuple[int, ...] = (64, 64)
    critic_hidden_sizes: tuple[int, ...] = ()  # empty: the critic uses hidden_sizes too.
    activation: str = "tanh"
    sigma: str = "state_independent"
    sigma_init: float = 1.0  # the fixed sigma, or the initial one for the trained modes.
    sigma_min: float = 1e-3  # floor added to every sigma so it never collapses to 0.
    # gSDE (--sigma=gsde): exploration weights resampled every sde_sample_freq env steps (-1: at
    # each rollout start only); full_std: one log-std per (feature, action) pair, else per feature.
    sde_sample_freq: int = -1
    gsde_full_std: bool = True
    squash_mean: bool = False  # loc = tanh(x) scaled to the Box bounds (the tutorial's 2*tanh).
    shared_torso: bool = False  # one torso for actor and critic, trained with one optimizer.
    ortho_init: bool = True  # orthogonal weights, gain sqrt(2); 0.01 on the actor's last layer.
    # Without ortho_init: "glorot" (Keras' Glorot uniform kernels, zero biases) or "torch"
    # (PyTorch's nn.Linear / nn.Conv2d default, kernels and biases U(+-1/sqrt(fan_in)): what SB3
    # and the rl-baselines3-zoo presets with ortho_init=False start from).
    dense_init: str = "glorot"
    # Image observations (Box of rank 3): "auto" takes a first axis <= 4 that is smaller than the
    # last for channels (CHW, transposed in the graph), else HWC.
    image_layout: str = "auto"
    # The image encoder before the --hidden_sizes MLP: "nature" (Mnih et al. 2015: 32 8x8/4,
    # 64 4x4/2, 64 3x3/1, as CleanRL's ppo_atari), "small" (MinAtar's: 16 3x3/1), "auto": nature
    # for images of 36 pixels or more on each side, else small; "flatten": no convolution, the
    # pixels straight into the MLP (gymnax-blines' MinAtar networks).
    cnn: str = "auto"
    # Memory (partially observed envs): an LSTM or GRU of rnn_units after the torso of the actor
    # and of the critic (one, shared, with --shared_torso). The update trains on sequences of
    # rnn_sequence_length steps (0: the whole rollout of each env, CleanRL's scheme), each from
    # the recurrent state the rollout stored at its first step; --num_minibatches splits the
    # sequences, so it must divide num_envs * num_steps / rnn_sequence_length.
    recurrent: str = "none"
    rnn_units: int = 64
    rnn_sequence_length: int = 0
    # An MLP between the memory and the heads (SB3 RecurrentPPO's net_arch after its LSTM);
    # empty: the heads read the memory's output (CleanRL's ppo_atari_lstm).
    rnn_hidden_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.env_kwargs, dict):  # Stored as canonical JSON text: one flag, one value.
            object.__setattr__(self, "env_kwargs", json.dumps(self.env_kwargs, sort_keys=True))
        _check_types(self)
        validate(self)

    @property
    def env_kwargs_dict(self) -> dict:
        return json.loads(self.env_kwargs) if self.env_kwargs else {}

    @property
    def batch_size(self) -> int:
        """N: transitions per update."""
        return self.num_steps * self.num_envs

    @property
    def minibatch_size(self) -> int:
        """M: transitions per gradient step."""
        return self.batch_size // self.num_minibatches

    @property
    def sequence_length(self) -> int:
        """L: steps per training sequence of a recurrent policy (the whole rollout by default)."""
        return self.rnn_sequence_length or self.num_steps

    @property
    def num_sequences(self) -> int:
        """Training sequences per update of a recurrent policy: num_envs * num_steps / L."""
        return self.num_envs * (self.num_steps // self.sequence_length)

    @property
    def critic_sizes(self) -> tuple[int, ...]:
        return self.critic_hidden_sizes or self.hidden_sizes

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """Inverse of to_dict after a JSON round trip (_check_types turns lists back to tuples)."""
        return cls(**values)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, f"--{name}={value!r} is not one of {', '.join(choices)}")


def _finite(name: str, value: float) -> None:
    _require(math.isfinite(value), f"--{name}={value} must be a finite number")


def _is_int(value) -> bool:  # Python's and NumPy's integers; not bool
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# What each annotation of Config accepts (the annotations are strings here: postponed evaluation).
_TYPES = {
    "int": (_is_int, "an integer"),
    "float": (_is_number, "a number"),
    "float | None": (lambda v: v is None or _is_number(v), "a number or None"),
    "bool": (lambda v: isinstance(v, bool), "True or False"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "tuple[int, ...]": (lambda v: isinstance(v, tuple) and all(map(_is_int, v)), "a tuple of integers"),
}


def _check_types(config: Config) -> None:
    """From Python a field can hold anything (the flags' parser checks theirs): a value of the
    wrong type is a ConfigError naming it; NumPy scalars become Python's and lists tuples, so
    the Config writes to flags.json and compares with a saved one."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(value, list):
            value = tuple(value)
        accepts, expected = _TYPES[field.type]
        _require(accepts(value), f"--{field.name}={value!r} must be {expected}")
        if field.type == "int":
            value = int(value)
        elif field.type.startswith("float") and value is not None:
            value = float(value)
        elif field.type.startswith("tuple"):
            value = tuple(int(v) for v in value)
        object.__setattr__(config, field.name, value)


def validate(config: Config) -> None:
    """Raises ConfigError naming the first bad value; runs before any env is made."""
    _require(bool(config.env), "--env must name a gymnasium env id, e.g. CartPole-v1")
    if config.env_kwargs:
        try:
            kwargs = json.loads(config.env_kwargs)
        except ValueError:
            kwargs = None
        _require(
            isinstance(kwargs, dict),
            f"--env_kwargs={config.env_kwargs!r} must be a JSON object, e.g. '{{\"size\": 5}}'",
        )
    _require(
        0 <= config.seed <= MAX_SEED,  # an integer: _check_types
        f"--seed={config.seed} must be an integer in [0, {MAX_SEED}]",
    )
    _choice("method", config.method, METHODS)
    _choice("sigma", config.sigma, SIGMA_MODES)
    _require(
        config.sde_sample_freq == -1 or config.sde_sample_freq >= 1,
        f"--sde_sample_freq={config.sde_sample_freq} must be -1 (at each rollout start) or >= 1 env steps",
    )
    _choice("activation", config.activation, ACTIVATIONS)
    _choice("norm_adv", config.norm_adv, NORM_ADV_MODES)
    _choice("kl_rule", config.kl_rule, KL_RULES)
    _choice("vector_mode", config.vector_mode, VECTOR_MODES)
    _choice("policy_backend", config.policy_backend, POLICY_BACKENDS)
    _choice("image_layout", config.image_layout, IMAGE_LAYOUTS)
    _choice("cnn", config.cnn, CNNS)
    _choice("dense_init", config.dense_init, DENSE_INITS)
    _choice("compute_dtype", config.compute_dtype, COMPUTE_DTYPES)
    _require(
        config.dense_init == "glorot" or not config.ortho_init,
        f"--dense_init={config.dense_init} is the initialisation without orthogonal init; add --noortho_init",
    )
    _choice("hybrid_ratio", config.hybrid_ratio, HYBRID_RATIOS)
    _choice("ratio", config.ratio, RATIOS)
    _choice("recurrent", config.recurrent, RECURRENT)
    for name in ("num_envs", "num_steps", "actor_epochs", "num_minibatches"):
        value = getattr(config, name)
        _require(value >= 1, f"--{name}={value} must be a positive integer")
    for name in (
        "critic_epochs",
        "eval_episodes",
        "eval_every",
        "max_episodes",
        "total_timesteps",
        "intra_op_threads",
    ):
        value = getattr(config, name)
        _require(value >= 0, f"--{name}={value} must be >= 0")
    _require(
        config.total_timesteps > 0 or config.max_episodes > 0,
        "--total_timesteps and --max_episodes are both 0: the run would never stop",
    )
    _require(
        not (config.time_feature and config.vector_mode == "envpool"),
        "--time_feature wraps gymnasium envs; it cannot be used with --vector_mode=envpool",
    )
    _require(
        config.eval_every_episodes >= 1,
        f"--eval_every_episodes={config.eval_every_episodes} must be a positive integer",
    )
    _require(config.checkpoint_every >= 1, f"--checkpoint_every={config.checkpoint_every} must be >= 1")
    floats = [f.name for f in dataclasses.fields(config) if isinstance(getattr(config, f.name), float)]
    for name in floats:
        _finite(name, getattr(config, name))
    positive = ("actor_lr", "critic_lr", "clip_epsilon", "kl_target", "sigma_init", "sigma_min")
    for name in positive + ("norm_obs_clip", "norm_reward_clip"):
        value = getattr(config, name)
        _require(value > 0, f"--{name}={value} must be > 0")
    for name in (
        "step_latency_ms",
        "ent_coef",
        "vf_coef",
        "clip_value",
        "kl_hinge_coef",
        "max_grad_norm",
        "kl_lambda_init",
    ):
        value = getattr(config, name)
        _require(value >= 0, f"--{name}={value} must be >= 0")
    _require(
        config.target_kl is None or config.target_kl > 0,
        f"--target_kl={config.target_kl} must be > 0 (leave it unset for no KL early stop)",
    )
    _require(0 <= config.gamma <= 1, f"--gamma={config.gamma} must be in [0, 1]")
    _require(0 <= config.gae_lambda <= 1, f"--gae_lambda={config.gae_lambda} must be in [0, 1]")
    _require(config.reward_scale != 0, "--reward_scale=0 would erase every reward")
    _require(
        0 < config.kl_lambda_min <= config.kl_lambda_max,
        f"--kl_lambda_min={config.kl_lambda_min} and --kl_lambda_max={config.kl_lambda_max} "
        "must satisfy 0 < min <= max",
    )
    _require(
        not config.shared_torso or config.critic_epochs == config.actor_epochs,
        f"--shared_torso trains one loss: --critic_epochs={config.critic_epochs} must equal "
        f"--actor_epochs={config.actor_epochs}",
    )
    _require(
        len(config.hidden_sizes) >= 1 or config.recurrent != "none",
        "--hidden_sizes needs at least one layer, e.g. 64,64 (it may be empty with --recurrent: the memory reads the observation)",
    )
    for name in ("hidden_sizes", "critic_hidden_sizes", "rnn_hidden_sizes"):
        for size in getattr(config, name):
            _require(size >= 1, f"--{name} contains {size}; every layer needs >= 1 unit")
    _require(
        not config.shared_torso or config.critic_sizes == config.hidden_sizes,
        f"--shared_torso shares one torso: --critic_hidden_sizes={','.join(map(str, config.critic_hidden_sizes))} "
        "must be empty or equal --hidden_sizes",
    )
    _validate_recurrent(config)
    _require(
        config.batch_size % config.num_minibatches == 0,
        f"--num_minibatches={config.num_minibatches} does not divide the batch of "
        f"{config.batch_size} (= --num_steps {config.num_steps} x --num_envs {config.num_envs})",
    )


def _validate_recurrent(config: Config) -> None:
    _require(config.rnn_units >= 1, f"--rnn_units={config.rnn_units} must be a positive integer")
    length = config.rnn_sequence_length
    _require(
        0 <= length and (length == 0 or config.num_steps % length == 0),
        f"--rnn_sequence_length={length} must be 0 (the whole rollout) or divide --num_steps={config.num_steps}",
    )
    if config.recurrent == "none":
        _require(
            not config.rnn_hidden_sizes,
            "--rnn_hidden_sizes applies to a memory: set --recurrent=lstm or gru, or leave it empty",
        )
        return
    _require(
        config.num_sequences % config.num_minibatches == 0,
        f"--num_minibatches={config.num_minibatches} does not divide the {config.num_sequences} training "
        f"sequences of a --recurrent={config.recurrent} update (--num_envs {config.num_envs} x --num_steps "
        f"{config.num_steps} / --rnn_sequence_length {config.sequence_length})",
    )
