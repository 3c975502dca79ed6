"""Shared test helpers."""

import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_tempdir(test) -> str:
    """A new directory removed when `test` ends."""
    path = tempfile.mkdtemp(prefix="tfppo_test_")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path


def run_module(module: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m module args` from the repository root, as a user would run it."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=REPO)
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def blocking_prelude(*blocked: str) -> str:
    """The start of a `python -c` script in which the top-level packages `blocked` cannot be
    imported (a model must run without them) and the working directory is off sys.path."""
    return f"""
import importlib.abc, sys
import numpy as np

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is blocked in this test")

sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".")]
"""


def run_script(script: str, *args: str, cwd: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """`python -c script args` in `cwd`, TensorFlow's logs quiet."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )


def tiny_config(**overrides):
    """A run of a few updates on tiny networks (the library API tests' budget)."""
    import tfppo

    values = dict(
        total_timesteps=256,
        num_envs=2,
        num_steps=32,
        actor_epochs=2,
        critic_epochs=2,
        eval_episodes=2,
        hidden_sizes=(16,),
    )
    return tfppo.Config(**{**values, **overrides})
