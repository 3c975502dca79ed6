"""Recurrent policies (--recurrent=lstm|gru): the cell against Keras' own cells, sequences
against step-by-step acting (the first epoch's ratio is 1), state resets at episode starts, a
sequence split across rollouts, the NumPy mirror, every action kind, the export carrying the
state, and the configuration errors."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

import tfppo
from tests.helpers import blocking_prelude, make_tempdir, run_module, run_script
from tfppo import envs, memory_envs, networks, numpy_policy, rollout
from tfppo import export as export_lib
from tfppo.config import Config, ConfigError
from tfppo.envs import ActionSpec, EnvSpec
from tfppo.learner import Learner
from tfppo.memory import Memory, state_sizes
from tfppo.policy import Policy

BOX = EnvSpec(
    (3,),
    ActionSpec("box", shape=(2,), low=np.array([-2, -2], np.float32), high=np.array([2, 2], np.float32)),
    False,
)
CONFIG = Config(hidden_sizes=(8,), recurrent="lstm", rnn_units=5, num_envs=3, num_steps=8)


def keras_cell(kind: str, memory: Memory):
    """Keras' own LSTMCell / GRUCell (reset_after) holding the Memory's weights."""
    import keras

    cell = keras.layers.LSTMCell(memory.units) if kind == "lstm" else keras.layers.GRUCell(memory.units)
    cell.build((None, memory.kernel.shape[0]))
    cell.set_weights([memory.kernel.numpy(), memory.recurrent_kernel.numpy(), memory.bias.numpy()])
    return cell


class MemoryTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.parameters("lstm", "gru")
    def test_one_step_equals_keras_cell(self, kind):
        memory = Memory(kind, 4, name="memory")
        rng = np.random.default_rng(0)
        features = rng.normal(size=(3, 6)).astype(np.float32)
        state = rng.normal(size=(3, memory.state_size)).astype(np.float32)
        memory(features, state)  # build
        memory.bias.assign(rng.normal(size=memory.bias.shape).astype(np.float32))
        outputs, next_state = memory(features, state)
        cell = keras_cell(kind, memory)
        states = [state[:, :4], state[:, 4:]] if kind == "lstm" else [state]
        expected, expected_states = cell(features, states)
        self.assertAllClose(outputs, expected, atol=1e-6)
        self.assertAllClose(next_state, np.concatenate([s.numpy() for s in expected_states], 1), atol=1e-6)

    @parameterized.parameters("lstm", "gru")
    def test_sequence_equals_steps_with_resets_and_splits(self, kind):
        memory = Memory(kind, 4, name="memory")
        rng = np.random.default_rng(1)
        length, batch = 6, 2
        features = rng.normal(size=(length * batch, 5)).astype(np.float32)
        starts = np.zeros((length, batch), bool)
        starts[3, 0] = starts[1, 1] = True  # episodes begin mid-sequence
        state = rng.normal(size=(batch, memory.state_size)).astype(np.float32)
        memory(features[:batch], state)
        outputs, final = memory.sequence(features, starts.reshape(-1), state)
        stepped, expected = [], state
        for t in range(length):
            expected = np.where(starts[t][:, None], 0.0, expected)
            out, expected = memory(features[t * batch : (t + 1) * batch], expected)
            stepped.append(out.numpy())
        self.assertAllClose(outputs, np.concatenate(stepped), atol=1e-6)
        self.assertAllClose(final, expected, atol=1e-6)
        # The same sequence in two halves, the state carried between them.
        half = 3 * batch
        first, carried = memory.sequence(features[:half], starts.reshape(-1)[:half], state)
        second, last = memory.sequence(features[half:], starts.reshape(-1)[half:], carried)
        self.assertAllClose(np.concatenate([first, second]), outputs, atol=1e-6)
        self.assertAllClose(last, final, atol=1e-6)

    def test_state_sizes_separate_and_shared(self):
        actor, critic = networks.build(BOX, CONFIG)
        self.assertEqual(state_sizes(actor, critic), (10, 10))
        self.assertIsNot(actor.memory, critic.memory)
        actor, critic = networks.build(BOX, dataclasses.replace(CONFIG, shared_torso=True, recurrent="gru"))
        self.assertEqual(state_sizes(actor, critic), (5, 0))
        self.assertIs(actor.memory, critic.memory)


class ChainEnv:
    """A vector env of B envs whose episodes end at fixed steps: env b's episode ends
    (terminated) every 3 + b steps, and env 0 is truncated instead at its 2nd end."""

    def __init__(self, num_envs=3, dim=3):
        self.num_envs, self.dim, self.t, self.ends = num_envs, dim, np.zeros(num_envs, int), 0

    def _observation(self):
        return (
            np.stack([np.full(self.dim, 0.1 * t, np.float32) for t in self.t])
            + np.arange(self.num_envs, dtype=np.float32)[:, None]
        )

    def reset(self, seed=None):
        self.t[:] = 0
        return self._observation(), {}

    def step(self, action):
        self.t += 1
        done = self.t >= 3 + np.arange(self.num_envs)
        terminated, truncated = done.copy(), np.zeros(self.num_envs, bool)
        if done[0]:
            self.ends += 1
            if self.ends == 2:
                terminated[0], truncated[0] = False, True
        final = self._observation()
        self.t[done] = 0
        info = {"final_obs": np.array([final[i] if d else None for i, d in enumerate(done)], object)}
        return self._observation(), np.ones(self.num_envs), terminated, truncated, info


def collect(policy, steps, rollouts=1):
    collector = rollout.Collector(ChainEnv(), BOX, 0, 0.0, 1.0, state_size=policy.state_size)
    stored = []
    for _ in range(rollouts):
        storage = rollout.Rollout(steps, 3, BOX, policy.state_size)
        collector.collect(storage, policy.step, policy.value)
        stored.append(storage)
    return stored


class RolloutTest(tf.test.TestCase, parameterized.TestCase):
    def setUp(self):
        super().setUp()
        tf.random.set_seed(0)
        self.actor, self.critic = networks.build(BOX, CONFIG)

    def test_state_resets_where_episodes_end_and_final_state_bootstraps(self):
        policy = numpy_policy.NumpyPolicy(self.actor, self.critic, BOX, seed=0, num_envs=3)
        (storage,) = collect(policy, 8)
        done = storage.terminated | storage.truncated
        expected_start = np.concatenate([np.ones((1, 3), bool), done[:-1]])
        self.assertAllEqual(storage.start, expected_start)
        self.assertAllEqual(np.abs(storage.state[storage.start]).max(), 0.0)  # zero at every start
        self.assertGreater(np.abs(storage.state[~storage.start]).max(), 0.0)
        # Between episode starts the stored state is the previous step's final state.
        goes_on = ~storage.start[1:]
        self.assertAllClose(storage.state[1:][goes_on], storage.final_state[:-1][goes_on])
        # The truncation (env 0's 2nd episode end, at step 5) bootstraps with the state after the step.
        (t,) = np.flatnonzero(storage.truncated[:, 0])
        value = policy.value(storage.final_observation[t, :1], storage.final_state[t, :1])
        self.assertAllClose(storage.truncation_value[t, 0], value[0])
        self.assertNotAllClose(value, policy.value(storage.final_observation[t, :1]))  # the state matters

    @parameterized.parameters("numpy", "tf")
    def test_two_rollouts_equal_one_of_twice_the_length(self, backend):
        def make():
            if backend == "tf":
                return Policy(self.actor, self.critic, BOX, seed=0, num_envs=3)
            return numpy_policy.NumpyPolicy(self.actor, self.critic, BOX, seed=0, num_envs=3)

        (whole,) = collect(make(), 8)
        halves = collect(make(), 4, rollouts=2)
        for key in ("observation", "action", "state", "start", "behavior_value", "final_state"):
            joined = np.concatenate([getattr(h, key) for h in halves])
            self.assertAllClose(joined, getattr(whole, key), atol=1e-6, msg=key)

    def test_numpy_mirror_follows_the_networks(self):
        for config in (
            CONFIG,
            dataclasses.replace(CONFIG, recurrent="gru", shared_torso=True),
            dataclasses.replace(CONFIG, rnn_hidden_sizes=(6, 4)),
        ):
            actor, critic = networks.build(BOX, config)
            mirror = numpy_policy.NumpyPolicy(actor, critic, BOX, seed=0, num_envs=3)
            observation = np.random.default_rng(2).normal(size=(3, 3)).astype(np.float32)
            mirror.check_parity(observation, atol=1e-5)
            state = np.random.default_rng(3).normal(size=(3, mirror.state_size)).astype(np.float32)
            live = Policy(actor, critic, BOX, seed=0, num_envs=3)
            action, next_state = live.mode_and_state(observation, None, state)
            mirrored_action, mirrored_state = mirror.mode_and_state(observation, None, state)
            self.assertAllClose(mirrored_action, action, atol=1e-5)
            self.assertAllClose(mirrored_state, next_state, atol=1e-5)
            self.assertAllClose(mirror.step(observation, None, state)["state"], next_state, atol=1e-5)


def first_epoch_ratio(spec, config, policy_class, env):
    """exp(log pi(a|sequence) - behaviour log-prob) over a collected batch, before any update."""
    actor, critic = networks.build(spec, config)
    policy = policy_class(actor, critic, spec, 0, config.num_envs)
    collector = rollout.Collector(env, spec, 0, 0.0, 1.0, state_size=policy.state_size)
    storage = rollout.Rollout(config.num_steps, config.num_envs, spec, policy.state_size)
    collector.collect(storage, policy.step, policy.value)
    advantages, returns = storage.advantages(0.99, 0.95)
    learner = Learner(actor, critic, spec, config)
    batch = learner._sequences({k: tf.constant(v) for k, v in storage.flatten(advantages, returns).items()})
    behavior = learner._behavior(batch, batch.get("mask"))
    log_prob = learner._policy(batch).log_prob(batch["action"])
    ratios = [np.exp(log_prob - behavior.log_prob(batch["action"]))]
    for i in range(config.num_minibatches):  # and each minibatch of sequences alone
        indices = tf.range(i, config.num_sequences, config.num_minibatches)
        minibatch = learner._minibatch(batch, indices)
        log_prob = learner._policy(minibatch).log_prob(minibatch["action"])
        ratios.append(
            np.exp(
                log_prob - learner._behavior(minibatch, minibatch.get("mask")).log_prob(minibatch["action"])
            )
        )
    return np.concatenate(ratios), storage


class SequenceTrainingTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(
        ("lstm_numpy_whole", "lstm", numpy_policy.NumpyPolicy, 0, 1),
        ("lstm_tf_chunks", "lstm", Policy, 4, 3),
        ("gru_numpy_chunks", "gru", numpy_policy.NumpyPolicy, 2, 4),
        # gSDE: the scale is a function of the features after the memory, and so is the noise
        ("lstm_numpy_chunks_gsde", "lstm", numpy_policy.NumpyPolicy, 4, 3, "gsde"),
        ("gru_tf_whole_gsde", "gru", Policy, 0, 1, "gsde"),
    )
    def test_first_epoch_ratio_is_one(
        self, kind, policy_class, length, minibatches, sigma="state_independent"
    ):
        config = dataclasses.replace(
            CONFIG,
            recurrent=kind,
            rnn_sequence_length=length,
            num_minibatches=minibatches,
            rnn_hidden_sizes=(6,) if kind == "gru" else (),
            sigma=sigma,
            sigma_init=0.5,
        )
        ratio, storage = first_epoch_ratio(BOX, config, policy_class, ChainEnv())
        self.assertTrue(storage.start[1:].any())  # episodes started inside the sequences
        self.assertAllClose(ratio, np.ones_like(ratio), atol=2e-5)

    def test_updates_and_acting_trace_once(self):
        config = dataclasses.replace(CONFIG, rnn_sequence_length=4, num_minibatches=2)
        actor, critic = networks.build(BOX, config)
        policy = Policy(actor, critic, BOX, 0, config.num_envs)
        learner = Learner(actor, critic, BOX, config)
        collector = rollout.Collector(ChainEnv(), BOX, 0, 0.0, 1.0, state_size=policy.state_size)
        storage = rollout.Rollout(config.num_steps, config.num_envs, BOX, policy.state_size)
        mirror = numpy_policy.NumpyPolicy(actor, critic, BOX, 0, config.num_envs)
        for update in range(3):
            collector.collect(storage, policy.step, policy.value)
            metrics, weights = learner.update(storage.flatten(*storage.advantages(0.99, 0.95)), update / 3)
            self.assertTrue(all(np.isfinite(v) for v in metrics.values()))
            mirror.sync(weights)  # the memory's new weights reach the NumPy mirror
            mirror.check_parity(storage.observation[0], atol=1e-5)
        self.assertEqual(learner.compiled_update.experimental_get_tracing_count(), 1)
        self.assertEqual(policy.compiled_step.experimental_get_tracing_count(), 1)
        self.assertEqual(policy.compiled_value.experimental_get_tracing_count(), 1)

    def test_every_action_kind_and_observation_kind_trains(self):
        cases = [
            ("tfppo/MaskedGrid-v0", {}),
            ("tfppo/MaskedMultiDiscrete-v0", {}),
            ("tfppo/HybridMoving-v0", {"shared_torso": True}),
            ("tfppo/PendulumNoVel-v0", {"recurrent": "gru"}),
            ("tests.fake_envs:DictObservation-v0", {}),
        ]
        for env_id, overrides in cases:
            config = tfppo.Config(
                env=env_id,
                **{
                    **dict(
                        recurrent="lstm",
                        rnn_units=8,
                        hidden_sizes=(8,),
                        num_envs=2,
                        num_steps=16,
                        rnn_sequence_length=8,
                        num_minibatches=2,
                        actor_epochs=2,
                        critic_epochs=2,
                        total_timesteps=64,
                        eval_episodes=1,
                    ),
                    **overrides,
                },
            )
            summary = tfppo.train(config, logdir=os.path.join(make_tempdir(self), "run"))
            self.assertEqual(summary["global_step"], 64, env_id)
            self.assertTrue(np.isfinite(summary["eval_return_mean"]), env_id)


class ResumeTest(tf.test.TestCase):
    @pytest.mark.slow  # a recurrent export and load stay in the default run
    def test_resume_continues_a_recurrent_run(self):
        logdir = os.path.join(make_tempdir(self), "run")
        args = ["--env=tfppo/CartPoleNoVel-v0", "--recurrent=gru", "--rnn_units=8", "--num_envs=2"]
        first = run_module(
            "tfppo.train", *args, f"--logdir={logdir}", "--total_timesteps=128", "--eval_episodes=0"
        )
        self.assertEqual(first.returncode, 0, first.stderr[-2000:])
        again = run_module("tfppo.train", f"--logdir={logdir}", "--resume", "--total_timesteps=192")
        self.assertEqual(again.returncode, 0, again.stderr[-2000:])
        with open(os.path.join(logdir, "metrics.jsonl")) as f:
            self.assertEqual([json.loads(line)["global_step"] for line in f], [64, 128, 192])
        loaded = tfppo.load(logdir)
        self.assertEqual(loaded.state_size, 16)  # the actor's GRU state, then the critic's
        self.assertIn(loaded.act(np.zeros(2, np.float32)), (0, 1))


# Plays whole episodes through the exported model in an interpreter without tfppo, tfp or
# gymnasium: the state comes from initial_state and is fed back every step.
TF_ONLY_EPISODE = (
    blocking_prelude("tfppo", "tensorflow_probability", "gymnasium", "tf_keras")
    + r"""
import tensorflow as tf

model = tf.saved_model.load(sys.argv[1])
observations = np.load(sys.argv[2])["observation"]  # [T, 1, D]
state = model.initial_state(tf.constant(1))["recurrent_state"]
actions, values = [], []
for t, observation in enumerate(observations):
    if t == 5:  # a new episode: the memory starts again
        state = model.initial_state(tf.constant(1))["recurrent_state"]
    values.append(model.value(observation=observation, recurrent_state=state)["value"].numpy())
    out = model.action(observation=observation, recurrent_state=state)
    actions.append(out["action"].numpy())
    state = out["next_recurrent_state"]
np.savez(sys.argv[3], action=np.stack(actions), value=np.stack(values), state=state.numpy())
"""
)


class ExportTest(tf.test.TestCase):
    def test_tf_only_episode_matches_the_live_policy_step_by_step(self):
        config = dataclasses.replace(CONFIG, env="Test-v0")
        actor, critic = networks.build(BOX, config)
        actor.head.loc.bias.assign([1.5, -1.5])
        path = os.path.join(make_tempdir(self), "saved_model")
        export_lib.export(actor, critic, BOX, {"env": "Test-v0", "has_mask": False}, path)
        rng = np.random.default_rng(0)
        observations = rng.normal(size=(12, 1, 3)).astype(np.float32)
        directory = make_tempdir(self)
        np.savez(os.path.join(directory, "in.npz"), observation=observations)
        result = run_script(
            TF_ONLY_EPISODE, path, *(os.path.join(directory, f) for f in ("in.npz", "out.npz")), cwd=directory
        )
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        out = np.load(os.path.join(directory, "out.npz"))
        live = Policy(actor, critic, BOX, seed=0)
        state = live.initial_state(1)
        for t, observation in enumerate(observations):
            if t == 5:
                state = live.initial_state(1)
            self.assertAllClose(out["value"][t], live.value(observation, state), atol=1e-5)
            action, state = live.mode_and_state(observation, None, state)
            self.assertAllClose(out["action"][t], np.clip(action, -2, 2), atol=1e-5)
        self.assertAllClose(out["state"], state, atol=1e-5)
        loaded = tf.saved_model.load(path)
        self.assertEqual(json.loads(loaded.metadata()["json"].numpy())["state_size"], 20)

    def test_loaded_policy_carries_and_resets_the_state(self):
        config = dataclasses.replace(CONFIG, env="Test-v0", recurrent="gru")
        actor, critic = networks.build(BOX, config)
        path = os.path.join(make_tempdir(self), "saved_model")
        export_lib.export(
            actor,
            critic,
            BOX,
            {"env": "Test-v0", "has_mask": False, "observation_shape": [3], "action_kind": "box"},
            path,
        )
        loaded = tfppo.load(path)
        live = Policy(actor, critic, BOX, seed=0)
        observations = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)
        state = live.initial_state(1)
        for observation in observations:
            action, state = live.mode_and_state(observation[None], None, state)
            self.assertAllClose(loaded.act(observation), np.clip(action[0], -2, 2), atol=1e-5)
        loaded.reset()
        first, _ = live.mode_and_state(observations[:1], None, live.initial_state(1))
        self.assertAllClose(loaded.act(observations[0]), np.clip(first[0], -2, 2), atol=1e-5)


class ConfigTest(tf.test.TestCase):
    def test_errors_name_the_value(self):
        with self.assertRaisesRegex(ConfigError, "--rnn_sequence_length=5 must be 0 .* divide --num_steps=8"):
            dataclasses.replace(CONFIG, rnn_sequence_length=5)
        with self.assertRaisesRegex(
            ConfigError, "--num_minibatches=4 does not divide the 6 training sequences"
        ):
            dataclasses.replace(CONFIG, rnn_sequence_length=4, num_minibatches=4)
        with self.assertRaisesRegex(ConfigError, "--recurrent='rnn' is not one of none, lstm, gru"):
            dataclasses.replace(CONFIG, recurrent="rnn")
        with self.assertRaisesRegex(ConfigError, "--rnn_units=0"):
            dataclasses.replace(CONFIG, rnn_units=0)
        with self.assertRaisesRegex(ConfigError, "--rnn_hidden_sizes applies to a memory"):
            dataclasses.replace(CONFIG, recurrent="none", rnn_hidden_sizes=(8,))

    def test_no_velocity_envs_hide_the_velocities(self):
        import gymnasium as gym

        full, partial = gym.make("CartPole-v1"), gym.make("tfppo/CartPoleNoVel-v0")
        observation, _ = full.reset(seed=4)
        hidden, _ = partial.reset(seed=4)
        self.assertAllClose(hidden, observation[[0, 2]])
        for _ in range(5):
            observation, reward, *_ = full.step(1)
            hidden, hidden_reward, *_ = partial.step(1)
            self.assertAllClose(hidden, observation[[0, 2]])
            self.assertEqual(reward, hidden_reward)
        self.assertEqual(partial.spec.max_episode_steps, 500)
        pendulum = gym.make("tfppo/PendulumNoVel-v0")
        self.assertEqual(pendulum.observation_space.shape, (2,))
        self.assertEqual(pendulum.spec.max_episode_steps, 200)
        self.assertIs(memory_envs.PendulumNoVelEnv, type(pendulum.unwrapped))
        self.assertIsNotNone(envs)
