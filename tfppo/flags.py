"""absl flags: one per Config field, with the same name, and flags -> Config.

Only entry points (tfppo.train) import this module; library code never reads FLAGS.
"""

from __future__ import annotations

import dataclasses
import typing

from absl import flags

from tfppo import config as config_lib

HELP = {
    "env": "Gymnasium env id, or module:EnvId to import the module that registers it. Actions: Box, Discrete (masks from info or a Dict observation), MultiDiscrete, or Tuple/Dict of Discrete and Box (hybrid); observations: Box, or a Dict of a Box and an action_mask.",
    "env_kwargs": "Keyword arguments for the env's constructor (gym.make) as a JSON object, e.g. '{\"size\": 8}'.",
    "seed": "One seed for Python, NumPy, TF and the envs (env i gets seed + i).",
    "logdir": "Run directory; default runs/<env>_<method>_seed<seed>_<time>. Must be new unless --resume.",
    "resume": "Continue the run in --logdir from its latest checkpoint.",
    "total_timesteps": "Stop after this many env steps (0: no step limit).",
    "max_episodes": "Stop after this many finished episodes (0: no episode limit; the tutorial's EP_MAX).",
    "num_envs": "Envs stepped in parallel by one vector env; one policy call serves them all.",
    "vector_mode": "sync: envs in this process (gymnasium's SyncVectorEnv with a leaner step, tfppo.sync_vector); async: one subprocess per env; envpool: EnvPool's C++ batched envs (optional package).",
    "time_feature": "Append the episode's elapsed time t / T (T: the env's step limit) to the observation, as rl-baselines3-zoo's TimeFeatureWrapper does: truncation by the time limit becomes visible to the policy and the critic (gymnasium's TimeAwareObservation; a Box of one axis gets one more entry, other observations a 'time' key).",
    "eval_episodes": "Deterministic evaluation episodes at the end (summary.json eval_return_mean).",
    "eval_every": "Evaluate the deterministic policy every this many env steps on separate, seeded eval envs (metrics and TensorBoard eval_return_mean; the best is kept as LOGDIR/best/saved_model); 0: only at the end.",
    "eval_every_episodes": "Episodes per periodic evaluation (--eval_every); the same seeds every time, so evaluations compare.",
    "checkpoint_every": "Save a checkpoint every this many updates (and always at the end).",
    "use_mask": "Apply the env's invalid-action mask (info['action_mask'] or a Dict observation key) when sampling and training; false ignores it.",
    "jit_compile": "Compile the whole update with XLA: faster per update where TensorFlow's per-op overhead dominates (a recurrent update: docs/recurrent.md), after a longer first trace; results differ from the default in the last bits.",
    "compute_dtype": "The dtype tfppo's own torso layers (the CNN and the MLP behind it) compute in: bfloat16 runs their matmuls and convolutions in bfloat16 (Keras' mixed_bfloat16: weights, heads, losses and Adam stay float32), 1.6x faster per Atari update on a CPU with AVX512_BF16 (docs/atari.md); acting then uses the compiled TF policy, and exports compute in float32. Results differ from float32 in the low bits of every torso output.",
    "single_threaded_update": "Run the compiled update on TensorFlow's single-threaded executor: every kernel inline on the calling thread, none scheduled through the inter-op thread pool. Faster when the machine's other cores are busy (several runs side by side: a third less time per update on Pendulum and Hopper); slower or equal on an idle machine, where the default executor runs actor and critic kernels on two cores (benchmarks/README_speed.md). Results differ from the default in the last bits.",
    "intra_op_threads": "TensorFlow threads inside one op. 1 (default) was measured 26% faster per CartPole update than TF's default on 2 cores: small matmuls lose more to thread hand-offs than they gain; 0 keeps TF's default (try it for large networks).",
    "step_latency_ms": "Add this many milliseconds to every env step (a stand-in for an expensive simulator, for scaling benchmarks; 0: off).",
    "policy_backend": "Acting: numpy (a NumPy copy of the networks, synced after every update; fast) or tf (one compiled call per step).",
    "deterministic": "TF op determinism: the same seed gives the same metrics.",
    "num_steps": "Steps per env per rollout (the tutorial's BATCH with one env).",
    "gamma": "Discount factor.",
    "gae_lambda": "GAE lambda; 1.0 gives the tutorial's bootstrapped discounted returns.",
    "reward_shift": "Train on (r + reward_shift) * reward_scale; the tutorial's Pendulum scaling is shift 8, scale 0.125.",
    "reward_scale": "See --reward_shift. Episode returns are always reported from the raw reward.",
    "norm_obs": "Normalise observations by a running mean and std (from training data; saved in checkpoints and the SavedModel).",
    "norm_obs_clip": "Clip normalised observations to +- this.",
    "norm_reward": "Divide rewards by the running std of the discounted return (per env, reset at episode ends).",
    "norm_reward_clip": "Clip scaled rewards to +- this.",
    "norm_value": "Value-target normalisation (PopArt's ART with preserved outputs, van Hasselt et al. 2016): the critic's last layer predicts the return normalised by the running mean and std of every return seen, the value loss is taken in those units, and each update's new statistics rescale the last layer so V(s) is unchanged by them.",
    "train_on_clipped_actions": "Tutorial parity: train on the action clipped to the Box bounds (what the env got) instead of the raw sample, which biases log-probs at the bounds.",
    "norm_adv": "Advantage normalisation: none (the tutorial), batch, or minibatch.",
    "method": "clip: clipped surrogate; kl_pen: surrogate minus lambda * KL(old || new).",
    "clip_epsilon": "Clip range epsilon of the clipped surrogate.",
    "kl_target": "kl_pen: the KL target d_targ of the adaptive lambda rule.",
    "kl_lambda_init": "kl_pen: initial KL coefficient lambda (the tutorial's lam).",
    "kl_lambda_min": "kl_pen: lower bound of lambda.",
    "kl_lambda_max": "kl_pen: upper bound of lambda.",
    "kl_rule": "kl_pen: ppo (halve below target/1.5, double above 1.5 x target) or dppo (x0.5 below target/2, x1.5 above 2 x target).",
    "target_kl": "Stop the actor epochs once the batch KL exceeds this (> 0; unset: no such stop). kl_pen always stops at 4 x kl_target.",
    "ent_coef": "Entropy bonus coefficient.",
    "ratio": "Probability ratio: log_prob = exp(log pi - log pi_old) (exact); prob_eps = pi / (pi_old + 1e-5), the tutorial's, which under- or overflows for peaked densities.",
    "hybrid_ratio": "Hybrid actions, clip method: joint (one ratio of p(type) p(used parameters | type)) or per_head (H-PPO: the type's and the parameters' ratios clipped separately, losses summed).",
    "vf_coef": "Value-loss weight when --shared_torso (one optimizer for both losses) or --joint_grad_norm.",
    "clip_value": "PPO2 value clipping: keep V within +- this of the rollout's V (0: off).",
    "anneal_clip": "Decay --clip_epsilon linearly to 0 over the run.",
    "kl_hinge_coef": "kl_pen: add coef * max(0, KL - 2 x kl_target)^2 (Heess et al. 2017; 0: off).",
    "shared_torso": "Actor and critic share their hidden layers and one optimizer (--actor_lr).",
    "actor_lr": "Actor Adam learning rate (the tutorial's A_LR).",
    "critic_lr": "Critic Adam learning rate (the tutorial's C_LR).",
    "actor_epochs": "Actor passes over each batch (the tutorial's A_UPDATE_STEPS with one minibatch).",
    "critic_epochs": "Critic passes over each batch (the tutorial's C_UPDATE_STEPS).",
    "num_minibatches": "Minibatches per pass; must divide num_steps * num_envs. 1 = the tutorial.",
    "max_grad_norm": "Clip each network's global gradient norm to this (0: off).",
    "joint_grad_norm": "Clip actor and critic gradients by one global norm, the critic's weighted by --vf_coef, in steps that train both (as SB3's single optimizer does); off: each network separately.",
    "anneal_lr": "Decay both learning rates linearly to 0 over the run.",
    "hidden_sizes": "Hidden layer sizes of actor and critic, comma separated.",
    "critic_hidden_sizes": "Critic hidden layer sizes if they differ from --hidden_sizes (the tutorial's DPPO: actor 200, critic 100); empty: the same.",
    "activation": "Hidden layer activation.",
    "sigma": "Box actions: fixed (sigma_init, not trained), state_independent (trained log-std), state_dependent (a "
    "softplus head), gsde (generalized state-dependent exploration: noise = features x resampled weights).",
    "sde_sample_freq": "gSDE: resample the exploration weights every N env steps (-1: at each rollout start only).",
    "gsde_full_std": "gSDE: one trained log-std per (feature, action) pair (false: one per feature).",
    "sigma_init": "The fixed sigma, or the initial sigma of the trained modes.",
    "sigma_min": "Floor added to sigma so it never collapses to 0.",
    "squash_mean": "Box actions: mean = tanh scaled to the bounds (the tutorial's 2 * tanh on Pendulum).",
    "ortho_init": "Orthogonal initialisation (gain sqrt 2; 0.01 on the actor's last layer, 1 on the critic's).",
    "dense_init": "The Dense and Conv2D initialisation without --ortho_init: glorot (Keras' Glorot uniform, zero "
    "biases) or torch (PyTorch's default: kernels and biases U(+-1/sqrt(fan_in)), as SB3 with ortho_init=False).",
    "image_layout": "Image observations: channel axis last (hwc) or first (chw, transposed in the graph); auto: "
    "first axis <= 4 and smaller than the last means chw.",
    "cnn": "Image encoder before the MLP: nature (CleanRL ppo_atari's 3 convolutions), small (MinAtar's one "
    "16-filter 3x3 convolution), flatten (the pixels into the MLP); auto: nature when both image sides are "
    ">= 36 pixels.",
    "recurrent": "Memory for partially observed envs: an lstm or gru layer after the torso of the actor and "
    "of the critic (one, shared, with --shared_torso); none: feed-forward.",
    "rnn_units": "Units of the --recurrent layer.",
    "rnn_hidden_sizes": "--recurrent: an MLP (--activation) between the memory and the heads, as SB3's RecurrentPPO "
    "net_arch; empty: the heads read the memory's output, as CleanRL's ppo_atari_lstm.",
    "rnn_sequence_length": "--recurrent: steps per training sequence, each from the state stored at its first "
    "step (0: each env's whole rollout, CleanRL's scheme); must divide --num_steps.",
}

_CHOICES = {
    "method": config_lib.METHODS,
    "sigma": config_lib.SIGMA_MODES,
    "activation": config_lib.ACTIVATIONS,
    "norm_adv": config_lib.NORM_ADV_MODES,
    "kl_rule": config_lib.KL_RULES,
    "vector_mode": config_lib.VECTOR_MODES,
    "policy_backend": config_lib.POLICY_BACKENDS,
    "hybrid_ratio": config_lib.HYBRID_RATIOS,
    "ratio": config_lib.RATIOS,
    "image_layout": config_lib.IMAGE_LAYOUTS,
    "cnn": config_lib.CNNS,
    "recurrent": config_lib.RECURRENT,
    "dense_init": config_lib.DENSE_INITS,
    "compute_dtype": config_lib.COMPUTE_DTYPES,
}


# --helpfull groups: the Config field that opens each section (fields are in section order).
# The names sort before absl's own modules, so tfppo's flags come first.
_GROUP_STARTS = {
    "env": "1. experiment",
    "num_steps": "2. rollout, rewards and advantages",
    "method": "3. objective",
    "actor_lr": "4. optimisation",
    "hidden_sizes": "5. networks",
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines one flag per Config field, defaulting to the Config default, grouped for --helpfull."""
    hints = typing.get_type_hints(config_lib.Config)
    group = None
    for field in dataclasses.fields(config_lib.Config):
        name, default, kind = field.name, field.default, hints[field.name]
        group = _GROUP_STARTS.get(name, group)
        common = dict(flag_values=flag_values, module_name=group)
        help_text = HELP[name]
        if name in _CHOICES:
            flags.DEFINE_enum(name, default, list(_CHOICES[name]), help_text, **common)
        elif kind is bool:
            flags.DEFINE_bool(name, default, help_text, **common)
        elif kind is int:
            flags.DEFINE_integer(name, default, help_text, **common)
        elif kind is float or kind == (float | None):
            flags.DEFINE_float(name, default, help_text, **common)
        elif kind is str:
            flags.DEFINE_string(name, default, help_text, **common)
        else:  # Tuple[int, ...]
            flags.DEFINE_list(name, [str(v) for v in default], help_text, **common)


def to_config(flag_values: flags.FlagValues = flags.FLAGS) -> config_lib.Config:
    """Builds (and so validates) the Config from parsed flags."""
    values = {}
    for field in dataclasses.fields(config_lib.Config):
        value = flag_values[field.name].value
        if field.name in ("hidden_sizes", "critic_hidden_sizes", "rnn_hidden_sizes"):
            try:
                value = tuple(int(v) for v in value)
            except ValueError:
                raise config_lib.ConfigError(
                    f"--{field.name}={','.join(value)} must be integers, e.g. 64,64"
                ) from None
        values[field.name] = value
    return config_lib.Config(**values)


def explicitly_set(flag_values: flags.FlagValues = flags.FLAGS) -> set:
    """Names of Config flags given on the command line or in a flagfile."""
    return {f.name for f in dataclasses.fields(config_lib.Config) if flag_values[f.name].present}


def config_from_args(args: list[str]) -> config_lib.Config:
    """The Config that `python -m tfppo.train ARGS` gets, parsed by absl as the CLI does."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    flag_values(["tfppo", *args])
    return to_config(flag_values)


def config_from_flagfile(path: str, **overrides) -> config_lib.Config:
    """The Config a `--flagfile=path` run gets (plus overrides)."""
    return dataclasses.replace(config_from_args([f"--flagfile={path}"]), **overrides)
