"""Every command in the docs' code blocks runs, with tiny budgets.

`python -m tfppo.*` commands run as a user types them, cut to one update, with run directories
moved into a temporary one (`runs/X` -> TMP/runs/X; a placeholder such as `runs/<logdir>`, or a
run no command made, becomes one of the runs made). Benchmark commands: their script parses
them, and every preset variant they name builds a valid Config from its flagfile and flags.
"""

import concurrent.futures
import glob
import json
import os
import shlex
import subprocess
import sys

from absl.testing import absltest

from tests.helpers import REPO, make_tempdir, run_module
from tfppo.flags import config_from_args

DOCS = ["README.md", "BUILD.md", "benchmarks/README_speed.md"] + sorted(
    os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md"))
)
PREFIX = ".venv/bin/python "
# Commands that train: cut to one update (a launch passes the flags after `--` to its workers).
TRAINING = ("tfppo.train", "tfppo.launch")


def doc_commands() -> list[tuple[str, list[str]]]:
    """(doc, argv after `python`) of every `.venv/bin/python ...` line in a fenced code block."""
    commands = []
    for doc in DOCS:
        in_block, continued = False, False
        with open(os.path.join(REPO, doc), encoding="utf-8") as f:
            for line in f:
                if line.startswith("```"):
                    in_block = not in_block
                elif in_block and not continued and line.strip().startswith(PREFIX):
                    commands.append((doc, shlex.split(line.strip()[len(PREFIX) :], comments=True)))
                # A line after a trailing backslash belongs to a command with an env prefix
                # (TF_CONFIG=... for another machine): not runnable here.
                continued = in_block and line.rstrip().endswith("\\")
    return commands


def finished_runs(root: str) -> list[str]:
    found = glob.glob(os.path.join(root, "runs", "**", "summary.json"), recursive=True)
    return sorted(os.path.dirname(p) for p in found)


def python_code(doc: str) -> str:
    """The ```python blocks of a doc, in order, as one program (later blocks use earlier names)."""
    blocks, block = [], None
    with open(os.path.join(REPO, doc), encoding="utf-8") as f:
        for line in f:
            if block is None and line.startswith("```python"):
                block = []
            elif block is not None and line.startswith("```"):
                blocks.append("".join(block))
                block = None
            elif block is not None:
                block.append(line)
    return "\n".join(blocks)


class DocCommandsTest(absltest.TestCase):
    def test_every_python_example_runs(self):
        # Each doc's examples run as one program in a fresh directory; the README's SavedModel
        # example reads runs/cartpole, made here by a one-update run.
        root = make_tempdir(self)
        made = run_module(
            "tfppo.train",
            f"--logdir={os.path.join(root, 'runs', 'cartpole')}",
            "--total_timesteps=1",
            "--eval_episodes=0",
        )
        self.assertEqual(made.returncode, 0, made.stderr[-2000:])
        programs = {doc: python_code(doc) for doc in DOCS}
        self.assertIn("tfppo.train(", programs["docs/api.md"])
        for doc, code in programs.items():
            if not code:
                continue
            result = subprocess.run(
                [sys.executable, "-c", code],
                cwd=root,
                env=dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3"),
                capture_output=True,
                text=True,
                timeout=600,
            )
            self.assertEqual(result.returncode, 0, f"{doc}:\n{result.stderr[-3000:]}")

    def test_the_docs_have_commands(self):
        modules = {argv[1] for _, argv in doc_commands() if argv[0] == "-m"}
        self.assertContainsSubset({"tfppo.train", "tfppo.plot", "pytest"}, modules)

    def test_every_tfppo_command_runs(self):
        root = make_tempdir(self)
        commands = [(doc, argv[1], argv[2:]) for doc, argv in doc_commands() if argv[0] == "-m"]
        commands = [c for c in commands if c[1].startswith("tfppo.")]

        def relocate(arg: str) -> str:
            name, eq, value = arg.partition("=")
            path = value if eq else arg
            if path.startswith("runs/") or (eq and name == "--out"):
                return (name + "=" if eq else "") + os.path.join(root, path)
            return arg

        def run(item, resumed_from=None):
            doc, module, args = item
            args = [relocate(a) for a in args]
            if module in TRAINING and "--helpfull" not in args:
                if not any(a.startswith("--logdir=") for a in args):
                    args.append(f"--logdir={os.path.join(root, 'runs', f'default_{abs(hash(tuple(args)))}')}")
                if "--resume" in args:  # One update more than the run it continues.
                    logdir = next(a for a in args if a.startswith("--logdir=")).split("=", 1)[1]
                    with open(os.path.join(logdir, "summary.json")) as f:
                        steps = json.load(f)["global_step"] + 1
                    args += [f"--total_timesteps={steps}", "--max_episodes=0", "--eval_episodes=0"]
                else:
                    args += ["--total_timesteps=1", "--max_episodes=0", "--eval_episodes=0"]
            return doc, module, args, run_module(module, *args, timeout=600)

        fresh = [c for c in commands if c[1] in TRAINING and "--resume" not in c[2]]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:  # Two at a time: 2-core machines.
            results = list(pool.map(run, fresh))
        results += [run(c) for c in commands if c[1] in TRAINING and "--resume" in c[2]]
        runs = finished_runs(root)
        self.assertNotEmpty(runs)
        for doc, module, args in (c for c in commands if c[1] not in TRAINING):
            # A run the docs only name (runs/a, runs/<logdir>): one of the runs made above.
            args = [
                runs[i % len(runs)]
                if a.startswith("runs/") and not os.path.isdir(os.path.join(root, a))
                else a
                for i, a in enumerate(args)
            ]
            results.append(run((doc, module, args)))
        for doc, module, args, result in results:
            self.assertEqual(
                result.returncode, 0, f"{doc}: python -m {module} {' '.join(args)}\n{result.stderr[-3000:]}"
            )
        self.assertGreaterEqual(len(results), 8)

    def test_every_benchmark_command_parses_and_names_valid_presets(self):
        sys.path.insert(0, os.path.join(REPO, "benchmarks"))
        import _random_policy  # noqa: PLC0415
        import conv_time  # noqa: PLC0415
        import loop_overhead  # noqa: PLC0415
        import mujoco_suite  # noqa: PLC0415
        import pipelined_acting  # noqa: PLC0415
        import presets  # noqa: PLC0415
        import scaling  # noqa: PLC0415
        import serving  # noqa: PLC0415
        import speed_vs_sb3  # noqa: PLC0415
        import tabular_optimum  # noqa: PLC0415
        import time_breakdown  # noqa: PLC0415
        import update_time  # noqa: PLC0415
        import vector_modes  # noqa: PLC0415

        variants = 0
        for doc, argv in doc_commands():
            if not argv[0].startswith("benchmarks/"):
                continue
            # The script's own parser accepts the command (SB3's separate venv is optional here).
            if argv[0] == "benchmarks/presets.py":
                args = presets.parse_args(argv[1:])
                texts = args.presets.split(",")
            elif argv[0] == "benchmarks/_random_policy.py":
                _random_policy.parse_args(argv[1:])
                texts = []
            elif argv[0] == "benchmarks/mujoco_suite.py":
                args = mujoco_suite.parse_args(argv[1:])
                texts = [mujoco_suite.preset_text(args.preset, env) for env in args.env_list]
                texts += [mujoco_suite.preset_text(preset, env) for env, preset in args.specific_list]
            elif argv[0] == "benchmarks/speed_vs_sb3.py":
                speed_vs_sb3.parse_args([*argv[1:], "--skip_sb3"])
                texts = []
            elif argv[0] == "benchmarks/time_breakdown.py":  # Run for real in test_benchmarks.py.
                args = time_breakdown.build_parser().parse_args(argv[1:])
                texts = [args.preset + (":" + "+".join(args.extra) if args.extra else "")]
            elif argv[0] == "benchmarks/update_time.py":  # Run for real in test_benchmarks.py.
                texts = [update_time.build_parser().parse_args(argv[1:]).preset]
            elif argv[0] == "benchmarks/pipelined_acting.py":  # Run for real in test_benchmarks.py.
                texts = [pipelined_acting.build_parser().parse_args(argv[1:]).preset]
            elif argv[0] in (
                "benchmarks/conv_time.py",
                "benchmarks/loop_overhead.py",
                "benchmarks/scaling.py",
                "benchmarks/vector_modes.py",
                "benchmarks/serving.py",
                "benchmarks/tabular_optimum.py",
            ):
                module = {
                    "conv_time.py": conv_time,
                    "loop_overhead.py": loop_overhead,
                    "scaling.py": scaling,
                    "vector_modes.py": vector_modes,
                    "serving.py": serving,
                    "tabular_optimum.py": tabular_optimum,
                }
                module = module[os.path.basename(argv[0])]
                module.build_parser().parse_args(argv[1:])
                texts = []
            else:
                self.fail(f"{doc}: no check for {argv[0]}; add one")
            for text in texts:
                name, _, extra = presets.parse_preset(text)
                flagfile = os.path.join(REPO, "experiments", f"{name}.flags")
                self.assertTrue(os.path.isfile(flagfile), f"{doc}: no flagfile for {text}")
                config_from_args([f"--flagfile={flagfile}", *extra])  # Raises on a bad flag or value.
                variants += 1
        self.assertGreaterEqual(variants, 5)


if __name__ == "__main__":
    absltest.main()
