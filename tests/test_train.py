"""End to end: learning, checkpoint/resume, determinism, and the CLI's answers to bad input."""

import dataclasses
import io
import json
import os

import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from tensorboard.backend.event_processing import event_accumulator

from tests.helpers import make_tempdir, run_module
from tfppo import metrics, rundir, trainer
from tfppo.config import Config, ConfigError

TINY = Config(
    env="CartPole-v1",
    total_timesteps=512,
    num_envs=2,
    num_steps=64,
    actor_epochs=2,
    critic_epochs=2,
    num_minibatches=2,
    eval_episodes=2,
    checkpoint_every=1,
)


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def run_cli(*args, timeout=240):
    return run_module("tfppo.train", *args, timeout=timeout)


class LearningTest(tf.test.TestCase):
    def test_cartpole_learns(self):
        # The default preset, shortened: a random policy scores ~22.
        config = dataclasses.replace(Config(), total_timesteps=30_000, eval_episodes=5)
        summary = trainer.train(config, make_tempdir(self))
        self.assertGreater(summary["episode_return_mean"], 150.0)
        self.assertGreater(summary["eval_return_mean"], 200.0)


class ProgressLineTest(tf.test.TestCase):
    def test_the_return_reads_a_dash_until_an_episode_has_ended(self):
        stream = io.StringIO()
        logger = metrics.MetricsLogger(make_tempdir(self), 1000, 0, log_every_s=0.0, stream=stream)
        self.addCleanup(logger.close)
        base = {"update": 1, "global_step": 64, "episodes": 0, "sps": 64.0, "wall_s": 1.0}
        logger.write({**base, "episode_return_mean": float("nan")})
        logger.write({**base, "update": 2, "global_step": 128, "episodes": 1, "episode_return_mean": 21.04})
        first, second = stream.getvalue().splitlines()
        self.assertEqual(first, "step 64 | episodes 0 | return - | 64 steps/s | 6% | time left 0m14s")
        self.assertEqual(second, "step 128 | episodes 1 | return 21.0 | 64 steps/s | 13% | time left 0m06s")


class EpisodesFileTest(tf.test.TestCase):
    def test_an_empty_file_gets_the_header_and_a_headed_one_keeps_its_rows(self):
        # An empty episodes.csv is what a run killed between its first two flushes leaves (the
        # metrics row on disk, the episodes' header still buffered): reopened, it needs the header.
        logdir = make_tempdir(self)
        path = os.path.join(logdir, "episodes.csv")
        open(path, "w").close()
        logger = metrics.MetricsLogger(logdir, 1000, 0, stream=io.StringIO())
        logger.write_episodes([(72, 9.0, 9)])
        logger.close()
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), "global_step,return,length\n72,9,9\n")
        logger = metrics.MetricsLogger(logdir, 1000, 0, stream=io.StringIO())
        logger.write_episodes([(96, 11.5, 12)])
        logger.close()
        with open(path, encoding="utf-8") as f:
            self.assertEqual(f.read(), "global_step,return,length\n72,9,9\n96,11.5,12\n")


class RunTest(tf.test.TestCase):
    def test_outputs_and_resume_round_trip(self):
        logdir = make_tempdir(self)
        first = trainer.Trainer(TINY, logdir)
        first.train()
        weights = [v.numpy() for v in first.actor.variables + first.critic.variables]
        records = read_jsonl(os.path.join(logdir, "metrics.jsonl"))
        self.assertEqual([r["global_step"] for r in records], [128, 256, 384, 512])
        for key in ("episodes", "episode_return_mean", "sps", "wall_s", "kl", "kl_lambda"):
            self.assertIn(key, records[0])
        summary = json.load(open(os.path.join(logdir, "summary.json")))
        self.assertEqual(summary["eval_episodes"], 2)
        self.assertTrue(os.path.isfile(os.path.join(logdir, "learning_curve.png")))
        self.assertTrue(tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*")))
        # TensorBoard's own reader sees every update's scalars, grouped, at its env step.
        events = event_accumulator.EventAccumulator(logdir)
        events.Reload()
        self.assertIn("health/clip_fraction", events.Tags()["scalars"])
        curve = events.Scalars("charts/episode_return_mean")
        self.assertEqual([e.step for e in curve], [128, 256, 384, 512])
        self.assertAllClose([e.value for e in curve], [r["episode_return_mean"] for r in records])

        resumed = trainer.Trainer(dataclasses.replace(TINY, resume=True, total_timesteps=768), logdir)
        restored = [v.numpy() for v in resumed.actor.variables + resumed.critic.variables]
        for before, after in zip(weights, restored, strict=True):
            self.assertAllEqual(before, after)
        self.assertEqual(int(resumed.state.global_step.numpy()), 512)
        self.assertEqual(resumed.collector.episodes, records[-1]["episodes"])
        resumed.train()
        records = read_jsonl(os.path.join(logdir, "metrics.jsonl"))
        self.assertEqual([r["global_step"] for r in records][-2:], [640, 768])
        self.assertEqual([r["update"] for r in records], [1, 2, 3, 4, 5, 6])
        # episodes.csv: one row per finished episode across both sessions, one header.
        with open(os.path.join(logdir, "episodes.csv")) as f:
            lines = f.read().splitlines()
        self.assertEqual(lines[0], "global_step,return,length")
        rows = [line.split(",") for line in lines[1:]]
        self.assertLen(rows, records[-1]["episodes"])
        steps = [int(r[0]) for r in rows]
        self.assertEqual(steps, sorted(steps))
        self.assertLessEqual(steps[-1], 768)
        for _, ret, length in rows:  # CartPole: the return is the length.
            self.assertEqual(float(ret), float(length))

    def test_same_seed_same_metrics(self):
        config = dataclasses.replace(TINY, total_timesteps=256, eval_episodes=0, method="kl_pen")
        runs = []
        for _ in range(2):
            logdir = make_tempdir(self)
            trainer.train(config, logdir)
            runs.append(
                [
                    {k: v for k, v in r.items() if k not in ("sps", "wall_s", "collect_fraction")}
                    for r in read_jsonl(os.path.join(logdir, "metrics.jsonl"))
                ]
            )
        self.assertEqual(runs[0], runs[1])


class CliTest(tf.test.TestCase, parameterized.TestCase):
    @parameterized.named_parameters(
        ("unknown_env", ["--env=NoSuchEnv-v9"], "NoSuchEnv-v9"),
        ("unsupported_action_space", ["--env=tests.fake_envs:TextAction-v0"], "unsupported action space"),
        ("non_positive_lr", ["--actor_lr=0"], "--actor_lr=0.0 must be > 0"),
        ("negative_epsilon", ["--clip_epsilon=-0.1"], "--clip_epsilon=-0.1 must be > 0"),
        ("missing_flagfile", ["--flagfile=experiments/nope.flags"], "nope.flags"),
        ("bad_minibatches", ["--num_minibatches=3"], "does not divide the batch of 256"),
        ("unknown_flag", ["--no_such_flag=1"], "no_such_flag"),
        ("bad_enum", ["--method=trpo"], "trpo"),
        ("target_kl_zero", ["--target_kl=0"], "--target_kl=0.0 must be > 0"),
        ("negative_coefficient", ["--ent_coef=-0.01"], "--ent_coef=-0.01 must be >= 0"),
        ("bad_critic_sizes", ["--critic_hidden_sizes=64,x"], "--critic_hidden_sizes=64,x must be integers"),
        ("shared_torso_sizes", ["--shared_torso", "--critic_hidden_sizes=32"], "--critic_hidden_sizes=32"),
        ("bad_ratio", ["--ratio=exp"], "exp"),
    )
    def test_bad_input_is_one_line_and_exit_code_2(self, args, expected):
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_cli(*args, f"--logdir={logdir}")
        self.assertEqual(result.returncode, 2, result.stderr)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        self.assertLen(lines, 1, result.stderr)
        self.assertIn(expected, lines[0])
        self.assertFalse(os.path.exists(logdir))

    def test_resume_without_a_run(self):
        logdir = make_tempdir(self)
        result = run_cli("--resume", f"--logdir={logdir}")
        self.assertEqual(result.returncode, 2)
        self.assertIn("--resume: no tfppo run in", result.stderr)
        self.assertEqual(os.listdir(logdir), [])
        with self.assertRaisesRegex(
            ConfigError, "^--resume needs --logdir: the directory of the run to continue$"
        ):
            rundir.resolve(Config(resume=True), set())  # not a new, time-stamped default logdir

    def test_helpfull_documents_every_flag_in_groups_and_exits_0(self):
        result = run_cli("--helpfull", timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        groups = [line for line in result.stdout.splitlines() if line[:2] in ("1.", "2.", "3.", "4.", "5.")]
        self.assertLen(groups, 5)
        self.assertLess(result.stdout.index("1. experiment"), result.stdout.index("absl.app"))
        for field in dataclasses.fields(Config):
            self.assertRegex(result.stdout, rf"--(\[no\])?{field.name}:")

    def test_existing_logdir_is_not_overwritten(self):
        logdir = make_tempdir(self)
        with open(os.path.join(logdir, "metrics.jsonl"), "w") as f:
            f.write("precious\n")
        result = run_cli(f"--logdir={logdir}", "--total_timesteps=256")
        self.assertEqual(result.returncode, 2)
        self.assertIn("already holds files", result.stderr)
        self.assertEqual(os.listdir(logdir), ["metrics.jsonl"])
        self.assertEqual(open(os.path.join(logdir, "metrics.jsonl")).read(), "precious\n")

    def test_divergence_stops_with_the_step_and_keeps_the_last_good_checkpoint(self):
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_cli(
            f"--logdir={logdir}",
            "--actor_lr=1e30",
            "--critic_lr=1e30",
            "--checkpoint_every=1",
            "--total_timesteps=5000",
            "--max_grad_norm=0",
            "--anneal_lr=false",
            "--actor_epochs=1",
            "--critic_epochs=1",
        )
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertRegex(
            result.stderr.strip().splitlines()[-1],
            r"^error: non-finite .* at update (\d+) \(env step \d+\); training stopped, last good checkpoint kept: .*ckpt-\d+$",
        )
        update = int(result.stderr.split("at update ")[1].split()[0])
        latest = tf.train.latest_checkpoint(os.path.join(logdir, "checkpoints"))
        self.assertEqual(latest, os.path.join(logdir, "checkpoints", f"ckpt-{update - 1}"))
        self.assertTrue(
            np.all(
                [
                    np.all(np.isfinite(tf.train.load_variable(latest, name)))
                    for name, _ in tf.train.list_variables(latest)
                    if "actor" in name
                ]
            )
        )

    def test_flagfile_and_override(self):
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_cli(
            "--flagfile=experiments/cartpole.flags",
            "--total_timesteps=512",
            "--eval_episodes=1",
            f"--logdir={logdir}",
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("finished CartPole-v1", result.stdout)
        saved = json.load(open(os.path.join(logdir, "flags.json")))
        self.assertEqual((saved["total_timesteps"], saved["num_envs"], saved["gae_lambda"]), (512, 8, 0.8))
        changed = run_cli(f"--logdir={logdir}", "--resume", "--num_envs=4")
        self.assertEqual(changed.returncode, 2)
        self.assertIn("--num_envs differ", changed.stderr)
        missing = run_cli("--flagfile=experiments/no_such_preset.flags")
        self.assertEqual(missing.returncode, 2)
        self.assertRegex(
            missing.stderr.strip(),
            r"^error: Unable to open flagfile: .*no_such_preset\.flags'; see --helpfull$",
        )


if __name__ == "__main__":
    tf.test.main()
