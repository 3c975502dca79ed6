"""Benchmark scripts: time_breakdown's table accounts for the whole loop; presets.py stops
its runs with a checkpoint on SIGTERM and resumes them."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from absl.testing import absltest

from tests.helpers import REPO, make_tempdir


class TimeBreakdownTest(absltest.TestCase):
    def test_three_updates_are_broken_down(self):
        script = os.path.join(REPO, "benchmarks", "time_breakdown.py")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        result = subprocess.run(
            [sys.executable, script, "--preset=cartpole", "--", "--total_timesteps=768"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
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


if __name__ == "__main__":
    absltest.main()


class PresetsInterruptTest(absltest.TestCase):
    def test_sigterm_checkpoints_the_runs_and_the_same_command_resumes_them(self):
        out = make_tempdir(self)
        logdir = os.path.join(out, "runs", "cartpole_seed0")

        def presets(*extra):
            command = [sys.executable, os.path.join(REPO, "benchmarks", "presets.py")]
            command += ["--presets=cartpole", "--seeds=0", "--parallel=1", f"--out={out}", "--"]
            command += ["--eval_episodes=0", "--checkpoint_every=2", *extra]
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
            return subprocess.Popen(
                command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )

        first = presets("--total_timesteps=10000000")
        metrics = os.path.join(logdir, "metrics.jsonl")
        deadline = time.time() + 120
        while time.time() < deadline and not (os.path.exists(metrics) and os.path.getsize(metrics) > 0):
            time.sleep(0.5)
        self.assertTrue(os.path.exists(metrics), "training never started")
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=120)
        self.assertEqual(first.returncode, 2, stderr)
        self.assertIn("run the same command again to resume", stderr)
        with open(logdir + ".log") as f:
            self.assertIn("interrupted (SIGINT) at env step", f.read())  # tfppo saved on its SIGINT
        still_running = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if logdir.encode() in f.read():
                        still_running.append(pid)
            except OSError:
                pass
        self.assertEqual(still_running, [])

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
