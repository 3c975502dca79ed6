r"""Trains one TF-Agents PPOClipAgent run for benchmarks/speed_vs_peers.py.

Runs under .venv-tfagents (TF-Agents 0.19 needs TF 2.15; never under tfppo's venv):

  .venv-tfagents/bin/python benchmarks/_tfagents_driver.py --env=CartPole-v1 --num_envs=8 \
      --seed=0 --total_timesteps=100000 --hyper='{"num_steps": 32, ...}' \
      --records=RUN.jsonl --summary=RUN.json

Built the way TF-Agents' own examples build PPO:
- envs: gymnasium envs behind a small `PyEnvironment` adapter (TF-Agents 0.19 ships suite_gym
  for the old `gym` package only, whose MuJoCo envs need mujoco-py), batched in one process by
  `BatchedPyEnvironment` and wrapped in `TFPyEnvironment`;
- collection: `DynamicStepDriver` (num_envs x num_steps env steps per update) running the
  agent's collect policy in a `common.function`, with `TFUniformReplayBuffer.add_batch` and the
  train metrics as observers (tf_agents/agents/ppo/examples/v2/train_eval_clip_agent.py);
- one minibatch (CartPole): `agent.train(replay_buffer.gather_all())` in a `common.function`,
  `num_epochs` gradient steps on the whole batch, as that example does;
- several minibatches (Pendulum, Hopper): the agent built with `num_epochs=1,
  compute_value_and_advantage_in_train=False, update_normalizers_in_train=False` and trained on
  minibatches by `PPOLearner`'s input pipeline, as tf_agents/examples/ppo/schulman17 does:
  normalizers updated, advantages computed by `agent.preprocess_sequence`, the batch flattened,
  repeated `num_epochs` times, shuffled with a buffer of one batch, cut into [M, 1] minibatches,
  `agent.train` on each. schulman17 reads a Reverb table, whose sampler blocks until a new batch
  is written; `PPOLearner` itself keeps one long-lived prefetching iterator, which on a
  TFUniformReplayBuffer reads the buffer between updates (measured: "slice index -1 of
  dimension 1 out of bounds" at the 5th Hopper update). So the same pipeline is built per update
  here, inside one `common.function`; Reverb (dm-reverb) is not needed;
- networks: 64x64 tanh; discrete actions: `ActorDistributionNetwork` (categorical head);
  continuous: `PPOActorNetwork().create_sequential_actor_net` (orthogonal init, state-independent
  sigma, TF-Agents' MuJoCo preset); `ValueNetwork` with orthogonal init and tanh.
- --atari: the env is tfppo's own `tfppo/Atari-v0` (CleanRL's Atari wrappers), imported from
  the tfppo tree in --tfppo_dir, so TF-Agents steps exactly the env tfppo steps; uint8 frames
  [4, 84, 84] go into the replay buffer as they are. Both networks are the Nature CNN (32x8x8
  stride 4, 64x4x4 stride 2, 64x3x3 stride 1) and 512 relu units, as `conv_layer_params` and
  `fc_layer_params` of `ActorDistributionNetwork` and `ValueNetwork`, behind a preprocessing
  layer that scales the frames by 1/255 and moves the frame axis last. PPOClipAgent takes the
  actor and the value network as two networks, so TF-Agents runs two CNNs where CleanRL, SB3 and
  tfppo share one torso between the heads. The reported return is the game score (the env's
  RecordEpisodeStatistics), not TF-Agents' AverageReturnMetric of clipped per-life rewards.
- optimiser: `tf.compat.v1.train.AdamOptimizer(epsilon=1e-5)`, the learning rate decaying
  linearly over the updates when `anneal_lr` (schulman17's `learning_rate_fn`).

After every update one line goes to --records: global_step (TF-Agents' EnvironmentSteps
metric: env steps, not counting the boundary step that resets a finished env), episodes,
episode_return_mean (AverageReturnMetric over the last 100 episodes) and wall_s (seconds since
just before the envs and the agent were built). TensorFlow runs ops with --intra_op_threads
threads (tfppo's default is 1), inter-op threads left at TF's default as in tfppo.
"""

from __future__ import annotations

import argparse
import json
import math
import time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True)
    parser.add_argument("--num_envs", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--total_timesteps", type=int, required=True)
    parser.add_argument("--hyper", required=True, help="hyperparameters as JSON (see make_agent)")
    parser.add_argument("--records", required=True, help="jsonl written after every update")
    parser.add_argument("--summary", required=True, help="json written at the end")
    parser.add_argument("--intra_op_threads", type=int, default=1)
    parser.add_argument("--atari", action="store_true", help="tfppo/Atari-v0 and the Nature CNN")
    parser.add_argument("--env_kwargs", default="{}", help="JSON keyword arguments of gymnasium.make")
    parser.add_argument("--tfppo_dir", help="--atari: the tfppo tree whose tfppo.atari makes the env")
    args = parser.parse_args()
    if args.atari and not args.tfppo_dir:
        parser.error("--atari needs --tfppo_dir (the env is tfppo's tfppo/Atari-v0)")
    return args


def make_env_class(env_kwargs: dict, atari: bool, scores: list):
    """A TF-Agents PyEnvironment around one gymnasium env: float32 observations, or with `atari`
    the uint8 frames as they are and each finished game's score appended to `scores`."""
    import gymnasium
    import numpy as np
    from tf_agents.environments import py_environment
    from tf_agents.specs import array_spec
    from tf_agents.trajectories import time_step as ts

    class GymnasiumEnv(py_environment.PyEnvironment):
        def __init__(self, env_id: str, seed: int):
            super().__init__(handle_auto_reset=True)  # a step after the last one resets the env
            self._env = gymnasium.make(env_id, **env_kwargs)
            self._seed = seed
            obs_space, action_space = self._env.observation_space, self._env.action_space
            self._dtype = obs_space.dtype if atari else np.float32
            limits = np.iinfo(self._dtype) if atari else np.finfo(np.float32)
            self._observation_spec = array_spec.BoundedArraySpec(
                obs_space.shape,
                self._dtype,
                np.maximum(obs_space.low, limits.min).astype(self._dtype),
                np.minimum(obs_space.high, limits.max).astype(self._dtype),
                name="observation",
            )
            self._discrete = isinstance(action_space, gymnasium.spaces.Discrete)
            if self._discrete:
                self._action_spec = array_spec.BoundedArraySpec(
                    (), np.int64, 0, action_space.n - 1, name="action"
                )
            else:
                self._low, self._high = action_space.low, action_space.high
                self._action_spec = array_spec.BoundedArraySpec(
                    action_space.shape, np.float32, self._low, self._high, name="action"
                )

        def observation_spec(self):
            return self._observation_spec

        def action_spec(self):
            return self._action_spec

        def _reset(self):
            observation, _ = self._env.reset(seed=self._seed)
            self._seed = None  # seed the first reset only, as the other libraries do
            return ts.restart(observation.astype(self._dtype))

        def _step(self, action):
            action = int(action) if self._discrete else np.clip(action, self._low, self._high)
            observation, reward, terminated, truncated, info = self._env.step(action)
            observation, reward = observation.astype(self._dtype), np.float32(reward)
            if atari and "episode" in info:  # the game ended (not a life): its raw score
                scores.append(float(info["episode"]["r"]))
            if terminated:
                return ts.termination(observation, reward)
            if truncated:  # the time limit, as suite_gym's TimeLimit wrapper reports it
                return ts.truncation(observation, reward)
            return ts.transition(observation, reward)

    return GymnasiumEnv


NATURE_CNN = ((32, 8, 4), (64, 4, 2), (64, 3, 1))  # (filters, kernel size, stride) per layer


def frames_layer():
    """uint8 frames [B, F, H, W] -> float32 [B, H, W, F] in [0, 1] (TF's CPU convolutions are NHWC)."""
    import tensorflow as tf

    return tf.keras.layers.Lambda(lambda x: tf.transpose(tf.cast(x, tf.float32) / 255.0, [0, 2, 3, 1]))


def make_agent(tf_env, hyper: dict, seed: int, num_updates: int, current_update, atari: bool = False):
    import tensorflow as tf
    from tf_agents.agents.ppo import ppo_actor_network, ppo_clip_agent
    from tf_agents.networks import actor_distribution_network, value_network
    from tf_agents.specs import tensor_spec

    observation_spec, action_spec = tf_env.observation_spec(), tf_env.action_spec()
    hidden = tuple(hyper["hidden_sizes"])

    def torso():  # --atari: the Nature CNN before the dense layers (a layer object serves one network)
        return dict(preprocessing_layers=frames_layer(), conv_layer_params=NATURE_CNN) if atari else {}

    activation = tf.keras.activations.relu if atari else tf.keras.activations.tanh  # CleanRL's ppo_atari
    if tensor_spec.is_discrete(action_spec):
        actor_net = actor_distribution_network.ActorDistributionNetwork(
            observation_spec,
            action_spec,
            fc_layer_params=hidden,
            activation_fn=activation,
            kernel_initializer=tf.keras.initializers.Orthogonal(seed=seed),
            **torso(),
        )
    elif atari:
        raise SystemExit("error: --atari needs a discrete action space")
    else:
        actor_net = ppo_actor_network.PPOActorNetwork().create_sequential_actor_net(
            hidden, action_spec, seed=seed
        )
    value_net = value_network.ValueNetwork(
        observation_spec,
        fc_layer_params=hidden,
        activation_fn=activation,
        kernel_initializer=tf.keras.initializers.Orthogonal(seed=seed + 1),
        **torso(),
    )
    learning_rate = hyper["learning_rate"]
    if hyper["anneal_lr"]:

        def learning_rate_fn():  # schulman17's linear decay, one step per update
            return learning_rate * (1 - tf.cast(current_update, tf.float32) / num_updates)

    else:

        def learning_rate_fn():
            return learning_rate

    minibatched = hyper["num_minibatches"] > 1
    agent = ppo_clip_agent.PPOClipAgent(
        tf_env.time_step_spec(),
        action_spec,
        optimizer=tf.compat.v1.train.AdamOptimizer(learning_rate=learning_rate_fn, epsilon=1e-5),
        actor_net=actor_net,
        value_net=value_net,
        importance_ratio_clipping=hyper["clip_epsilon"],
        lambda_value=hyper["gae_lambda"],
        discount_factor=hyper["gamma"],
        entropy_regularization=hyper["ent_coef"],
        value_pred_loss_coef=hyper["vf_coef"],
        num_epochs=1 if minibatched else hyper["num_epochs"],
        use_gae=True,
        use_td_lambda_return=True,
        normalize_rewards=hyper["norm_reward"],
        normalize_observations=hyper["norm_obs"],
        gradient_clipping=hyper["max_grad_norm"],
        value_clipping=hyper["clip_value"],
        compute_value_and_advantage_in_train=not minibatched,
        update_normalizers_in_train=not minibatched,
    )
    agent.initialize()
    return agent


def make_train_fn(agent, replay_buffer, hyper: dict, batch_size: int):
    """Returns train(): one PPO update on the replay buffer's contents, in one compiled call."""
    import tensorflow as tf
    from tf_agents.networks import utils
    from tf_agents.utils import common

    if hyper["num_minibatches"] == 1:  # the v2 example: num_epochs steps on the whole batch
        return common.function(lambda: agent.train(experience=replay_buffer.gather_all()).loss)

    num_epochs, minibatch_size = hyper["num_epochs"], batch_size // hyper["num_minibatches"]

    @common.function(autograph=True)  # the `for` over the minibatches becomes a graph loop
    def train():
        # PPOLearner's steps, in its order: update the normalizers, compute advantages and
        # returns (agent.preprocess_sequence), flatten [B, T+1] into single steps, repeat
        # num_epochs times, shuffle with a buffer of one batch, minibatches of [M, 1].
        trajectories = replay_buffer.gather_all()
        agent.update_observation_normalizer(trajectories.observation)
        agent.update_reward_normalizer(trajectories.reward)
        experience = agent.preprocess_sequence(trajectories)
        frames = tf.size(trajectories.reward, out_type=tf.int64)
        minibatches = (
            tf.data.Dataset.from_tensors(experience)
            .repeat(num_epochs)
            .map(lambda sequence: tf.nest.map_structure(utils.BatchSquash(2).flatten, sequence))
            .unbatch()
            .shuffle(batch_size)
            .batch(1, drop_remainder=True)
            .batch(minibatch_size, drop_remainder=True)
            .take(frames // minibatch_size * num_epochs)  # PPOLearner's count of train steps
        )
        loss = tf.constant(0.0)
        for minibatch in minibatches:
            loss = agent.train(experience=minibatch).loss
        return loss

    return train


def main() -> None:
    args = parse_args()
    hyper = json.loads(args.hyper)
    import numpy as np
    import tensorflow as tf
    import tf_agents
    from tf_agents.drivers import dynamic_step_driver
    from tf_agents.environments import batched_py_environment, tf_py_environment
    from tf_agents.metrics import tf_metrics
    from tf_agents.replay_buffers import tf_uniform_replay_buffer
    from tf_agents.utils import common

    tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    tf.random.set_seed(args.seed)
    np.random.seed(args.seed)
    tf.constant(0.0) + 1.0  # initialises the TF runtime before the clock (library start-up)
    if args.atari:
        import sys

        sys.path.insert(0, args.tfppo_dir)
        from tfppo import atari as tfppo_atari  # gymnasium and NumPy only: no TensorFlow

        tfppo_atari.ensure_registered(args.env)
    scores = []  # --atari: finished games' scores
    env_class = make_env_class(json.loads(args.env_kwargs), args.atari, scores)
    batch_size = args.num_envs * hyper["num_steps"]
    num_updates = math.ceil(args.total_timesteps / batch_size)
    with open(args.records, "w", encoding="utf-8") as records_file:
        started = time.perf_counter()
        py_env = batched_py_environment.BatchedPyEnvironment(
            [env_class(args.env, args.seed + i) for i in range(args.num_envs)], multithreading=False
        )
        tf_env = tf_py_environment.TFPyEnvironment(py_env)
        current_update = tf.Variable(0, dtype=tf.int64)
        agent = make_agent(tf_env, hyper, args.seed, num_updates, current_update, args.atari)
        # Room for the boundary steps (env resets) the driver adds beyond num_steps per env.
        max_length = 2 * hyper["num_steps"] + 2
        replay_buffer = tf_uniform_replay_buffer.TFUniformReplayBuffer(
            agent.collect_data_spec, batch_size=args.num_envs, max_length=max_length
        )
        env_steps = tf_metrics.EnvironmentSteps()
        episodes = tf_metrics.NumberOfEpisodes()
        returns = tf_metrics.AverageReturnMetric(batch_size=args.num_envs, buffer_size=100)
        driver = dynamic_step_driver.DynamicStepDriver(
            tf_env,
            agent.collect_policy,
            observers=[replay_buffer.add_batch, env_steps, episodes, returns],
            num_steps=batch_size,
        )
        collect = common.function(driver.run, autograph=False)
        train = make_train_fn(agent, replay_buffer, hyper, batch_size)
        constructed = time.perf_counter()
        while int(env_steps.result()) < args.total_timesteps:
            collect()
            frames = int(replay_buffer.num_frames()) // args.num_envs
            if frames >= max_length:
                raise SystemExit(f"error: the replay buffer ({max_length} per env) overflowed")
            train()
            replay_buffer.clear()
            current_update.assign_add(1)
            if args.atari:  # games, not TF-Agents' episodes (lives)
                finished, mean = len(scores), float(np.mean(scores[-100:])) if scores else None
            else:
                finished = int(episodes.result())
                mean = float(returns.result()) if finished else None
            record = {
                "global_step": int(env_steps.result()),
                "episodes": finished,
                "episode_return_mean": mean,
                "wall_s": time.perf_counter() - started,
                "gradient_steps": int(agent.train_step_counter.numpy()),
            }
            records_file.write(json.dumps(record) + "\n")
        ended = time.perf_counter()
    summary = {
        "steps": int(env_steps.result()),
        "construct_s": constructed - started,
        "total_s": ended - started,
        "updates": int(current_update.numpy()),
        "gradient_steps": int(agent.train_step_counter.numpy()),
        "tf_agents": tf_agents.__version__,
        "tensorflow": tf.__version__,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "gymnasium": __import__("gymnasium").__version__,
    }
    with open(args.summary, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
