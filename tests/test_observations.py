"""Observation kinds: images (HWC / CHW, uint8 / bool), Discrete, MultiDiscrete, MultiBinary,
Dict and Tuple observations, MultiBinary actions; their storage, encoders, acting mirror,
training, checkpoints, export and the errors for spaces no encoder reads."""

import dataclasses
import io
import os
import sys
from contextlib import redirect_stdout

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

import tfppo
from tests import fake_envs
from tests.helpers import REPO, blocking_prelude, make_tempdir, run_module, run_script, tiny_config
from tfppo import agent as agent_lib
from tfppo import distributions, networks, numpy_policy, observations, trainer
from tfppo import envs as envs_lib
from tfppo.config import Config, ConfigError

spaces = gym.spaces

TINY = tiny_config(total_timesteps=128)

# (env id, env kwargs): one of each observation kind (and MultiBinary actions).
KINDS = (
    ("image_hwc_uint8", "tests.fake_envs:ImageSide-v0", {}),
    (
        "image_chw_bool",
        "tests.fake_envs:ImageSide-v0",
        {"shape": [8, 8, 3], "channels_first": True, "dtype": "bool"},
    ),
    ("dict_image_vector_discrete_mask", "tests.fake_envs:DictObservation-v0", {}),
    ("tuple_discrete_vector", "tests.fake_envs:TupleObservation-v0", {}),
    ("multibinary_observation_and_action", "tests.fake_envs:Bits-v0", {}),
    ("discrete", "FrozenLake-v1", {"is_slippery": False}),
)

# The tfppo packages and the env packages blocked: the export must run on TensorFlow alone.
TF_ONLY_SCRIPT = (
    blocking_prelude("tfppo", "tensorflow_probability", "gymnasium", "tf_keras", "tests")
    + r"""
import tensorflow as tf

model = tf.saved_model.load(sys.argv[1])
inputs = dict(np.load(sys.argv[2]))
out = {key: value.numpy() for key, value in model.signatures["action"](**inputs).items()}
np.savez(sys.argv[3], **out)
"""
)


def space_spec(space, layout="auto"):
    return observations.observation_spec(space, layout)[0]


class SpecTest(tf.test.TestCase, parameterized.TestCase):
    def test_kinds_storage_shape_and_dtype(self):
        cases = [
            (spaces.Box(-1, 1, (3,)), [("vector", (3,))], (3,), np.float32),
            (spaces.Box(0, 255, (84, 84, 4), np.uint8), [("image", (84, 84, 4))], (84, 84, 4), np.uint8),
            (spaces.Box(0, 1, (10, 10, 6), bool), [("image", (10, 10, 6))], (10, 10, 6), np.uint8),
            (spaces.Box(0, 1, (3, 8, 8), np.float32), [("image", (3, 8, 8))], (3, 8, 8), np.float32),
            (spaces.Discrete(500), [("discrete", ())], (1,), np.float32),  # indices above 255
            (spaces.Discrete(16), [("discrete", ())], (1,), np.uint8),
            (spaces.MultiBinary(5), [("binary", (5,))], (5,), np.uint8),
            (spaces.MultiDiscrete([3, 4]), [("multi_discrete", (2,))], (2,), np.uint8),
            (
                spaces.Dict({"a": spaces.Box(0, 255, (4, 4, 1), np.uint8), "b": spaces.Box(-1, 1, (2,))}),
                [("image", (4, 4, 1)), ("vector", (2,))],
                (18,),
                np.float32,
            ),
            (
                spaces.Tuple((spaces.Discrete(3), spaces.MultiBinary(2))),
                [("discrete", ()), ("binary", (2,))],
                (3,),
                np.uint8,
            ),
        ]
        for space, kinds, storage_shape, dtype in cases:
            spec = space_spec(space)
            self.assertEqual([(c.kind, c.shape) for c in spec.components], kinds, msg=str(space))
            self.assertEqual(spec.storage_shape, storage_shape, msg=str(space))
            self.assertEqual(spec.storage_dtype, np.dtype(dtype), msg=str(space))

    def test_channels_first_detection_and_flag(self):
        first = space_spec(spaces.Box(0, 255, (4, 84, 84), np.uint8)).single
        self.assertTrue(first.channels_first)
        self.assertEqual(first.image_hwc, (84, 84, 4))
        for shape in ((84, 84, 4), (10, 10, 6), (10, 10, 4), (8, 8, 8)):
            self.assertFalse(space_spec(spaces.Box(0, 255, shape, np.uint8)).single.channels_first, shape)
        self.assertTrue(space_spec(spaces.Box(0, 255, (6, 8, 8), np.uint8), "chw").single.channels_first)
        self.assertFalse(space_spec(spaces.Box(0, 255, (4, 84, 84), np.uint8), "hwc").single.channels_first)

    def test_dict_mask_key_is_the_mask_not_a_component(self):
        spec, has_mask = observations.observation_spec(
            spaces.Dict({"obs": spaces.Box(-1, 1, (3,)), "action_mask": spaces.MultiBinary(4)})
        )
        self.assertTrue(has_mask)
        self.assertTrue(spec.is_vector)  # one key beside the mask: stored as that space alone
        self.assertEqual(spec.storage_shape, (3,))

    @parameterized.named_parameters(
        ("text", spaces.Text(5), "Text"),
        ("graph", spaces.Graph(spaces.Box(-1, 1, (2,)), None), "Graph"),
        ("sequence", spaces.Sequence(spaces.Discrete(3)), "Sequence"),
        ("box_rank_2", spaces.Box(-1, 1, (3, 4)), "a Box of rank 2 has no encoder"),
        ("box_rank_4", spaces.Box(0, 255, (2, 3, 4, 5), np.uint8), "a Box of rank 4 has no encoder"),
        ("nested_dict", spaces.Dict({"a": spaces.Dict({"b": spaces.Discrete(2)})}), "Dict key 'a'"),
        ("empty_tuple", spaces.Tuple(()), "empty Tuple"),
    )
    def test_unsupported_spaces_are_named(self, space, expected):
        with self.assertRaisesRegex(ConfigError, expected) as caught:
            space_spec(space)
        self.assertNotIn("\n", str(caught.exception))
        if "Tuple" not in expected:
            self.assertIn("expected", str(caught.exception))

    def test_pack_and_export_feed_round_trip(self):
        env = fake_envs.DictObservationEnv()
        spec, _ = observations.observation_spec(env.observation_space)
        rows = [env.reset(seed=s)[0] for s in range(3)]
        batched = {k: np.stack([r[k] for r in rows]) for k in rows[0] if k != "action_mask"}
        stored = spec.pack(batched)
        self.assertEqual(stored.shape, (3, 36 + 2 + 1))
        self.assertEqual(stored.dtype, np.float32)
        feed = observations.export_feed(spec, stored)
        self.assertEqual(set(feed), {"image", "position", "goal"})
        for key, value in batched.items():
            self.assertAllEqual(feed[key], value)
            self.assertEqual(feed[key].shape, value.shape)
        self.assertEqual(feed["image"].dtype, np.uint8)
        self.assertEqual(feed["goal"].dtype, np.int64)
        tuple_spec = space_spec(spaces.Tuple((spaces.Discrete(4, start=1), spaces.Box(-1, 1, (2,)))))
        stored = tuple_spec.pack((np.array([1, 4]), np.zeros((2, 2), np.float32)))
        self.assertAllEqual(stored[:, 0], [0, 3])  # indices from `start`
        self.assertAllEqual(observations.export_feed(tuple_spec, stored)["observation_0"], [1, 4])


class EncoderTest(tf.test.TestCase):
    def test_cnn_output_shapes(self):
        cases = [
            ((84, 84, 4), "auto", 7 * 7 * 64),
            ((10, 10, 4), "auto", 8 * 8 * 16),
            ((10, 10, 6), "flatten", 600),
        ]
        for shape, cnn, features in cases:
            component = observations.Component("", "image", shape, "uint8")
            net = networks.make_cnn(component, Config(cnn=cnn), "cnn")
            self.assertEqual(net(tf.zeros((2,) + shape)).shape, (2, features), msg=str(shape))
        with self.assertRaisesRegex(ConfigError, "--cnn=nature .* needs larger images"):
            networks.make_cnn(
                observations.Component("", "image", (10, 10, 4), "uint8"), Config(cnn="nature"), "c"
            )

    def test_decode_scales_transposes_and_one_hots(self):
        image = space_spec(spaces.Box(0, 255, (2, 3, 3), np.uint8))  # CHW
        stored = np.arange(18, dtype=np.uint8).reshape(1, 2, 3, 3) * 10
        (decoded,) = networks.decode(image, tf.constant(stored))
        self.assertAllClose(decoded, np.transpose(stored, (0, 2, 3, 1)) / 255.0)
        mixed = space_spec(
            spaces.Tuple((spaces.Discrete(3, start=2), spaces.MultiBinary(2), spaces.Box(-5, 5, ())))
        )
        stored = mixed.pack((np.array([4, 2]), np.array([[1, 0], [0, 1]]), np.array([-2.5, 3.0], np.float32)))
        onehot, bits, scalar = (t.numpy() for t in networks.decode(mixed, tf.constant(stored)))
        self.assertAllEqual(onehot, [[0, 0, 1], [1, 0, 0]])
        self.assertAllEqual(bits, [[1, 0], [0, 1]])
        self.assertAllEqual(scalar, [[-2.5], [3.0]])

    def test_numpy_mirror_follows_every_encoder(self):
        # Dict (CNN + vector + one-hot), CHW bool image, a Nature CNN: same parameters and values.
        envs = (
            fake_envs.DictObservationEnv(),
            fake_envs.ImageSideEnv((8, 8, 3), channels_first=True, dtype="bool"),
            fake_envs.ImageSideEnv((40, 40, 2)),
        )
        for env in envs:
            spec = envs_lib.env_spec(env.observation_space, env.action_space, False)
            actor, critic = networks.build(spec, Config(hidden_sizes=(16,), activation="relu"))
            self.assertEqual(numpy_policy.unsupported_layers(actor, critic), [])
            rows = [env.reset(seed=s)[0] for s in range(4)]
            if isinstance(rows[0], dict):
                stored = spec.observation.pack({k: np.stack([r[k] for r in rows]) for k in rows[0]})
            else:
                stored = spec.observation.pack(np.stack(rows))
            mirror = numpy_policy.NumpyPolicy(actor, critic, spec, seed=0)
            mirror.check_parity(stored, atol=1e-5)
            self.assertTrue(mirror.checked)
        self.assertGreater(
            numpy_policy.conv_work(actor, critic), numpy_policy.CONV_WORK_LIMIT
        )  # 40x40: nature


def bfloat16_kernels(graph_def) -> set:
    """The ops of a GraphDef (and its functions) that compute on bfloat16 tensors."""
    from tensorflow.core.framework import types_pb2

    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return {n.op for n in nodes if any(v.type == types_pb2.DT_BFLOAT16 for v in n.attr.values())}


class ComputeDtypeTest(tf.test.TestCase):
    """--compute_dtype=bfloat16: tfppo's torso layers compute in bfloat16 on float32 weights;
    heads, losses and exports compute in float32."""

    def build(self, compute_dtype):
        env = fake_envs.DictObservationEnv()  # a CNN, a vector and a one-hot behind one MLP
        spec = envs_lib.env_spec(env.observation_space, env.action_space, False)
        tf.keras.utils.set_random_seed(0)
        config = Config(hidden_sizes=(16,), activation="relu", compute_dtype=compute_dtype)
        actor, critic = networks.build(spec, config)
        rows = [env.reset(seed=s)[0] for s in range(4)]
        stored = spec.observation.pack({k: np.stack([r[k] for r in rows]) for k in rows[0]})
        return spec, actor, critic, stored

    def outputs(self, actor, critic, stored):
        return {**actor.params(stored), "value": critic(stored)}

    def test_torso_in_bfloat16_on_the_same_float32_weights(self):
        spec, actor, critic, stored = self.build("bfloat16")
        _, actor32, critic32, _ = self.build("float32")
        variables, variables32 = actor.variables + critic.variables, actor32.variables + critic32.variables
        self.assertEqual(len(variables), len(variables32))
        for variable, variable32 in zip(variables, variables32, strict=True):
            self.assertEqual(variable.dtype, "float32", msg=variable.path)
            self.assertAllEqual(variable, variable32, msg=variable.path)
        # The NumPy acting mirror computes in float32: it names the layers it cannot follow.
        self.assertIn("Conv2D in bfloat16", numpy_policy.unsupported_layers(actor, critic))
        self.assertEqual(numpy_policy.unsupported_layers(actor32, critic32), [])
        signature = tf.TensorSpec((None,) + spec.observation_shape, spec.observation_dtype)
        graph = tf.function(actor.params).get_concrete_function(signature).graph.as_graph_def()
        self.assertContainsSubset({"Conv2D", "MatMul"}, bfloat16_kernels(graph))
        got, expected = self.outputs(actor, critic, stored), self.outputs(actor32, critic32, stored)
        for key, value in got.items():
            self.assertEqual(value.dtype, tf.float32, msg=key)
            # bfloat16 keeps 8 bits of mantissa: close to float32, not equal to it.
            self.assertAllClose(value, expected[key], rtol=0.05, atol=0.02, msg=key)
            self.assertNotAllEqual(value, expected[key], msg=key)
        # What export traces: float32 throughout, the float32 networks' outputs to the bit.
        with networks.float32_compute(actor, critic):
            graph = tf.function(actor.params).get_concrete_function(signature).graph.as_graph_def()
            self.assertEqual(bfloat16_kernels(graph), set())
            for key, value in self.outputs(actor, critic, stored).items():
                self.assertAllEqual(value, expected[key], msg=key)
        for key, value in self.outputs(actor, critic, stored).items():  # bfloat16 again after
            self.assertAllEqual(value, got[key], msg=key)

    def test_training_acts_in_tf_trains_in_bfloat16_and_exports_float32(self):
        config = dataclasses.replace(TINY, env="tests.fake_envs:ImageSide-v0", compute_dtype="bfloat16")
        with redirect_stdout(io.StringIO()) as out:
            run = trainer.Trainer(config, os.path.join(make_tempdir(self), "run"))
            summary = run.train()
        self.assertIn("acting with the compiled TF policy", out.getvalue())
        self.assertNotIsInstance(run.policy, numpy_policy.NumpyPolicy)
        update = run.learner.compiled_update.get_concrete_function().graph.as_graph_def()
        self.assertContainsSubset({"Conv2D", "Conv2DBackpropFilter"}, bfloat16_kernels(update))
        self.assertEqual(summary["global_step"], 128)
        path = run.export(os.path.join(make_tempdir(self), "policy"))
        from tensorflow.core.protobuf import saved_model_pb2

        with open(os.path.join(path, "saved_model.pb"), "rb") as f:
            model = saved_model_pb2.SavedModel.FromString(f.read())
        self.assertEqual(bfloat16_kernels(model.meta_graphs[0].graph_def), set())
        # The export acts as the trained networks do in float32, and they train in bfloat16 again.
        observation = run.rollout.observation[0]
        feed = observations.export_feed(run.spec.observation, observation)
        exported = tf.saved_model.load(path).signatures["action"](**feed)["action"]
        with networks.float32_compute(run.actor, run.critic):
            expected = distributions.mode(run.spec.action, run.actor(observation))
        self.assertAllEqual(exported, expected)
        self.assertEqual(run.actor.torso.body.layers[0].compute_dtype, "bfloat16")

    def test_unknown_dtype_is_an_error(self):
        with self.assertRaisesRegex(ConfigError, "compute_dtype"):
            Config(compute_dtype="float16")


class MultiBinaryActionTest(tf.test.TestCase):
    def test_log_prob_entropy_and_mode_are_sums_over_bits(self):
        logits = tf.constant([[0.5, -1.0, 2.0]])
        spec = envs_lib.action_spec(spaces.MultiBinary(3))
        self.assertEqual((spec.kind, spec.action_shape, spec.param_dims()), ("binary", (3,), {"logits": 3}))
        distribution = distributions.from_params(spec, {"logits": logits})
        p = 1.0 / (1.0 + np.exp(-logits.numpy()[0]))
        action = np.array([[1, 0, 0]], np.int32)
        expected = np.log(p[0]) + np.log(1 - p[1]) + np.log(1 - p[2])
        self.assertAllClose(distribution.log_prob(action), [expected], atol=1e-6)
        entropy = -np.sum(p * np.log(p) + (1 - p) * np.log(1 - p))
        self.assertAllClose(distribution.entropy(), [entropy], atol=1e-6)
        self.assertAllEqual(distributions.mode(spec, distribution), [[1, 0, 1]])
        samples = distribution.sample(20_000, seed=1).numpy()
        self.assertAllClose(samples.mean(axis=0)[0], p, atol=0.02)
        from tfppo import evaluate

        self.assertEqual(evaluate.describe(spec), "binary(3)")  # evaluate --model names MultiBinary models
        with self.assertRaisesRegex(ConfigError, "action mask but the action space is MultiBinary"):
            envs_lib.env_spec(spaces.Box(-1, 1, (2,)), spaces.MultiBinary(3), True)


class EndToEndTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(*KINDS)
    def test_train_checkpoint_resume_and_export(self, env_id, env_kwargs):
        logdir = os.path.join(make_tempdir(self), "run")
        config = dataclasses.replace(TINY, env=env_id, env_kwargs=env_kwargs)
        with redirect_stdout(io.StringIO()):
            run = trainer.Trainer(config, os.path.join(make_tempdir(self), "trainer"))
            spec = run.spec
            self.assertIsInstance(run.policy, numpy_policy.NumpyPolicy)  # the mirror follows every encoder
            run.train()
            summary = tfppo.train(config, logdir=logdir)
        self.assertEqual(run.rollout.observation.dtype, spec.observation_dtype)
        self.assertEqual(run.rollout.observation.shape[2:], spec.observation_shape)
        if spec.observation.single is not None and spec.observation.single.kind == "image":
            self.assertEqual(run.rollout.observation.dtype, np.uint8)  # 1 byte per pixel
        self.assertEqual(summary["global_step"], 128)
        # The checkpoint restores the networks (no env) and a resumed run trains on.
        restored, _ = agent_lib.from_run(logdir)
        observation = run.rollout.observation[0]
        mask = run.rollout.mask[0] if run.rollout.mask is not None else None
        live = agent_lib.from_run(logdir)[0].actor.params(observation)
        for key, value in restored.actor.params(observation).items():
            self.assertAllClose(value, live[key], atol=1e-6)
        resumed = tfppo.train(dataclasses.replace(config, total_timesteps=256, resume=True), logdir=logdir)
        self.assertEqual(resumed["global_step"], 256)
        # The export: one named input per component, in the env's own dtype, on TensorFlow alone.
        model_dir = resumed["saved_model"]
        again, _ = agent_lib.from_run(logdir)
        feed = observations.export_feed(spec.observation, observation)
        if mask is not None:
            feed["mask"] = mask
        directory = make_tempdir(self)
        np.savez(os.path.join(directory, "in.npz"), **feed)
        files = (os.path.join(directory, name) for name in ("in.npz", "out.npz"))
        result = run_script(TF_ONLY_SCRIPT, model_dir, *files, cwd=directory)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        exported = np.load(os.path.join(directory, "out.npz"))["action"]
        expected = distributions.mode(spec.action, again.actor(observation, action_mask=mask)).numpy()
        self.assertAllEqual(exported, expected)
        # tfppo.load takes the env's own observation (a dict for Dict spaces) and acts alike.
        policy = tfppo.load(logdir)
        env = envs_lib.make_env(env_id, **env_kwargs)
        raw, info = env.reset(seed=5)
        stored, one_mask = envs_lib.split_observation(*envs_lib.batch_one(raw, info), spec)
        action = policy.act(raw, mask=info.get("action_mask"))
        expected = distributions.mode(spec.action, again.actor(stored, action_mask=one_mask)).numpy()[0]
        self.assertAllEqual(np.asarray(action), expected)
        env.close()


class ConvertTest(tf.test.TestCase):
    def test_tflite_and_onnx_take_dict_observations_like_the_saved_model(self):
        from tfppo import convert, runtimes

        root = make_tempdir(self)
        config = dataclasses.replace(TINY, env="tests.fake_envs:DictObservation-v0", eval_episodes=0)
        with redirect_stdout(io.StringIO()):
            summary = tfppo.train(config, logdir=os.path.join(root, "run"))
        env = fake_envs.DictObservationEnv()
        spec = envs_lib.probe(envs_lib.source_from_id(config.env)).spec
        rows = [env.reset(seed=s)[0] for s in range(6)]
        stored = spec.observation.pack({k: np.stack([r[k] for r in rows]) for k in rows[0]})
        mask = np.stack([r["action_mask"] for r in rows]).astype(bool)
        reference = runtimes.open_model(summary["saved_model"])
        expected = reference.act(stored, mask)
        for fmt in ("tflite", "onnx"):
            path = convert.convert(summary["saved_model"], os.path.join(root, f"policy.{fmt}"), fmt)
            model = runtimes.open_model(path)
            self.assertAllEqual(model.act(stored, mask), expected, msg=fmt)
            self.assertAllClose(model.value(stored), reference.value(stored), atol=1e-5, msg=fmt)


@pytest.mark.slow  # learning runs: `pytest -m slow tests`
class LearningTest(tf.test.TestCase):
    def test_image_and_dict_policies_learn(self):
        # ImageSide: optimum 8, random 4; DictObservation: optimum 8, random ~2.7 (mask: ~4).
        # The torso in bfloat16 (--compute_dtype) learns them too.
        for env_id, threshold, compute_dtype in (
            ("tests.fake_envs:ImageSide-v0", 7.5, "float32"),
            ("tests.fake_envs:DictObservation-v0", 7.5, "float32"),
            ("tests.fake_envs:ImageSide-v0", 7.5, "bfloat16"),
            ("tests.fake_envs:DictObservation-v0", 7.5, "bfloat16"),
        ):
            config = tfppo.Config(
                env=env_id, total_timesteps=4096, eval_episodes=5, seed=1, compute_dtype=compute_dtype
            )
            with redirect_stdout(io.StringIO()):
                summary = tfppo.train(config, logdir=os.path.join(make_tempdir(self), "run"))
            self.assertGreaterEqual(summary["eval_return_mean"], threshold, msg=(env_id, compute_dtype))


class EpisodeStatisticsTest(tf.test.TestCase):
    def test_episodes_reported_by_the_env_are_the_ones_counted(self):
        # The env's RecordEpisodeStatistics sees raw rewards; the agent trains on halved ones and
        # a wrapper ends its training episode every 2 steps (like a lost life) while the env's
        # episode goes on to the TimeLimit of 8 steps.
        class Halve(gym.RewardWrapper):
            def reward(self, reward):
                return reward / 2

        class LifeEvery2(gym.Wrapper):
            def step(self, action):
                observation, reward, terminated, truncated, info = self.env.step(action)
                self.count, self.last = getattr(self, "count", 0) + 1, observation
                if not (terminated or truncated) and self.count % 2 == 0:
                    return observation, reward, True, False, info  # a life lost; no real reset
                return observation, reward, terminated, truncated, info

            def reset(self, **kwargs):
                if getattr(self, "count", 0) % 8 == 0:
                    self.count = 0
                    return self.env.reset(**kwargs)
                return self.last, {}  # the game goes on from where the life was lost

        def make():
            base = gym.wrappers.TimeLimit(fake_envs.ImageSideEnv(), max_episode_steps=8)
            return LifeEvery2(Halve(gym.wrappers.RecordEpisodeStatistics(base)))

        probed = envs_lib.probe(envs_lib.source_from_factory(make))
        self.assertTrue(probed.reports_episodes)
        config = dataclasses.replace(TINY, total_timesteps=64, eval_episodes=0)
        with redirect_stdout(io.StringIO()):
            run = trainer.Trainer(
                config, os.path.join(make_tempdir(self), "run"), source=envs_lib.source_from_factory(make)
            )
            run.train()
        lengths = list(run.collector.recent_lengths)
        self.assertTrue(lengths)
        self.assertTrue(all(length == 8 for length in lengths), lengths)  # whole env episodes
        returns = np.array(run.collector.recent_returns)
        self.assertTrue(np.all(returns == np.round(returns)), returns)  # raw rewards (integers)


class TabularOptimumTest(tf.test.TestCase):
    def test_exact_values_on_known_envs(self):
        sys.path.insert(0, os.path.join(REPO, "benchmarks"))
        import tabular_optimum  # noqa: PLC0415

        taxi = gym.make("Taxi-v4")
        P, states, actions, start = tabular_optimum.transition_table(taxi)
        self.assertAlmostEqual(
            float(start @ tabular_optimum.evaluate(P, states, None, actions)), 7.93, places=6
        )
        lake = gym.make("FrozenLake-v1", is_slippery=False)  # 4x4: the goal is 6 steps away
        P, states, actions, start = tabular_optimum.transition_table(lake)
        self.assertAlmostEqual(float(start @ tabular_optimum.evaluate(P, states, None, actions)), 1.0)
        right_then_down = np.array([2, 2, 1, 0, 1, 0, 1, 0, 2, 2, 1, 0, 0, 2, 2, 0])  # reaches the goal
        self.assertAlmostEqual(
            float(start @ tabular_optimum.evaluate(P, states, right_then_down, actions)), 1.0
        )
        always_left = np.zeros(states, np.int64)  # never leaves the start: value 0
        self.assertEqual(float(start @ tabular_optimum.evaluate(P, states, always_left, actions)), 0.0)


class CliTest(tf.test.TestCase):
    def test_unsupported_observation_space_is_one_line_before_anything_is_written(self):
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_module("tfppo.train", "--env=tests.fake_envs:TextObservation-v0", f"--logdir={logdir}")
        self.assertEqual(result.returncode, 2, result.stderr[-2000:])
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertRegex(lines[0], r"unsupported observation space Text.*expected a Box of rank 1")
        self.assertFalse(os.path.exists(logdir))

    def test_norm_obs_without_vector_parts_is_refused(self):
        logdir = os.path.join(make_tempdir(self), "run")
        config = dataclasses.replace(TINY, env="tests.fake_envs:ImageSide-v0", norm_obs=True)
        with self.assertRaisesRegex(ConfigError, "--norm_obs normalises vector observations; .* has none"):
            tfppo.train(config, logdir=logdir)
        self.assertFalse(os.path.exists(logdir))


if __name__ == "__main__":
    tf.test.main()
