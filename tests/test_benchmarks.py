"""Benchmark scripts: time_breakdown's table accounts for the whole loop; presets.py stops
its runs with a checkpoint on SIGTERM and resumes them; the speed benchmark's pure parts (each
peer's command line from one preset, the parsing of their outputs, ratios and targets) without
any peer installed."""

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from absl.testing import absltest

from tests.helpers import REPO, make_tempdir

sys.path.insert(0, os.path.join(REPO, "benchmarks"))
import _cleanrl_driver  # noqa: E402
import _random_policy  # noqa: E402
import _speed_presets  # noqa: E402
import _speed_report  # noqa: E402
import conv_time  # noqa: E402
import loop_overhead  # noqa: E402
import mujoco_suite  # noqa: E402
import presets  # noqa: E402
import speed_vs_sb3  # noqa: E402


def run_benchmark(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python benchmarks/<script> args` from the repository root, TensorFlow's logs quiet."""
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "benchmarks", script), *args],
        cwd=REPO,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class TimeBreakdownTest(absltest.TestCase):
    def test_three_updates_are_broken_down(self):
        result = run_benchmark("time_breakdown.py", "--preset=cartpole", "--", "--total_timesteps=768")
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        self.assertIn("768 env steps, 3 updates", result.stdout)
        rows = {}
        for line in result.stdout.splitlines():
            cells = [c.strip() for c in line.strip("|").split("|")]
            if len(cells) == 5 and re.fullmatch(r"[0-9.]+", cells[1]):
                rows[cells[0]] = (float(cells[1]), cells[4])
        self.assertEqual(rows["first update (tracing, graph optimisation)"][1], "1")
        self.assertEqual(rows["compiled update, later updates"][1], "2")
        self.assertEqual(rows["env loop (collect)"][1], "3")
        self.assertEqual(rows["logging (TensorBoard, jsonl)"][1], "3")
        # The top-level phases and "other" add up to the loop (shares are of the loop).
        loop = float(re.search(r"training loop ([0-9.]+) s", result.stdout).group(1))
        top = sum(seconds for label, (seconds, _) in rows.items() if not label.startswith("of which"))
        self.assertAlmostEqual(top, loop, delta=0.01)
        self.assertGreater(rows["first update (tracing, graph optimisation)"][0], 0.0)


class ConvTimeTest(absltest.TestCase):
    def test_two_torsos_hold_twice_the_cnn(self):
        # The Nature CNN and its 512 units: 3 convolutions and a dense layer over 7 x 7 x 64.
        cnn = (8 * 8 * 4 * 32 + 32) + (4 * 4 * 32 * 64 + 64) + (3 * 3 * 64 * 64 + 64) + (3136 * 512 + 512)
        heads = (512 * 4 + 4) + (512 + 1)
        threads = conv_time.tf.config.threading.get_intra_op_parallelism_threads()  # fixed once TF runs
        small = ["--batch=2", "--act_batch=1", "--steps=1", "--rounds=1", f"--intra_op_threads={threads}"]
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            one = conv_time.main(["--torsos=1", *small])
            two = conv_time.main(["--torsos=2", *small])
        self.assertEqual((one["weights"], two["weights"]), (cnn + heads, 2 * cnn + heads))
        self.assertTrue(all(run["step_ms"] > 0 and run["act_ms"] > 0 for run in (one, two)))
        self.assertIn("ms per gradient step (2 frames)", printed.getvalue())


class UpdateTimeTest(absltest.TestCase):
    def test_trees_alternate_and_bad_input_is_one_line(self):
        def run(*args):
            return run_benchmark("update_time.py", *args)

        result = run("--preset=cartpole", "--updates=2", f"--trees={REPO},{REPO}", "--rounds=1")
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        lines = result.stdout.splitlines()
        self.assertLen([line for line in lines if line.startswith("round 1 ")], 2)
        medians = [
            float(re.search(r": ([0-9.]+) ms", line).group(1)) for line in lines if line.startswith("median")
        ]
        self.assertLen(medians, 2)
        self.assertTrue(all(m > 0 for m in medians))
        for args, message in (
            (["--preset=nope"], "--preset=nope"),
            (["--preset=minatar_breakout"], "takes vector"),
            (["--updates=0"], "--updates=0"),
        ):
            result = run(*args)
            self.assertEqual(result.returncode, 2, args)
            self.assertIn(message, result.stderr.strip().splitlines()[-1])


class PipelinedActingTest(absltest.TestCase):
    def test_both_ways_are_timed_and_bad_input_is_one_line(self):
        def run(*args):
            return run_benchmark("pipelined_acting.py", *args)

        result = run("--preset=cartpole", "--steps=3", "--rounds=2")
        self.assertEqual(result.returncode, 0, result.stderr[-3000:])
        rounds = re.findall(r"^round \d: sequential ([0-9.]+) s, pipelined ([0-9.]+) s", result.stdout, re.M)
        self.assertLen(rounds, 2)
        self.assertTrue(all(float(t) > 0 for pair in rounds for t in pair))
        self.assertIn("the policy alone:", result.stdout)
        self.assertIn("for 8, ", result.stdout)  # the whole batch and a half of cartpole's 8 envs
        self.assertIn("for 4 observations", result.stdout)
        for args, message in (
            (["--preset=nope"], "--preset=nope"),
            (["--preset=masked_grid"], "action masks"),
            (["--preset=pendulum_gsde"], "gSDE"),
            (["--rounds=0"], "--rounds=0"),
        ):
            result = run(*args)
            self.assertEqual(result.returncode, 2, args)
            self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
            self.assertIn(message, result.stderr)


class PresetsInterruptTest(absltest.TestCase):
    @pytest.mark.slow
    def test_sigterm_checkpoints_the_runs_and_the_same_command_resumes_them(self):
        out = make_tempdir(self)
        logdir = os.path.join(out, "runs", "cartpole_seed0")

        def presets(*extra):
            command = [sys.executable, os.path.join(REPO, "benchmarks", "presets.py")]
            command += ["--presets=cartpole", "--seeds=0", "--parallel=1", f"--out={out}", "--"]
            command += ["--eval_episodes=0", "--checkpoint_every=2", *extra]
            return start_script(command)

        interrupt_once_training(self, presets("--total_timesteps=10000000"), logdir, timeout_s=120)
        metrics = os.path.join(logdir, "metrics.jsonl")
        with open(metrics) as f:
            done = [json.loads(line) for line in f]
        second = presets(f"--total_timesteps={done[-1]['global_step'] + 512}")
        stdout, stderr = second.communicate(timeout=300)
        self.assertEqual(second.returncode, 0, stderr[-3000:])
        self.assertIn("cartpole seed 0:", stdout)
        self.assertIn("(resumed)", stdout)
        with open(metrics) as f:
            updates = [json.loads(line)["update"] for line in f]
        self.assertEqual(updates, list(range(1, len(updates) + 1)))  # continued, not restarted
        self.assertTrue(os.path.exists(os.path.join(logdir, "summary.json")))
        self.assertTrue(os.path.exists(os.path.join(out, "results.md")))


def start_script(command: list) -> subprocess.Popen:
    """A benchmark script run from the repository, its output captured."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def interrupt_once_training(test, script: subprocess.Popen, logdir: str, timeout_s: float) -> None:
    """SIGTERM to a benchmark script once its run in logdir has logged an update; asserts the
    script exits 2 saying how to resume, and the run saved a checkpoint on its SIGINT and ended."""
    metrics = os.path.join(logdir, "metrics.jsonl")
    deadline = time.time() + timeout_s
    while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
        time.sleep(0.5)
    test.assertTrue(os.path.exists(metrics), "training never started")
    script.send_signal(signal.SIGTERM)
    _, stderr = script.communicate(timeout=timeout_s)
    test.assertEqual(script.returncode, 2, stderr)
    test.assertIn("run the same command again to resume", stderr)
    with open(logdir + ".log") as f:
        test.assertIn("interrupted (SIGINT) at env step", f.read())  # tfppo saved on its SIGINT
    test.assertEqual(processes_naming(logdir), [])


def processes_naming(text: str) -> list[str]:
    """The pids of the running processes whose command line contains text."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


class MujocoSuiteInterruptTest(absltest.TestCase):
    @pytest.mark.slow
    def test_sigterm_reaches_the_run_in_progress(self):
        # The suite waits for its run in the main thread, where the SIGTERM handler raises: the
        # run must still be signalled (it was once forgotten there and ran on, orphaned).
        out = make_tempdir(self)
        logdir = os.path.join(out, "runs", "hopper_env-InvertedDoublePendulum-v5_seed0")
        command = [sys.executable, os.path.join(REPO, "benchmarks", "mujoco_suite.py")]
        command += ["--envs=InvertedDoublePendulum-v5", "--seeds=0", f"--out={out}"]
        interrupt_once_training(self, start_script(command), logdir, timeout_s=180)


class SpeedPresetArgumentsTest(absltest.TestCase):
    """One Hyper per preset becomes each library's arguments."""

    def test_sb3_kwargs_are_the_zoo_presets(self):
        presets = _speed_presets.PRESETS
        self.assertEqual(
            _speed_presets.sb3_kwargs(presets["cartpole"].hyper),
            dict(
                n_steps=32,
                batch_size=256,
                n_epochs=20,
                gae_lambda=0.8,
                gamma=0.98,
                ent_coef=0.0,
                vf_coef=0.5,
                max_grad_norm=0.5,
                learning_rate={"linear": 1e-3},
                clip_range={"linear": 0.2},
            ),
        )
        pendulum = _speed_presets.sb3_kwargs(presets["pendulum"].hyper)
        self.assertEqual(
            (pendulum["batch_size"], pendulum["learning_rate"], pendulum["clip_range"]), (64, 1e-3, 0.2)
        )
        hopper = _speed_presets.sb3_kwargs(presets["hopper"].hyper)
        self.assertEqual(hopper["batch_size"], 64)
        self.assertEqual(hopper["clip_range_vf"], 0.2)
        self.assertEqual(hopper["vf_coef"], 0.25)  # CleanRL's 0.5 x its halved squared error
        self.assertEqual(hopper["learning_rate"], {"linear": 3e-4})
        atari = _speed_presets.sb3_kwargs(presets["atari_breakout"].hyper, atari=True)
        self.assertEqual((atari["n_steps"], atari["batch_size"], atari["n_epochs"]), (128, 256, 4))
        self.assertEqual((atari["clip_range"], atari["clip_range_vf"], atari["vf_coef"]), (0.1, 0.1, 0.25))
        self.assertNotIn("policy_kwargs", atari)  # CnnPolicy's NatureCNN ends in the 512 relu units
        self.assertIsNone(_speed_presets.sb3_normalize(presets["cartpole"].hyper))
        self.assertEqual(
            _speed_presets.sb3_normalize(presets["hopper"].hyper),
            dict(norm_obs=True, norm_reward=True, gamma=0.99, clip_obs=10.0, clip_reward=10.0),
        )

    def test_cleanrl_command_lines(self):
        presets = _speed_presets.PRESETS

        def as_dict(argv):
            flags, i = {}, 0
            while i < len(argv):
                if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                    flags[argv[i]], i = argv[i + 1], i + 2
                else:
                    flags[argv[i]], i = True, i + 1
            return flags

        cartpole = as_dict(_speed_presets.cleanrl_args(presets["cartpole"], 3, 100_000))
        self.assertEqual(cartpole["--env-id"], "CartPole-v1")
        self.assertEqual(cartpole["--seed"], "3")
        self.assertEqual(cartpole["--total-timesteps"], "100096")  # 391 x 256: CleanRL floors
        self.assertEqual((cartpole["--num-envs"], cartpole["--num-steps"]), ("8", "32"))
        self.assertEqual((cartpole["--num-minibatches"], cartpole["--update-epochs"]), ("1", "20"))
        self.assertEqual(cartpole["--vf-coef"], "1.0")  # SB3's 0.5 x MSE
        for name in ("--anneal-lr", "--no-clip-vloss", "--norm-adv", "--no-cuda"):
            self.assertIs(cartpole[name], True, name)
        pendulum = as_dict(_speed_presets.cleanrl_args(presets["pendulum"], 0, 100_000))
        self.assertIs(pendulum["--no-anneal-lr"], True)
        self.assertEqual(pendulum["--total-timesteps"], "102400")
        hopper = as_dict(_speed_presets.cleanrl_args(presets["hopper"], 0, 1_000_000))
        self.assertEqual(hopper["--env-id"], "Hopper-v4")  # gymnasium 0.29 has no v5
        self.assertEqual(hopper["--total-timesteps"], "1001472")
        self.assertEqual((hopper["--vf-coef"], hopper["--learning-rate"]), ("0.5", "0.0003"))
        self.assertIs(hopper["--clip-vloss"], True)
        atari = as_dict(_speed_presets.cleanrl_args(presets["atari_breakout"], 0, 4096))
        self.assertEqual(atari["--env-id"], "BreakoutNoFrameskip-v4")
        self.assertEqual((atari["--num-envs"], atari["--num-steps"]), ("8", "128"))
        self.assertEqual(
            (atari["--clip-coef"], atari["--vf-coef"], atari["--ent-coef"]), ("0.1", "0.5", "0.01")
        )

        odd = presets["hopper"].hyper.__class__(**{**presets["hopper"].hyper.__dict__, "clip_value": 0.5})
        with self.assertRaisesRegex(ValueError, "clip_coef"):
            _speed_presets.cleanrl_args(
                _speed_presets.Preset(**{**presets["hopper"].__dict__, "hyper": odd}), 0, 1
            )

    def test_tfagents_driver_reads_only_keys_it_is_given(self):
        with open(os.path.join(REPO, "benchmarks", "_tfagents_driver.py"), encoding="utf-8") as f:
            used = set(re.findall(r'hyper\["(\w+)"\]', f.read()))
        for name in _speed_presets.PRESETS:
            given = _speed_presets.tfagents_hyper(_speed_presets.PRESETS[name].hyper)
            self.assertLessEqual(used, set(given), name)
            json.dumps(given)

    def test_tfagents_steps_tfppos_own_atari_env(self):
        atari = speed_vs_sb3.tfagents_command("atari_breakout", 1, 4096, "/runs/a", "/trees/t")
        self.assertEqual(atari[2:4], ["--env=tfppo/Atari-v0", "--num_envs=8"])
        self.assertEqual(atari[-3:], ['--env_kwargs={"game": "Breakout"}', "--atari", "--tfppo_dir=/trees/t"])
        cartpole = speed_vs_sb3.tfagents_command("cartpole", 1, 4096, "/runs/c", "/trees/t")
        self.assertEqual(cartpole[-1], "--summary=/runs/c.json")  # no Atari flags, no kwargs
        self.assertFalse(_speed_presets.PRESETS["cartpole_novel_lstm"].tfagents)  # no LSTM PPO there

    def test_command_line_parsing(self):
        self.assertEqual(speed_vs_sb3.parse_timesteps("4096"), {"*": 4096})
        self.assertEqual(speed_vs_sb3.parse_timesteps("hopper=250000,512"), {"hopper": 250000, "*": 512})
        with self.assertRaisesRegex(ValueError, "unknown preset"):
            speed_vs_sb3.parse_timesteps("walker=5")
        self.assertEqual(speed_vs_sb3.parse_thresholds("hopper=1000"), {"hopper": 1000.0})
        # Peer venvs are checked by main, not by the parser (the docs test parses commands).
        args = speed_vs_sb3.parse_args(
            [
                "--peers=sb3,cleanrl,tfagents",
                "--skip_sb3",
                "--total_timesteps=hopper=4096",
                "--presets=hopper",
            ]
        )
        self.assertEqual(args.peers, ["cleanrl", "tfagents"])
        self.assertEqual(speed_vs_sb3.budget(args, "hopper"), 4096)
        self.assertEqual(speed_vs_sb3.parse_args([]).peers, ["sb3"])  # the historical default
        with self.assertRaises(SystemExit):
            speed_vs_sb3.parse_args(["--peers=rllib"])

    def test_the_peers_setup_commands_are_the_documented_ones(self):
        # README_speed's setup block is what a user copies; the script's failure message names
        # the same command, so the two may not drift apart.
        with open(os.path.join(REPO, "benchmarks", "README_speed.md"), encoding="utf-8") as f:
            lines = {line.strip() for line in f}
        commands = [*speed_vs_sb3.SETUP.values(), *speed_vs_sb3.ATARI_SETUP.values()]
        self.assertLen(commands, 6)
        for command in commands:
            self.assertIn(command, lines)

    def test_command_line_shows_the_note_apart(self):
        self.assertEqual(
            speed_vs_sb3.command_line(["--seeds=0", "--note=a long sentence", "--cleanrl_dir=a b"]),
            ".venv/bin/python benchmarks/speed_vs_sb3.py --seeds=0 --note=\"...\" '--cleanrl_dir=a b'",
        )

    def test_cleanrl_scripts_are_found_in_a_checkout_or_a_folder(self):
        checkout, folder = make_tempdir(self), make_tempdir(self)
        os.makedirs(os.path.join(checkout, "cleanrl"))
        in_checkout, in_folder = os.path.join(checkout, "cleanrl", "ppo.py"), os.path.join(folder, "ppo.py")
        for path in (in_checkout, in_folder):
            with open(path, "w"):
                pass
        self.assertEqual(speed_vs_sb3.cleanrl_script(checkout, "ppo.py"), in_checkout)
        self.assertEqual(speed_vs_sb3.cleanrl_script(folder, "ppo.py"), in_folder)
        with self.assertRaisesRegex(FileNotFoundError, "ppo_continuous_action.py"):
            speed_vs_sb3.cleanrl_script(folder, "ppo_continuous_action.py")


class SpeedPeerOutputsTest(absltest.TestCase):
    """What the drivers record, and the figures and verdicts made from it."""

    def test_cleanrl_recorder_writes_one_record_per_iteration(self):
        path = os.path.join(make_tempdir(self), "records.jsonl")
        with open(path, "w") as f:
            recorder = _cleanrl_driver.Recorder(f)
            recorder.marks["construct_start"] = time.perf_counter()
            for value in range(150):  # more than the last-100 window
                recorder.scalar("charts/episodic_return", float(value), value)
            recorder.scalar("losses/value_loss", 1.0, 256)
            recorder.scalar("charts/SPS", 1000, 256)
        with open(path) as f:
            records = [json.loads(line) for line in f]
        self.assertLen(records, 1)
        self.assertEqual(records[0]["global_step"], 256)
        self.assertEqual(records[0]["episodes"], 150)
        self.assertAlmostEqual(records[0]["episode_return_mean"], sum(range(50, 150)) / 100)
        self.assertGreaterEqual(records[0]["wall_s"], 0.0)
        self.assertEqual(recorder.last_step, 256)

    def test_cleanrl_driver_splits_its_own_flags_from_the_scripts(self):
        args, script = _cleanrl_driver.parse_args(
            ["--script=ppo.py", "--records=r", "--summary=s", "--", "--env-id", "CartPole-v1"]
        )
        self.assertEqual((args.script, args.torch_threads), ("ppo.py", 1))
        self.assertEqual(script, ["--env-id", "CartPole-v1"])

    def test_random_policy_rate_is_measured(self):
        self.assertGreater(_random_policy.measure("CartPole-v1", 2, 0, 0.05), 0.0)

    def rows(self):
        def run(library, seed, sps, reached_s, env="CartPole-v1"):
            records = [
                {"global_step": 256, "episodes": 50, "episode_return_mean": 480.0, "wall_s": 1.0},
                {"global_step": 512, "episodes": 120, "episode_return_mean": 300.0, "wall_s": 2.0},
            ]
            if reached_s is not None:
                records.append(
                    {"global_step": 768, "episodes": 150, "episode_return_mean": 476.0, "wall_s": reached_s}
                )
            timing = {"steps": int(sps * 10), "construct_s": 0.1, "total_s": 10.0}
            return _speed_report.result_row("cartpole", env, library, seed, records, timing)

        return [
            run("sb3", 0, 1000, 20.0),
            run("cleanrl", 0, 2000, None, env="CartPole-v1"),
            run("tfppo", 0, 6000, 4.0),
            run("sb3", 1, 1000, 30.0),
            run("cleanrl", 1, 2000, 10.0),
            run("tfppo", 1, 4000, 5.0),
        ]

    def test_threshold_needs_a_full_window_of_episodes(self):
        row = self.rows()[0]
        self.assertEqual((row["reached_step"], row["reached_s"]), (768, 20.0))  # not the 480 of 50 episodes
        self.assertEqual(row["sps"], 1000.0)
        self.assertEqual(row["first_update_s"], 1.0)

    def test_ratios_targets_and_random_shares(self):
        rows = self.rows()
        self.assertEqual(_speed_report.ratios("cartpole", rows, "sb3"), [6.0, 4.0])
        self.assertEqual(_speed_report.time_ratios("cartpole", rows, "sb3"), [5.0, 6.0])
        self.assertEqual(_speed_report.time_ratios("cartpole", rows, "cleanrl"), [None, 2.0])
        rates = [
            {"preset": "cartpole", "seed": 0, "source": "main", "rate": 10000.0},
            {"preset": "cartpole", "seed": 0, "source": "cleanrl", "rate": 20000.0},
        ]
        summary = {e["library"]: e for e in _speed_report.summarise(["cartpole"], rows, rates)}
        self.assertEqual(list(summary), ["sb3", "cleanrl", "tfppo"])
        self.assertAlmostEqual(summary["tfppo"]["fraction_of_random"], 0.5)
        self.assertAlmostEqual(summary["cleanrl"]["fraction_of_random"], 0.1)  # against its own venv
        checks = {c["what"]: c for c in _speed_report.target_checks(list(summary.values()))}
        self.assertEqual(checks["tfppo / SB3 PPO"]["target"], 5.0)
        self.assertTrue(checks["tfppo / SB3 PPO"]["speed_met"])  # mean 5.0
        self.assertTrue(checks["tfppo / SB3 PPO"]["time_met"])  # mean 5.5
        self.assertTrue(checks["tfppo / CleanRL"]["speed_met"])  # 2.5 >= 2
        self.assertTrue(checks["tfppo / CleanRL"]["time_met"])  # only seed 1 counts: 2.0
        self.assertEqual(_speed_report.target("tfagents", "hopper"), 3.0)
        self.assertEqual(_speed_report.target("sb3", "hopper"), 3.0)

    def test_envpool_run_is_set_against_the_peers_and_envpools_own_rate(self):
        """speed_vs_sb3.py --envpool: tfppo's EnvPool run gets its own ratio rows and its share of
        EnvPool's random-policy rate; the plain tfppo rows are unchanged."""
        rows = self.rows()
        rows.insert(3, dict(rows[2], library="tfppo_envpool", sps=9000.0, reached_s=2.0))
        rows.append(dict(rows[-1], library="tfppo_envpool", sps=2000.0, reached_s=None))
        self.assertEqual(_speed_report.ratios("cartpole", rows, "sb3", ours="tfppo_envpool"), [9.0, 2.0])
        self.assertEqual(
            _speed_report.time_ratios("cartpole", rows, "sb3", ours="tfppo_envpool"), [10.0, None]
        )
        rates = [
            {"preset": "cartpole", "seed": 0, "source": "main", "rate": 10000.0},
            {"preset": "cartpole", "seed": 0, "source": "envpool", "rate": 20000.0},
        ]
        summary = {e["library"]: e for e in _speed_report.summarise(["cartpole"], rows, rates)}
        self.assertEqual(list(summary), ["sb3", "cleanrl", "tfppo", "tfppo_envpool"])
        self.assertAlmostEqual(summary["tfppo_envpool"]["fraction_of_random"], 5500 / 20000)
        self.assertEqual(summary["tfppo_envpool"]["tfppo_ratio"], [6000 / 9000, 4000 / 2000])
        checks = {c["what"]: c for c in _speed_report.target_checks(list(summary.values()))}
        self.assertEqual(checks["tfppo / SB3 PPO"]["speed"], 5.0)
        envpool_vs_sb3 = checks["tfppo --vector_mode=envpool / SB3 PPO"]
        self.assertEqual((envpool_vs_sb3["speed"], envpool_vs_sb3["speed_min"]), (5.5, 2.0))
        self.assertTrue(envpool_vs_sb3["time_met"])  # seed 0 only: 10.0

    def test_bf16_run_is_set_against_the_peers_and_the_same_random_rate(self):
        """speed_vs_sb3.py --bf16: tfppo's bfloat16 run gets its own ratio rows and target checks,
        its share of the same random-policy rate as tfppo's."""
        rows = self.rows()
        rows.append(dict(rows[2], library="tfppo_bf16", sps=12000.0, reached_s=1.0))
        rates = [{"preset": "cartpole", "seed": 0, "source": "main", "rate": 24000.0}]
        summary = {e["library"]: e for e in _speed_report.summarise(["cartpole"], rows, rates)}
        self.assertEqual(list(summary), ["sb3", "cleanrl", "tfppo", "tfppo_bf16"])
        self.assertEqual(summary["tfppo_bf16"]["fraction_of_random"], 0.5)
        self.assertEqual(summary["sb3"]["bf16_ratio"], [12.0])
        checks = {c["what"]: c for c in _speed_report.target_checks(list(summary.values()))}
        self.assertEqual(checks["tfppo --compute_dtype=bfloat16 / SB3 PPO"]["speed"], 12.0)
        self.assertEqual(checks["tfppo / SB3 PPO"]["speed"], 5.0)  # unchanged by the variant

    def test_results_files(self):
        out = make_tempdir(self)
        meta = {
            "command": "x",
            "note": "The machine was shared.",
            "started": "now",
            "cpus": 2,
            "load_start": 1.0,
            "load_end": 1.0,
            "commit": "abc1234",
            "tfppo_dir": "/tmp/t",
            "dirty": [],
            "tensorflow": "2.20.0",
            "seeds": [0, 1],
            "tfppo_flags": {"cartpole": ["--flagfile=experiments/cartpole.flags"]},
            "versions": {},
        }
        text = _speed_report.write_outputs(out, meta, ["cartpole"], self.rows(), [])
        self.assertIn("The machine was shared.", text)
        self.assertIn("| CleanRL | CartPole-v1 |", text)
        self.assertIn("| cartpole | tfppo / SB3 PPO | >= 5x | 5.00 (4.00) | met |", text)
        with open(os.path.join(out, "results.json")) as f:
            results = json.load(f)
        self.assertEqual(len(results["runs"]), 6)
        self.assertEqual(results["summary"][-1]["library"], "tfppo")


class LoopOverheadTest(absltest.TestCase):
    def test_free_env_has_the_spaces_and_ends_its_episodes(self):
        import gymnasium as gym
        import numpy as np

        box = gym.spaces.Box(-np.inf, np.inf, (11,), np.float64)
        env = loop_overhead.make_free_env(box, gym.spaces.Box(-1.0, 1.0, (3,), np.float32), 5)()
        observation, _ = env.reset(seed=0)
        self.assertEqual(observation.shape, (11,))
        np.testing.assert_array_equal(observation, np.zeros(11))  # infinite bounds: the middle of [-1, 1]
        ends = []
        for _ in range(5):
            observation, reward, terminated, truncated, _ = env.step(np.zeros(3, np.float32))
            ends.append(truncated)
            self.assertEqual((reward, terminated), (1.0, False))
        self.assertEqual(ends, [False] * 4 + [True])
        np.testing.assert_allclose(observation, np.full(11, 0.005))  # drifts, for the normaliser
        self.assertTrue(box.contains(observation))
        grid = gym.spaces.MultiBinary(4)
        env = loop_overhead.make_free_env(grid, gym.spaces.Discrete(2), 3)()
        self.assertTrue(grid.contains(env.reset()[0]))


class MujocoSuiteTest(absltest.TestCase):
    def test_iqm_is_the_mean_of_the_middle_half(self):
        self.assertAlmostEqual(mujoco_suite.iqm(range(1, 9)), 4.5)  # 3, 4, 5, 6
        # Six values: the 2nd and 5th count half; an outlier at either end does not count.
        self.assertAlmostEqual(mujoco_suite.iqm([0, 1, 2, 3, 4, 100]), 2.5)
        self.assertAlmostEqual(mujoco_suite.iqm([-50, 1, 2, 3, 4, 5]), 2.5)
        self.assertAlmostEqual(mujoco_suite.iqm([7.0]), 7.0)

    def test_normalised_score_works_for_negative_returns(self):
        self.assertAlmostEqual(mujoco_suite.normalised(-5.0, -43.0, -7.71), 38.0 / 35.29)
        self.assertAlmostEqual(mujoco_suite.normalised(2530.0, 30.0, 2530.0), 1.0)
        self.assertEqual(mujoco_suite.best_anchor("HalfCheetah-v5"), ("rl-zoo", 5819.10))
        self.assertEqual(mujoco_suite.best_anchor("Pusher-v5"), ("CleanRL", -40.38))

    def test_summary_targets_and_results_table(self):
        def row(env, seed, final):
            return {
                "env": env,
                "preset": "hopper",
                "seed": seed,
                "final_last100": final,
                "eval_return": final + 1,
            }

        rows = [row("Hopper-v5", 0, 2830.0), row("Hopper-v5", 1, 2630.0), row("Pusher-v5", 0, -100.0)]
        summary = mujoco_suite.summarise(rows, {"Hopper-v5": 30.0, "Pusher-v5": -160.0})
        hopper, pusher = summary
        self.assertEqual(hopper["seeds"], [0, 1])
        self.assertAlmostEqual(hopper["mean"], 2730.0)
        self.assertAlmostEqual(hopper["std"], 100.0)
        self.assertAlmostEqual(hopper["mean_normalised"], 1.08)  # (2730 - 30) / (2530 - 30)
        self.assertTrue(hopper["mean_target_met"] and hopper["worst_target_met"])
        self.assertAlmostEqual(pusher["worst_normalised"], 60.0 / 119.62)
        self.assertFalse(pusher["mean_target_met"] or pusher["worst_target_met"])
        out = make_tempdir(self)
        text = open(mujoco_suite.write_results(rows, summary, out, "cmd", "hopper")).read()
        self.assertIn(
            "| Hopper-v5 | hopper | 2 | 2830 (2831), 2630 (2631) | 2730 ± 100 | 2630 | 30.0 |", text
        )
        self.assertIn("| -100 | -160 | CleanRL -40.4 | 0.50 | 0.50 | mean **short**, worst **short** |", text)
        scores = sorted([2800 / 2500, 2600 / 2500, 60 / 119.62])
        self.assertIn(f"**{mujoco_suite.iqm(scores):.2f}** (3 runs)", text)
        with open(os.path.join(out, "results.json")) as f:
            self.assertEqual(len(json.load(f)["summary"]), 2)
        self.assertNotIn("Each anchor in its own measure", text)  # no final evaluations

    def test_each_anchor_is_scored_in_its_own_measure(self):
        # HalfCheetah: CleanRL's anchor is a training return, rl-zoo's and TF-Agents' evaluations.
        def row(seed, final, evaluation):
            return {
                "env": "HalfCheetah-v5",
                "preset": "halfcheetah",
                "seed": seed,
                "final_last100": final,
                "eval_return": evaluation,
                "final_eval": evaluation,
                "eval_episodes": 150,
            }

        rows = [row(0, 5500.0, 6000.0), row(1, 5300.0, 5900.0)]
        (summary,) = mujoco_suite.summarise(rows, {"HalfCheetah-v5": -300.0})
        self.assertFalse(summary["mean_target_met"])  # training 5400 against the best, 5819.1
        anchors = summary["by_anchor"]
        self.assertEqual(
            {k: (a["measure"], a["mean"], a["worst"]) for k, a in anchors.items()},
            {
                "CleanRL": ("training", 5400.0, 5300.0),
                "rl-zoo": ("evaluation", 5950.0, 5900.0),
                "TF-Agents": ("evaluation", 5950.0, 5900.0),
            },
        )
        self.assertAlmostEqual(anchors["rl-zoo"]["mean_normalised"], 6250.0 / 6119.1)
        self.assertAlmostEqual(anchors["CleanRL"]["worst_normalised"], 5600.0 / 1742.64)
        self.assertTrue(all(a["met"] for a in anchors.values()) and summary["anchors_met"])
        # An evaluation below the zoo's anchor is short there, and so is the row.
        rows[1] = row(1, 5300.0, 5000.0)
        (summary,) = mujoco_suite.summarise(rows, {"HalfCheetah-v5": -300.0})
        self.assertEqual([k for k, a in summary["by_anchor"].items() if not a["met"]], ["rl-zoo"])
        self.assertFalse(summary["anchors_met"])
        out = make_tempdir(self)
        text = open(mujoco_suite.write_results(rows, [summary], out, "cmd", None)).read()
        self.assertIn("the mean of 150 episodes per seed", text)
        self.assertNotIn("IQM", text)  # no shared preset ran
        self.assertIn(
            "| HalfCheetah-v5 | halfcheetah | 6000, 5000 | 5500 ± 500 | 5000 | CleanRL 1443 (training): "
            f"{5700 / 1742.64:.2f}, {5600 / 1742.64:.2f}; rl-zoo 5819 (evaluation): {5800 / 6119.1:.2f}, "
            f"{5300 / 6119.1:.2f} **short**; TF-Agents 4239 (evaluation): {5800 / 4539:.2f}, {5300 / 4539:.2f} | **short** |",
            text,
        )
        # Without evaluations (--eval_episodes=0) the evaluation anchors are not judged at all.
        for r in rows:
            r["final_eval"] = None
        (summary,) = mujoco_suite.summarise(rows, {"HalfCheetah-v5": -300.0})
        self.assertEqual((list(summary["by_anchor"]), summary["anchors_met"]), (["CleanRL"], None))

    def test_final_evaluation_is_reused_and_a_failure_is_one_line(self):
        logdir = make_tempdir(self)
        with open(os.path.join(logdir, "final_eval_150_s50000.json"), "w") as f:
            json.dump({"mean": 5829.5, "returns": [5829.5]}, f)
        self.assertEqual(mujoco_suite.final_evaluation(logdir, 150), 5829.5)  # no process started
        with self.assertRaises(presets.RunFailed) as raised:
            mujoco_suite.final_evaluation(logdir, 3)  # no saved_model in it: tfppo.evaluate refuses
        self.assertIn(
            f"the final evaluation of {logdir} failed (exit 2): error: --model=", str(raised.exception)
        )
        self.assertEqual(str(raised.exception).count("\n"), 0)
        self.assertFalse(os.path.exists(os.path.join(logdir, "final_eval_3_s50000.json")))

    def test_preset_text_names_the_env_only_when_it_differs(self):
        self.assertEqual(mujoco_suite.preset_text("hopper", "Hopper-v5"), "hopper")
        self.assertEqual(mujoco_suite.preset_text("hopper", "Swimmer-v5"), "hopper:--env=Swimmer-v5")
        self.assertEqual(
            mujoco_suite.preset_text("hopper:--gamma=0.9999", "Swimmer-v5"),
            "hopper:--env=Swimmer-v5+--gamma=0.9999",
        )

    def test_diagnostics_of_a_run(self):
        logdir = make_tempdir(self)
        records = [
            {
                "global_step": i,
                "value_loss": 1.0 + i % 7,
                "sigma_mean": 1.0 - i / 40,
                "sigma_min": 0.9 - i / 40,
                "clip_fraction": i / 100,
                "kl": 0.01,
                "explained_variance": i / 20,
            }
            for i in range(20)
        ]
        records.insert(0, {"global_step": 0, "episode_return_mean": 1.0})  # a record without an update
        with open(os.path.join(logdir, "metrics.jsonl"), "w") as f:
            f.write("\n".join(json.dumps(r) for r in records) + "\n")
        found = mujoco_suite.diagnostics(logdir)
        self.assertAlmostEqual(found["sigma_end"], 1.0 - 19 / 40)
        self.assertAlmostEqual(found["sigma_lowest"], 0.9 - 19 / 40)
        self.assertEqual(found["value_loss_peak"], 7.0)
        self.assertEqual(found["value_loss_end"], 1.0 + 19 % 7)
        self.assertAlmostEqual(found["clip_fraction_end"], 0.185)  # the last 2 of 20 updates
        self.assertAlmostEqual(found["explained_variance_end"], 0.95)

    def test_env_specific_presets_take_flags(self):
        args = mujoco_suite.parse_args(["--envs=Swimmer-v5", "--specific=Swimmer-v5:hopper:--gamma=0.9999"])
        self.assertEqual(args.specific_list, [("Swimmer-v5", "hopper:--gamma=0.9999")])
        only = mujoco_suite.parse_args(["--envs=", "--specific=Swimmer-v5:swimmer"])
        self.assertEqual((only.env_list, only.specific_list), ([], [("Swimmer-v5", "swimmer")]))

    def test_bad_arguments_exit_2_with_one_line(self):
        for argv, expected in (
            (["--envs=Ant-v5"], "--envs: Ant-v5 is not one of"),
            (["--envs="], "--envs: (none) is not one of"),
            (["--parallel=0"], "--parallel=0 must be >= 1"),
            (["--seeds=a"], "--seeds='a' must be"),
            (["--specific=Hopper-v5"], "must be ENV:PRESET"),
            (["--preset=nope"], "no experiments/nope.flags"),
            (["--specific=Swimmer-v5:nope:--gamma=0.9"], "no experiments/nope.flags"),
            (["--eval_episodes=-1"], "--eval_episodes=-1 must be >= 0"),
        ):
            err = io.StringIO()
            with self.assertRaises(SystemExit) as raised, contextlib.redirect_stderr(err):
                mujoco_suite.parse_args(argv)
            self.assertEqual(raised.exception.code, 2)
            self.assertIn(expected, err.getvalue())
            self.assertEqual(err.getvalue().count("\n"), 1)

    def test_presets_refuses_no_parallel_runs(self):
        err = io.StringIO()
        with self.assertRaises(SystemExit) as raised, contextlib.redirect_stderr(err):
            presets.parse_args(["--presets=cartpole", "--parallel=0"])
        self.assertEqual(raised.exception.code, 2)
        self.assertEqual(err.getvalue(), "error: --parallel=0 must be >= 1\n")

    def test_a_failed_run_is_one_line_naming_it_and_its_log(self):
        out = make_tempdir(self)
        command = [sys.executable, os.path.join(REPO, "benchmarks", "presets.py"), "--presets=cartpole"]
        script = start_script([*command, "--seeds=0", f"--out={out}", "--", "--total_timesteps=-5"])
        _, stderr = script.communicate(timeout=300)
        self.assertEqual(script.returncode, 1, stderr[-3000:])
        log = os.path.join(out, "runs", "cartpole_seed0.log")
        self.assertRegex(
            stderr.strip(),
            rf"^error: cartpole seed 0 failed \(exit 2\): error: .*total_timesteps.* \(log: {re.escape(log)}\); "
            "the same command reuses finished runs$",  # no other run was in progress
        )
        self.assertFalse(os.path.exists(os.path.join(out, "results.md")))


if __name__ == "__main__":
    absltest.main()
