"""Multi-worker training on 127.0.0.1: TF_CONFIG parsing, global advantage statistics, replicas
that end identical, chief-only writes, a dead worker stopping the run, resume, launcher cleanup."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from absl.testing import absltest

from tests.helpers import REPO, make_tempdir
from tfppo import distributed, launch
from tfppo.config import ConfigError

ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)


class Launcher:
    """`python -m tfppo.launch ARGS` in the background; its output is read as it comes."""

    def __init__(self, *args: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfppo.launch", *args],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.pids: dict[int, int] = {}
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(r"started worker (\d+) \(pid (\d+)\)", line)
            if match:
                self.pids[int(match.group(1))] = int(match.group(2))

    def pid(self, index: int, timeout: float = 60) -> int:
        deadline = time.time() + timeout
        while index not in self.pids:
            if time.time() > deadline or self.process.poll() is not None:
                raise AssertionError(f"no pid for worker {index}: {''.join(self.lines)[-2000:]}")
            time.sleep(0.05)
        return self.pids[index]

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.reader.join(timeout=10)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class ClusterTest(absltest.TestCase):
    def test_tf_config(self):
        self.assertIsNone(distributed.cluster_from_env({}))
        one = launch.tf_config(["127.0.0.1:1"], 0)
        self.assertIsNone(distributed.cluster_from_env({"TF_CONFIG": one}))
        two = launch.tf_config(["127.0.0.1:1", "127.0.0.1:2"], 1)
        cluster = distributed.cluster_from_env({"TF_CONFIG": two})
        self.assertEqual((cluster.num_workers, cluster.index, cluster.is_chief), (2, 1, False))
        for bad, expected in (
            ("{not json", "is not JSON like"),
            (
                json.dumps(
                    {"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker", "index": 0}}
                ),
                "'worker' tasks",
            ),
            (launch.tf_config(["a:1", "b:2"], 5), "task index 5"),
        ):
            with self.assertRaisesRegex(ConfigError, expected):
                distributed.cluster_from_env({"TF_CONFIG": bad})

    def test_free_ports_differ(self):
        ports = launch.free_ports(4)
        self.assertLen(set(ports), 4)


MOMENTS_WORKER = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from tfppo import distributed, losses
    strategy = distributed.make_strategy()
    import tensorflow as tf
    index = int(sys.argv[1])
    data = np.random.default_rng(0).normal(3.0, 2.0, size=1024).astype(np.float32)
    mine = data[:256] if index == 0 else data[256:]  # uneven halves: 256 and 768 values
    replicas = distributed.Replicas(2)
    normalize = tf.function(lambda x: losses.normalize_advantages(x, moments=replicas.moments))
    mean, variance = tf.function(replicas.moments)(tf.constant(mine))
    print(json.dumps({"mean": float(mean), "variance": float(variance),
                      "normalized": normalize(tf.constant(mine)).numpy().tolist()}))
    """
)


class GlobalStatisticsTest(absltest.TestCase):
    def test_advantage_statistics_are_those_of_all_workers_data(self):
        ports = launch.free_ports(2)
        addresses = [f"127.0.0.1:{p}" for p in ports]
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", MOMENTS_WORKER, str(i)],
                cwd=REPO,
                env=dict(ENV, TF_CONFIG=launch.tf_config(addresses, i)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(2)
        ]
        outputs = []
        for process in processes:
            out, err = process.communicate(timeout=120)
            self.assertEqual(process.returncode, 0, err[-2000:])
            outputs.append(json.loads(out.strip().splitlines()[-1]))
        data = np.random.default_rng(0).normal(3.0, 2.0, size=1024).astype(np.float32)
        for output in outputs:  # Both workers got the statistics of all 1024 values.
            self.assertAlmostEqual(output["mean"], float(np.mean(data, dtype=np.float64)), places=5)
            self.assertAlmostEqual(output["variance"], float(np.var(data, dtype=np.float64)), places=4)
        # The same total batch split 1 x 1024 or 256 + 768 gives the same normalised advantages.
        whole = (data - data.mean()) / data.std()
        np.testing.assert_allclose(outputs[0]["normalized"] + outputs[1]["normalized"], whole, atol=1e-5)


def run_launcher(args, timeout=300):
    result = subprocess.run(
        [sys.executable, "-m", "tfppo.launch", *args],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result


class TwoWorkerRunTest(absltest.TestCase):
    def assert_one_digest(self, result) -> list[str]:
        """The run succeeded and both workers ended with the same weights (and statistics)."""
        self.assertEqual(result.returncode, 0, result.stdout[-3000:] + result.stderr[-3000:])
        digests = re.findall(r"weights digest ([0-9a-f]{16})", result.stdout)
        self.assertLen(digests, 2)
        self.assertEqual(digests[0], digests[1])
        return digests

    def test_replicas_end_identical_and_only_the_chief_writes(self):
        # --norm_value: the return statistics (in the digest) must be those of both workers' data.
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_launcher(
            [
                "--num_workers=2",
                "--",
                f"--logdir={logdir}",
                "--total_timesteps=1024",
                "--num_envs=4",
                "--eval_episodes=1",
                "--norm_value",
            ]
        )
        digests = self.assert_one_digest(result)
        with open(os.path.join(logdir, "summary.json")) as f:
            summary = json.load(f)
        self.assertEqual(summary["num_workers"], 2)
        self.assertEqual(summary["weights_digest"], digests[0])
        # 2 workers x 4 envs x 32 steps = 256 global env steps per update.
        self.assertEqual(summary["global_step"], 1024)
        with open(os.path.join(logdir, "metrics.jsonl")) as f:
            records = [json.loads(line) for line in f]
        self.assertEqual([r["global_step"] for r in records], [256, 512, 768, 1024])
        self.assertTrue(all(r["value_target_std"] > 0 for r in records))

    @pytest.mark.slow  # two more workers started: `pytest -m slow tests`
    def test_dict_observations_with_images_and_memory_train_on_two_workers(self):
        # An image, a vector (normalised: statistics merged over the workers) and a Discrete key,
        # read through an LSTM whose state each worker carries for its own envs.
        logdir = os.path.join(make_tempdir(self), "run")
        result = run_launcher(
            [
                "--num_workers=2",
                "--",
                "--env=tests.fake_envs:DictObservation-v0",
                f"--logdir={logdir}",
                "--total_timesteps=512",
                "--num_envs=4",
                "--norm_obs",
                "--recurrent=lstm",
                "--rnn_units=8",
                "--eval_episodes=1",
            ]
        )
        self.assert_one_digest(result)
        self.assertTrue(os.path.isfile(os.path.join(logdir, "saved_model", "saved_model.pb")))

    def test_a_dead_worker_stops_the_run_and_resume_continues_it(self):
        logdir = os.path.join(make_tempdir(self), "run")
        checkpoints = os.path.join(logdir, "checkpoints")
        run = Launcher(
            "--num_workers=2",
            "--grace=3",
            "--",
            f"--logdir={logdir}",
            "--total_timesteps=1000000",
            "--num_envs=4",
            "--checkpoint_every=1",
        )
        deadline = time.time() + 240
        while not (
            os.path.isdir(checkpoints) and len(glob.glob(os.path.join(checkpoints, "ckpt-*.index"))) >= 2
        ):
            if time.time() > deadline or run.process.poll() is not None:
                run.wait(timeout=10)
                self.fail(f"no checkpoints: {run.output[-3000:]}")
            time.sleep(0.2)
        os.kill(run.pid(1), signal.SIGKILL)
        killed_at = time.time()
        code = run.wait(timeout=60)
        self.assertLess(time.time() - killed_at, 30)  # The chief stopped within seconds.
        self.assertNotEqual(code, 0)
        self.assertIn("worker 1 exited with code -9; stopping the other workers", run.output)
        self.assertTrue(all(gone(pid) for pid in run.pids.values()), run.pids)

        with open(os.path.join(logdir, "metrics.jsonl")) as f:
            before = [json.loads(line)["update"] for line in f]
        resumed = run_launcher(
            [
                "--num_workers=2",
                "--",
                f"--logdir={logdir}",
                "--resume",
                f"--total_timesteps={256 * (before[-1] + 2)}",
            ]
        )
        self.assertEqual(resumed.returncode, 0, resumed.stdout[-3000:])
        with open(os.path.join(logdir, "metrics.jsonl")) as f:
            after = [json.loads(line)["update"] for line in f][len(before) :]
        # The resumed run starts at most one update back (the one in flight) and runs to the budget.
        self.assertIn(after[0], (before[-1], before[-1] + 1))
        self.assertEqual(after[-1], before[-1] + 2)
        digests = re.findall(r"weights digest ([0-9a-f]{16})", resumed.stdout)
        self.assertLen(digests, 2)
        self.assertEqual(digests[0], digests[1])

    def test_launcher_kills_a_worker_whose_peer_never_starts(self):
        logdir = os.path.join(make_tempdir(self), "run")
        run = Launcher("--num_workers=2", "--grace=2", "--", "--total_timesteps=256", f"--logdir={logdir}")
        os.kill(run.pid(1), signal.SIGKILL)  # Worker 0 now waits for it forever.
        self.assertNotEqual(run.wait(timeout=60), 0)
        self.assertLen(run.pids, 2)
        self.assertTrue(all(gone(pid) for pid in run.pids.values()), run.pids)


if __name__ == "__main__":
    absltest.main()
