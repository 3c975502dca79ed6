"""benchmarks/time_breakdown.py: a real (tiny) run, its table accounts for the whole loop."""

import os
import re
import subprocess
import sys

from absl.testing import absltest

from tests.helpers import REPO


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
