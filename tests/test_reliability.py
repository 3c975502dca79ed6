"""Runs that survive: signals, kill -9, corrupt checkpoints, bad input, several workers.

The whole suite: `.venv/bin/python -m pytest -q -m reliability tests`. The slow cases (several
signals, kill -9 at several points, multi-worker stops) carry the `slow` marker too and stay out
of the default run; every defect has at least one case in the default run.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from tests.helpers import REPO, make_tempdir, run_module
from tests.test_distributed import Launcher
from tfppo import rundir, signals, trainer
from tfppo.config import Config
from tfppo.normalization import RunningMeanStd, SyncedMeanStd

pytestmark = pytest.mark.reliability
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
LONG = ["--total_timesteps=10000000", "--checkpoint_every=1000", "--eval_episodes=0"]


def rows(logdir: str, name: str = rundir.METRICS_FILE) -> list[str]:
    file = os.path.join(logdir, name)
    if not os.path.isfile(file):
        return []
    with open(file) as f:
        return f.readlines()


def metrics(logdir: str) -> list[dict]:
    return [json.loads(line) for line in rows(logdir)]


class Training:
    """`python -m tfppo.train ARGS` in the background."""

    def __init__(self, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfppo.train", *args],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_until(self, condition, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while not condition():
            if self.process.poll() is not None or time.time() > deadline:
                out, err = self.process.communicate()
                raise AssertionError(f"condition never met; exit {self.process.returncode}: {err[-2000:]}")
            time.sleep(0.05)

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, out, err


def train_ok(test, *args: str):
    """`python -m tfppo.train ARGS`, which must succeed."""
    result = run_module("tfppo.train", *args)
    test.assertEqual(result.returncode, 0, result.stderr[-2000:])
    return result


def assert_one_line(test, result_code: int, stderr: str, expected: str) -> None:
    """Exit code 2 and one line (besides the progress lines a run prints), no traceback."""
    test.assertEqual(result_code, 2, stderr)
    lines = [line for line in stderr.strip().splitlines() if line.strip() and not line.startswith("step ")]
    test.assertLen(lines, 1, stderr)
    test.assertIn(expected, lines[0])


def install_signals(test) -> None:
    """tfppo's stop-signal handlers in this process, the previous ones back after the test."""
    previous = {s: signal.getsignal(s) for s in signals.STOP_SIGNALS}
    test.addCleanup(lambda: [signal.signal(s, h) for s, h in previous.items()])
    signals.install()


# Six updates of 2 envs x 32 steps, one epoch each: the in-process signal tests' run.
SIX_UPDATES = Config(
    total_timesteps=64 * 6, num_envs=2, num_steps=32, actor_epochs=1, critic_epochs=1, eval_episodes=0
)


def signalled_trainer(test, **overrides):
    """(a Trainer of SIX_UPDATES with `overrides` in a new logdir, its config, the logdir), with
    tfppo's stop-signal handlers installed for the test."""
    install_signals(test)
    config = dataclasses.replace(SIX_UPDATES, **overrides)
    logdir = make_tempdir(test)
    return trainer.Trainer(config, logdir), config, logdir


def assert_exact_logs(test, logdir: str) -> None:
    """One metrics row per update (1..N, env steps increasing), one episodes row per episode."""
    records = metrics(logdir)
    test.assertEqual([r["update"] for r in records], list(range(1, len(records) + 1)))
    steps = [r["global_step"] for r in records]
    test.assertEqual(steps, sorted(set(steps)))
    episodes = rows(logdir, rundir.EPISODES_FILE)
    test.assertEqual(episodes[0], "global_step,return,length\n")
    test.assertLen(episodes[1:], records[-1]["episodes"])
    ends = [int(line.split(",")[0]) for line in episodes[1:]]
    test.assertEqual(ends, sorted(ends))


class ResumeTest(tf.test.TestCase):
    @pytest.mark.slow  # `pytest -m reliability tests` runs it
    def test_resume_keeps_the_settings_not_given(self):
        logdir = os.path.join(make_tempdir(self), "run")
        train_ok(self, f"--logdir={logdir}", "--total_timesteps=512", "--checkpoint_every=3")
        train_ok(self, f"--logdir={logdir}", "--resume", "--total_timesteps=1024")
        saved = rundir.read_config(logdir)
        self.assertEqual((saved.total_timesteps, saved.checkpoint_every), (1024, 3))
        self.assertEqual(metrics(logdir)[-1]["global_step"], 1024)

        episodes = os.path.join(make_tempdir(self), "episodes")
        budget = ["--total_timesteps=0", "--eval_episodes=0"]
        train_ok(self, f"--logdir={episodes}", "--max_episodes=20", *budget)
        before = metrics(episodes)[-1]
        train_ok(self, f"--logdir={episodes}", "--resume", "--max_episodes=40")
        after = metrics(episodes)[-1]
        self.assertGreaterEqual(after["episodes"], 40)
        self.assertGreater(after["global_step"], before["global_step"])
        self.assertEqual(rundir.read_config(episodes).total_timesteps, 0)


class SignalTest(tf.test.TestCase):
    def test_sigterm_checkpoints_and_exits_2(self):
        self._stop_with(signal.SIGTERM)

    @pytest.mark.slow
    def test_sighup_and_sigint_checkpoint_and_exit_2(self):
        for signum in (signal.SIGHUP, signal.SIGINT):
            self._stop_with(signum)

    def _stop_with(self, signum):
        logdir = os.path.join(make_tempdir(self), "run")
        run = Training(f"--logdir={logdir}", *LONG)
        run.wait_until(lambda: len(rows(logdir)) >= 2)
        run.process.send_signal(signum)
        code, _, err = run.finish(timeout=60)
        name = signal.Signals(signum).name
        assert_one_line(self, code, err, f"interrupted ({name}) at env step")
        self.assertIn("checkpoint saved to", err)
        self.assertTrue(rundir.has_checkpoint(logdir))
        steps = metrics(logdir)[-1]["global_step"]
        train_ok(self, f"--logdir={logdir}", "--resume", f"--total_timesteps={steps + 256}")
        assert_exact_logs(self, logdir)

    def test_interrupts_outside_the_loop_are_one_line(self):
        # During start-up (imports, building): nothing to keep.
        logdir = os.path.join(make_tempdir(self), "early")
        run = Training(f"--logdir={logdir}", *LONG)
        time.sleep(1.0)
        run.process.send_signal(signal.SIGINT)
        code, _, err = run.finish()
        assert_one_line(self, code, err, "interrupted (SIGINT) outside the training loop")
        # During the final evaluation: the final checkpoint is kept.
        logdir = os.path.join(make_tempdir(self), "late")
        run = Training(f"--logdir={logdir}", "--total_timesteps=256", "--eval_episodes=1000000")
        run.wait_until(lambda: rundir.has_checkpoint(logdir))
        time.sleep(1.0)
        run.process.send_signal(signal.SIGTERM)
        code, _, err = run.finish()
        assert_one_line(
            self, code, err, "interrupted (SIGTERM) outside the training loop; the last checkpoint"
        )

    def test_a_signal_during_a_checkpoint_waits_until_it_is_written(self):
        install_signals(self)
        config = Config(total_timesteps=256, num_envs=2, num_steps=32, actor_epochs=1, critic_epochs=1)
        logdir = make_tempdir(self)
        run = trainer.Trainer(config, logdir)
        self.addCleanup(run.env.close)
        original = run.manager.save

        def interrupted_save(**kwargs):  # a second Ctrl-C arrives while the files are written
            os.kill(os.getpid(), signal.SIGINT)
            return original(**kwargs)

        run.manager.save = interrupted_save
        with self.assertRaises(signals.Interrupted):
            run.save()
        (path,) = rundir.checkpoints(logdir)
        restored = trainer.Trainer(Config(**{**config.to_dict(), "resume": True}), logdir)
        self.addCleanup(restored.env.close)
        self.assertEqual(restored.restored, path)

    def test_a_signal_while_an_update_is_logged_keeps_logs_and_checkpoint_together(self):
        # The race behind a flaky SIGTERM test: a signal after the update was counted but before
        # its metrics row was written left a checkpoint of update 3 with logs of 1-2, and the
        # resumed run logged update 4 next. Now the update and its logs finish first.
        run, config, logdir = signalled_trainer(self)
        original = trainer.MetricsLogger.write

        def write_interrupted(logger, record):
            if record["update"] == 3:  # SIGTERM lands between the episodes and the metrics row
                os.kill(os.getpid(), signal.SIGTERM)
            return original(logger, record)

        with mock.patch.object(trainer.MetricsLogger, "write", write_interrupted):
            with self.assertRaisesRegex(trainer.TrainingError, "interrupted \\(SIGTERM\\)"):
                run.train()
        self.assertEqual([r["update"] for r in metrics(logdir)], [1, 2, 3])
        resumed = trainer.train(Config(**{**config.to_dict(), "resume": True}), logdir)
        self.assertEqual(resumed["updates"], 6)
        assert_exact_logs(self, logdir)

    def test_a_signal_during_a_periodic_evaluation_stops_it_at_the_next_step(self):
        # The update is logged and checkpointed at once; the evaluation is cut, not recorded.
        run, _, logdir = signalled_trainer(self, eval_every=128, eval_every_episodes=10_000)
        original, eval_steps = run.policy.mode_and_state, []

        def signalled_mode(*args):
            eval_steps.append(run.updates)
            if len(eval_steps) == 1:  # the first evaluation (after 128 env steps, update 2)
                os.kill(os.getpid(), signal.SIGTERM)
            return original(*args)

        run.policy.mode_and_state = signalled_mode
        with self.assertRaisesRegex(trainer.TrainingError, "interrupted \\(SIGTERM\\) at env step 128"):
            run.train()
        self.assertEqual(eval_steps, [2])  # one step of 10,000 episodes
        records = metrics(logdir)
        self.assertEqual([r["update"] for r in records], [1, 2])
        self.assertNotIn("eval_return_mean", records[1])
        self.assertEqual(os.path.basename(rundir.checkpoints(logdir)[0]), "ckpt-2")

    def test_a_signal_during_a_diverging_update_keeps_the_divergence_error_and_no_bad_checkpoint(self):
        # A stop signal held back during an update that diverged used to be raised over the
        # divergence error on leaving the section, and the interrupt's checkpoint then saved the
        # non-finite weights over the last good checkpoint.
        run, _, logdir = signalled_trainer(self, checkpoint_every=1)
        original = run.learner.update

        def diverging_update(batch, progress):
            metrics, weights = original(batch, progress)
            if run.updates == 2:  # update 3 diverges while a SIGTERM arrives
                os.kill(os.getpid(), signal.SIGTERM)
                run.actor.trainable_variables[0].assign(
                    np.full(run.actor.trainable_variables[0].shape, np.nan)
                )
                metrics = {**metrics, "policy_loss": float("nan")}
            return metrics, weights

        run.learner.update = diverging_update
        with self.assertRaisesRegex(trainer.TrainingError, "^non-finite policy_loss at update 3 .*ckpt-2$"):
            run.train()
        self.assertIsNone(signals.pending())
        self.assertEqual([r["update"] for r in metrics(logdir)], [1, 2])
        (latest, *_) = rundir.checkpoints(logdir)
        self.assertEqual(os.path.basename(latest), "ckpt-2")
        for name, _ in tf.train.list_variables(latest):
            if "actor" in name:
                self.assertTrue(np.all(np.isfinite(tf.train.load_variable(latest, name))), name)


class KillTest(tf.test.TestCase):
    def test_kill_9_then_resume_leaves_exact_logs(self):
        self._kill_after(4)

    @pytest.mark.slow
    def test_kill_9_at_more_points(self):
        for rows_logged in (2, 7, 11):
            self._kill_after(rows_logged)

    def _kill_after(self, kill_after_rows):
        logdir = os.path.join(make_tempdir(self), "run")
        run = Training(f"--logdir={logdir}", "--total_timesteps=10000000", "--checkpoint_every=3")
        run.wait_until(lambda: len(rows(logdir)) >= kill_after_rows)
        run.process.kill()
        run.finish()
        self.assertGreaterEqual(len(rows(logdir)), kill_after_rows)
        train_ok(self, f"--logdir={logdir}", "--resume", "--total_timesteps=5120")
        assert_exact_logs(self, logdir)
        self.assertEqual(metrics(logdir)[-1]["global_step"], 5120)

    def test_a_run_killed_before_its_first_checkpoint_starts_again_with_resume(self):
        logdir = os.path.join(make_tempdir(self), "run")
        run = Training(f"--logdir={logdir}", *LONG)
        run.wait_until(lambda: len(rows(logdir)) >= 1)
        run.process.kill()
        run.finish()
        self.assertFalse(rundir.has_checkpoint(logdir))
        again = run_module("tfppo.train", f"--logdir={logdir}", *LONG)
        assert_one_line(
            self, again.returncode, again.stderr, "stopped before its first checkpoint; pass --resume"
        )
        resumed = train_ok(self, f"--logdir={logdir}", "--resume", "--total_timesteps=512")
        self.assertIn("no checkpoint yet: the run starts from the beginning", resumed.stdout)
        self.assertEqual([r["update"] for r in metrics(logdir)], [1, 2])
        assert_exact_logs(self, logdir)


class CorruptCheckpointTest(tf.test.TestCase):
    @pytest.mark.slow  # `pytest -m reliability tests` runs it
    def test_resume_falls_back_to_the_newest_checkpoint_that_restores(self):
        logdir = os.path.join(make_tempdir(self), "run")
        train_ok(self, f"--logdir={logdir}", "--total_timesteps=1024", "--checkpoint_every=1")
        newest, older = rundir.checkpoints(logdir)[:2]
        with open(newest + ".data-00000-of-00001", "r+b") as f:
            f.truncate(10)
        resumed = train_ok(self, f"--logdir={logdir}", "--resume", "--total_timesteps=1280")
        self.assertIn(
            f"resuming from {older}; skipped checkpoint {newest} cannot be restored", resumed.stdout
        )
        assert_exact_logs(self, logdir)
        self.assertEqual(metrics(logdir)[-1]["update"], 5)

        with open(os.path.join(logdir, "checkpoints", "checkpoint"), "w") as f:
            f.write("garbage {{{")
        resumed = train_ok(self, f"--logdir={logdir}", "--resume", "--total_timesteps=1536")
        assert_exact_logs(self, logdir)

        with open(os.path.join(logdir, "flags.json"), "rb") as f:
            flags_before = f.read()
        for path in rundir.checkpoints(logdir):
            os.remove(path + ".data-00000-of-00001")
        failed = run_module("tfppo.train", f"--logdir={logdir}", "--resume", "--total_timesteps=2048")
        assert_one_line(self, failed.returncode, failed.stderr, "restores: checkpoint")
        with open(os.path.join(logdir, "flags.json"), "rb") as f:
            self.assertEqual(f.read(), flags_before)  # a failed resume leaves the run as it was


class BadInputTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("negative_seed", ["--seed=-1"], "--seed=-1 must be an integer in [0, 2147483647]"),
        ("huge_seed", ["--seed=5000000000"], "--seed=5000000000 must be an integer"),
        ("env_module_raises", ["--env=tests.broken_env_module:Any-v0"], "broken on purpose"),
        (
            "squash_infinite_bounds",
            ["--env=tests.fake_envs:UnboundedAction-v0", "--squash_mean"],
            "finite Box bounds",
        ),
        (
            "nan_final_observation",
            ["--env=tests.fake_envs:NanFinalObservation-v0"],
            "non-finite final observation",
        ),
    )
    def test_one_line_and_nothing_blocking_a_rerun(self, args, expected):
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_module("tfppo.train", f"--logdir={logdir}", *args)
        assert_one_line(self, result.returncode, result.stderr, expected)
        if "final observation" not in expected:  # fails before anything is written
            self.assertFalse(os.path.exists(logdir))
        else:  # fails mid-run: the rerun path is --resume
            self.assertFalse(rundir.has_checkpoint(logdir))

    def test_logdirs_that_are_files_and_bad_flags_json(self):
        root = make_tempdir(self)
        file = os.path.join(root, "file")
        open(file, "w").close()
        for logdir, expected in ((file, "is a file"), (os.path.join(file, "run"), "is under")):
            result = run_module("tfppo.train", f"--logdir={logdir}")
            assert_one_line(self, result.returncode, result.stderr, expected)
        for content, expected in (("{not json", "cannot read"), ('{"nope": 1}', "unknown settings ['nope']")):
            logdir = os.path.join(root, f"run{len(content)}")
            os.makedirs(logdir)
            with open(os.path.join(logdir, "flags.json"), "w") as f:
                f.write(content)
            result = run_module("tfppo.train", f"--logdir={logdir}", "--resume")
            assert_one_line(self, result.returncode, result.stderr, expected)
            with open(os.path.join(logdir, "flags.json")) as f:
                self.assertEqual(f.read(), content)

    def test_an_unwritable_checkpoint_stops_with_the_last_good_one_kept(self):
        config = Config(total_timesteps=512, num_envs=2, num_steps=32, actor_epochs=1, critic_epochs=1)
        logdir = make_tempdir(self)
        run = trainer.Trainer(config, logdir)
        self.addCleanup(run.env.close)
        good = run.save()

        def full_disk(**kwargs):
            os.makedirs(os.path.join(logdir, "checkpoints", "ckpt-7_temp"))
            raise OSError(28, "No space left on device")

        run.manager.save = full_disk
        run.updates = 7
        with self.assertRaisesRegex(trainer.TrainingError, f"No space left on device; .* kept: {good}"):
            run.save()
        self.assertFalse(os.path.exists(os.path.join(logdir, "checkpoints", "ckpt-7_temp")))


class MultiWorkerTest(tf.test.TestCase):
    def _launch(self, logdir: str, *train_flags: str) -> Launcher:
        return Launcher(
            "--num_workers=2", "--grace=60", "--", f"--logdir={logdir}", "--num_envs=2", *train_flags
        )

    @pytest.mark.slow
    def test_a_signal_to_one_worker_or_the_launcher_stops_all_with_one_checkpoint(self):
        for target in ("worker", "launcher"):
            logdir = os.path.join(make_tempdir(self), target)
            run = self._launch(logdir, *LONG, "--norm_obs", "--norm_reward")
            deadline = time.time() + 180
            while len(rows(logdir)) < 3 and time.time() < deadline and run.process.poll() is None:
                time.sleep(0.1)
            signalled = time.time()
            if target == "worker":
                os.kill(run.pid(1), signal.SIGTERM)
            else:
                run.process.send_signal(signal.SIGINT)
            code = run.wait(timeout=90)
            output = "".join(run.lines)
            self.assertEqual(code, 2, output[-3000:])
            self.assertLess(time.time() - signalled, 30, output[-3000:])
            self.assertIn("on every worker; checkpoint", output)
            self.assertNotIn("Traceback", output)
            (path,) = rundir.checkpoints(logdir)
            update = int(path.rsplit("-", 1)[1])
            self.assertEqual(metrics(logdir)[-1]["update"], update)
        steps = metrics(logdir)[-1]["global_step"]
        resumed = self._launch(logdir, "--resume", f"--total_timesteps={steps + 256}")
        self.assertEqual(resumed.wait(timeout=240), 0, "".join(resumed.lines)[-3000:])
        digests = {line.split("digest ")[-1].strip() for line in resumed.lines if "digest" in line}
        self.assertLen(digests, 1, "".join(resumed.lines)[-3000:])  # weights and normalisers alike


class SyncedStatisticsTest(tf.test.TestCase):
    def test_two_workers_merge_to_the_statistics_of_all_data(self):
        rng = np.random.default_rng(0)
        batches = [rng.normal(3.0, 2.0, size=(4, 5)) for _ in range(12)]
        single = RunningMeanStd((5,))
        workers = [SyncedMeanStd((5,)), SyncedMeanStd((5,))]
        for start in range(0, 12, 4):  # an "update" every 4 steps: 2 batches per worker
            for step in range(start, start + 4):
                single.update(batches[step])
                workers[step % 2].update(batches[step])
            summed = workers[0].packed() + workers[1].packed()  # what the all-reduce returns
            for worker in workers:
                worker.unpack_sync(summed)
            for worker in workers:
                self.assertAllClose(worker.mean, single.mean, rtol=1e-12)
                self.assertAllClose(worker.var, single.var, rtol=1e-10)
                self.assertAllClose(worker.count, single.count)
        data = np.concatenate(batches)
        self.assertAllClose(workers[0].mean, data.mean(0), atol=1e-5)  # the 1e-4 prior count
        self.assertAllClose(workers[0].var, data.var(0), rtol=1e-4)
