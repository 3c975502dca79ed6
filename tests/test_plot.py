"""tfppo.plot: the tutorial's smoothing, both figure styles, and its errors."""

import json
import os
import warnings
from unittest import mock

import numpy as np
from absl.testing import absltest

from tests.helpers import make_tempdir, run_module
from tfppo import plot


def fake_run(root: str, name: str, returns) -> str:
    logdir = os.path.join(root, name)
    os.makedirs(logdir)
    with open(os.path.join(logdir, "metrics.jsonl"), "w") as f:
        for i, value in enumerate(returns):
            record = {"global_step": 200 * (i + 1), "episodes": i + 1, "episode_return_mean": value}
            f.write(json.dumps(record) + "\n")
    with open(os.path.join(logdir, "episodes.csv"), "w") as f:
        f.write("global_step,return,length\n")
        f.writelines(f"{200 * (i + 1)},{value},200\n" for i, value in enumerate(returns))
    return logdir


class PlotTest(absltest.TestCase):
    def test_tutorial_smoothing_by_hand(self):
        # -1000, then 0.9 * -1000 + 0.1 * -500 = -950, then 0.9 * -950 + 0.1 * -100 = -865.
        np.testing.assert_allclose(
            plot.tutorial_smoothing(np.array([-1000.0, -500.0, -100.0])), [-1000, -950, -865]
        )

    def test_read_episodes(self):
        logdir = fake_run(make_tempdir(self), "a_seed0", [-1200.0, -800.0])
        np.testing.assert_array_equal(plot.read_episodes(logdir), [[200, -1200, 200], [400, -800, 200]])

    def test_both_styles_write_a_png(self):
        root = make_tempdir(self)
        runs = [fake_run(root, f"clip_seed{s}", np.linspace(-1200, -300 - s, 50)) for s in range(2)]
        for style in ([], ["--tutorial"]):
            out = os.path.join(root, f"curve{len(style)}.png")
            self.assertEqual(plot.main([*runs, f"--out={out}", *style]), 0)
            with open(out, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        # tfppo.train's name for a run directory works too, beside positional ones
        out = os.path.join(root, "named.png")
        self.assertEqual(plot.main([runs[0], f"--logdir={runs[1]}", f"--out={out}", "--labels=a,b"]), 0)
        self.assertTrue(os.path.isfile(out))

    def test_a_long_title_and_label_stay_inside_the_image(self):
        # mujoco_suite's titles name the preset and its flags (~100 characters): unwrapped, the
        # title ran off both edges of the 7-inch figure.
        import matplotlib.figure

        root = make_tempdir(self)
        run = fake_run(root, "long_seed0", np.linspace(0, 5000, 20))
        flags = "hopper:--target_kl=0.03 --sigma=state_dependent --num_envs=4 --norm_obs=false --gamma=0.995"
        boxes = {}
        original = matplotlib.figure.Figure.savefig

        def savefig(fig, *args, **kwargs):  # where each text lands, as the image is written
            renderer = fig.canvas.get_renderer()
            ax = fig.axes[0]
            for artist in (ax.title, *ax.get_legend().get_texts()):
                boxes[artist.get_text()] = artist.get_window_extent(renderer), fig.bbox
            return original(fig, *args, **kwargs)

        with mock.patch.object(matplotlib.figure.Figure, "savefig", savefig):
            plot.plot_runs(
                [run],
                os.path.join(root, "long.png"),
                title=f"InvertedDoublePendulum-v5, {flags} (5 seeds)",
                labels=[f"InvertedDoublePendulum-v5 {flags}"],
            )
        self.assertLen(boxes, 2)
        for text, (box, figure) in boxes.items():
            self.assertGreaterEqual(box.x0, 0, text)
            self.assertLessEqual(box.x1, figure.x1, text)
            self.assertIn("\n", text)  # both wrapped

    def test_a_run_without_a_finished_episode_plots_empty_without_warnings(self):
        root = make_tempdir(self)
        run = fake_run(root, "early_seed0", [float("nan"), float("nan")])
        out = os.path.join(root, "early.png")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # matplotlib's "No artists with labels" legend warning
            self.assertEqual(plot.plot_runs([run], out), out)
        with open(out, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")

    def test_missing_run_is_one_line_and_exit_2(self):
        missing = os.path.join(make_tempdir(self), "nothing_here")
        result = run_module("tfppo.plot", missing, timeout=120)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(result.stderr.strip().count("\n"), 0, result.stderr)
        self.assertIn("nothing_here", result.stderr)
        result = run_module("tfppo.plot", f"--logdir={missing}", timeout=120)
        self.assertEqual((result.returncode, result.stderr.strip().count("\n")), (2, 0), result.stderr)
        self.assertIn("no metrics.jsonl in", result.stderr)
        result = run_module("tfppo.plot", missing, "--x=bogus", timeout=120)
        self.assertEqual(result.returncode, 2)
        self.assertIn("bogus", result.stderr)
        self.assertEqual(result.stderr.strip().count("\n"), 0, result.stderr)


if __name__ == "__main__":
    absltest.main()
