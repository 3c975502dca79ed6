"""The speed benchmark's presets and each library's command line for them (no I/O, no imports
of any RL library): one set of hyperparameters per preset, written once in `Hyper`, turned into
SB3 keyword arguments, CleanRL flags, TF-Agents driver settings; tfppo reads its flagfile.
A recurrent Hyper (recurrent="lstm") runs on SB3's side as sb3-contrib's RecurrentPPO.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class Hyper:
    """One preset's PPO hyperparameters, in library-neutral words.

    vf_coef weighs the mean squared value error (SB3's and TF-Agents' scale; CleanRL weighs
    half of it, so it gets twice this). clip_value, when set, clips the value change to
    +-clip_value as CleanRL's clip_vloss does (which uses the policy's clip_coef). activation
    and ortho_init are the hidden layers' (tfppo's --activation, --ortho_init). recurrent
    ("lstm") puts an rnn_units LSTM in the actor and, separately, in the critic.
    """

    num_envs: int
    num_steps: int
    num_minibatches: int
    num_epochs: int
    gamma: float
    gae_lambda: float
    learning_rate: float
    anneal_lr: bool
    clip_epsilon: float = 0.2
    anneal_clip: bool = False
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    clip_value: float | None = None
    norm_obs: bool = False
    norm_reward: bool = False
    hidden_sizes: tuple = (64, 64)
    activation: str = "tanh"
    ortho_init: bool = True
    recurrent: str | None = None
    rnn_units: int = 64

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.batch_size // self.num_minibatches


@dataclasses.dataclass(frozen=True)
class Preset:
    env: str
    total_timesteps: int
    threshold: float
    hyper: Hyper
    sb3_variants: tuple  # (library label, extra PPO kwargs) in run order; "sb3" is the speed baseline
    tfppo_flags: tuple
    tfppo_optional: tuple = ()  # flags passed only if this tfppo defines them
    cleanrl_script: str | None = None  # a file of CleanRL's cleanrl/ folder; None: CleanRL not run
    cleanrl_env: str | None = None  # the env id CleanRL's script runs (None: env)
    sb3_env: str | None = None  # the env id SB3's driver runs (None: env)
    tfagents: bool = True
    env_kwargs: tuple = ()  # (name, value) pairs of gymnasium.make for the peers that make `env`
    # Atari: SB3 runs CnnPolicy on make_atari_env + VecFrameStack(4), CleanRL ppo_atari.py, both
    # on the raw NoFrameskip id (their wrappers add what tfppo/Atari-v0 has built in); so only
    # tfppo's venv measures a random-policy rate of the wrapped env the agents step.
    atari: bool = False

    @property
    def num_envs(self) -> int:
        return self.hyper.num_envs


PRESETS = {
    # rl-baselines3-zoo's CartPole-v1 (experiments/cartpole.flags).
    "cartpole": Preset(
        env="CartPole-v1",
        total_timesteps=100_000,
        threshold=475.0,
        hyper=Hyper(
            num_envs=8,
            num_steps=32,
            num_minibatches=1,
            num_epochs=20,
            gamma=0.98,
            gae_lambda=0.8,
            learning_rate=1e-3,
            anneal_lr=True,
            anneal_clip=True,
        ),
        sb3_variants=(("sb3", {}),),
        tfppo_flags=("--flagfile=experiments/cartpole.flags",),
        tfppo_optional=("--anneal_clip",),  # SB3's clip_range lin_0.2
        cleanrl_script="ppo.py",
    ),
    # rl-baselines3-zoo's Pendulum-v1 without gSDE (experiments/pendulum.flags).
    "pendulum": Preset(
        env="Pendulum-v1",
        total_timesteps=100_000,
        threshold=-200.0,
        hyper=Hyper(
            num_envs=4,
            num_steps=1024,
            num_minibatches=64,
            num_epochs=10,
            gamma=0.9,
            gae_lambda=0.95,
            learning_rate=1e-3,
            anneal_lr=False,
        ),
        # The zoo preset uses gSDE; tfppo's pendulum.flags is the plain Gaussian (its gSDE preset,
        # pendulum_gsde.flags, is not timed here): the speed ratio is taken against SB3 with the
        # same plain Gaussian policy ("sb3"); the gSDE runs are reported alongside.
        sb3_variants=(("sb3_gsde", dict(use_sde=True, sde_sample_freq=4)), ("sb3", {})),
        tfppo_flags=("--flagfile=experiments/pendulum.flags",),
        cleanrl_script="ppo_continuous_action.py",
    ),
    # CleanRL's MuJoCo defaults (experiments/hopper.flags); 2300 as in docs/benchmarks/hopper.
    "hopper": Preset(
        env="Hopper-v5",
        total_timesteps=1_000_000,
        threshold=2300.0,
        hyper=Hyper(
            num_envs=1,
            num_steps=2048,
            num_minibatches=32,
            num_epochs=10,
            gamma=0.99,
            gae_lambda=0.95,
            learning_rate=3e-4,
            anneal_lr=True,
            vf_coef=0.25,
            clip_value=0.2,
            norm_obs=True,
            norm_reward=True,
        ),
        sb3_variants=(("sb3", {}),),
        tfppo_flags=("--flagfile=experiments/hopper.flags",),
        cleanrl_script="ppo_continuous_action.py",
        # ppo_continuous_action.py needs gymnasium 0.29 (its TransformObservation call fails on
        # 1.x), which has Hopper up to v4 (same model and observation, older MuJoCo bindings).
        cleanrl_env="Hopper-v4",
    ),
    # rl-baselines3-zoo's RecurrentPPO CartPoleNoVel-v1 as experiments/cartpole_novel_lstm.flags
    # changes it (rewards normalised, 10 epochs of 2 minibatches): CartPole observing cart
    # position and pole angle only. SB3's side is sb3-contrib's
    # RecurrentPPO on the same env, built by benchmarks/_sb3_recurrent_driver.py (no tfppo there).
    "cartpole_novel_lstm": Preset(
        env="tfppo/CartPoleNoVel-v0",
        total_timesteps=100_000,
        threshold=475.0,
        hyper=Hyper(
            num_envs=8,
            num_steps=32,
            num_minibatches=2,
            num_epochs=10,
            gamma=0.98,
            gae_lambda=0.8,
            learning_rate=1e-3,
            anneal_lr=True,
            anneal_clip=True,
            norm_obs=True,
            norm_reward=True,
            hidden_sizes=(64,),
            activation="relu",
            ortho_init=False,
            recurrent="lstm",
        ),
        sb3_variants=(("sb3_recurrent", {}),),
        tfppo_flags=("--flagfile=experiments/cartpole_novel_lstm.flags",),
        sb3_env="CartPoleNoVel-v1",
        tfagents=False,
    ),
    # CleanRL's ppo_atari.py on Breakout (experiments/atari_breakout.flags): 8 envs x 128 steps,
    # 4 epochs of 4 minibatches, the Nature CNN and a 512-unit layer shared by actor and critic.
    # 10M steps do not fit these CPUs (~50 env steps/s): pass a budget with --total_timesteps.
    # The threshold is CleanRL's published return at 10M (docs/atari.md).
    "atari_breakout": Preset(
        env="tfppo/Atari-v0",
        total_timesteps=10_000_000,
        threshold=415.0,
        hyper=Hyper(
            num_envs=8,
            num_steps=128,
            num_minibatches=4,
            num_epochs=4,
            gamma=0.99,
            gae_lambda=0.95,
            learning_rate=2.5e-4,
            anneal_lr=True,
            clip_epsilon=0.1,
            ent_coef=0.01,
            vf_coef=0.25,  # CleanRL's 0.5 on half the squared error
            clip_value=0.1,
            hidden_sizes=(512,),
            activation="relu",
        ),
        sb3_variants=(("sb3", {}),),
        tfppo_flags=("--flagfile=experiments/atari_breakout.flags",),
        cleanrl_script="ppo_atari.py",
        cleanrl_env="BreakoutNoFrameskip-v4",
        sb3_env="BreakoutNoFrameskip-v4",
        env_kwargs=(("game", "Breakout"),),  # TF-Agents steps tfppo/Atari-v0 itself
        atari=True,
    ),
}


def run_budget(hyper: Hyper, total_timesteps: int) -> int:
    """Env steps of a run: every library stops at the first update that reaches the budget."""
    return math.ceil(total_timesteps / hyper.batch_size) * hyper.batch_size


def schedule(value: float, anneal: bool):
    return {"linear": value} if anneal else value


def sb3_kwargs(hyper: Hyper, atari: bool = False) -> dict:
    """PPO(...) keyword arguments for benchmarks/_sb3_driver.py ({"linear": x}: x decaying to 0);
    RecurrentPPO(...)'s for benchmarks/_sb3_recurrent_driver.py when hyper.recurrent is set.
    atari: CnnPolicy, whose NatureCNN ends in the 512 relu units (no net_arch after it)."""
    kwargs = dict(
        n_steps=hyper.num_steps,
        batch_size=hyper.minibatch_size,
        n_epochs=hyper.num_epochs,
        gae_lambda=hyper.gae_lambda,
        gamma=hyper.gamma,
        ent_coef=hyper.ent_coef,
        vf_coef=hyper.vf_coef,
        max_grad_norm=hyper.max_grad_norm,
        learning_rate=schedule(hyper.learning_rate, hyper.anneal_lr),
        clip_range=schedule(hyper.clip_epsilon, hyper.anneal_clip),
    )
    if hyper.clip_value is not None:
        kwargs["clip_range_vf"] = hyper.clip_value
    policy = {}
    if atari:
        if (hyper.hidden_sizes, hyper.activation) != ((512,), "relu"):
            raise ValueError(f"SB3's NatureCNN ends in 512 relu units, not {hyper.hidden_sizes}")
    elif hyper.hidden_sizes != (64, 64):
        policy["net_arch"] = dict(pi=list(hyper.hidden_sizes), vf=list(hyper.hidden_sizes))
    if hyper.activation != "tanh" and not atari:
        policy["activation_fn"] = {"relu": "ReLU"}[hyper.activation]  # torch.nn's class, by name
    if not hyper.ortho_init:
        policy["ortho_init"] = False
    if hyper.recurrent:
        if hyper.recurrent != "lstm":
            raise ValueError(f"sb3-contrib's RecurrentPPO has an LSTM, not {hyper.recurrent}")
        policy.update(lstm_hidden_size=hyper.rnn_units, enable_critic_lstm=True)
    if policy:
        kwargs["policy_kwargs"] = policy
    return kwargs


def sb3_normalize(hyper: Hyper) -> dict | None:
    """VecNormalize keyword arguments (CleanRL's wrappers: clip observations and rewards at 10)."""
    if not (hyper.norm_obs or hyper.norm_reward):
        return None
    return dict(
        norm_obs=hyper.norm_obs,
        norm_reward=hyper.norm_reward,
        gamma=hyper.gamma,
        clip_obs=10.0,
        clip_reward=10.0,
    )


def flag(name: str, value: bool) -> str:
    return f"--{name}" if value else f"--no-{name}"


def cleanrl_args(preset: Preset, seed: int, total_timesteps: int) -> list[str]:
    """The command line of CleanRL's script (tyro flags) for this preset."""
    hyper = preset.hyper
    if hyper.clip_value not in (None, hyper.clip_epsilon):
        raise ValueError(f"CleanRL clips the value change by clip_coef only, not {hyper.clip_value}")
    if hyper.hidden_sizes != ((512,) if preset.atari else (64, 64)):
        raise ValueError(f"CleanRL's {preset.cleanrl_script} has other layers than {hyper.hidden_sizes}")
    return [
        *("--env-id", preset.cleanrl_env or preset.env),
        *("--seed", str(seed)),
        # CleanRL runs total_timesteps // batch_size iterations: give it the rounded-up budget.
        *("--total-timesteps", str(run_budget(hyper, total_timesteps))),
        *("--num-envs", str(hyper.num_envs)),
        *("--num-steps", str(hyper.num_steps)),
        *("--num-minibatches", str(hyper.num_minibatches)),
        *("--update-epochs", str(hyper.num_epochs)),
        *("--gamma", repr(hyper.gamma)),
        *("--gae-lambda", repr(hyper.gae_lambda)),
        *("--learning-rate", repr(hyper.learning_rate)),
        flag("anneal-lr", hyper.anneal_lr),
        *("--clip-coef", repr(hyper.clip_epsilon)),
        flag("clip-vloss", hyper.clip_value is not None),
        *("--ent-coef", repr(hyper.ent_coef)),
        *("--vf-coef", repr(2 * hyper.vf_coef)),
        *("--max-grad-norm", repr(hyper.max_grad_norm)),
        "--norm-adv",
        "--no-cuda",
    ]


def tfagents_hyper(hyper: Hyper) -> dict:
    """The --hyper JSON of benchmarks/_tfagents_driver.py."""
    keys = (
        "num_steps",
        "num_minibatches",
        "num_epochs",
        "gamma",
        "gae_lambda",
        "learning_rate",
        "anneal_lr",
        "clip_epsilon",
        "ent_coef",
        "vf_coef",
        "max_grad_norm",
        "clip_value",
        "norm_obs",
        "norm_reward",
    )
    return {**{key: getattr(hyper, key) for key in keys}, "hidden_sizes": list(hyper.hidden_sizes)}
