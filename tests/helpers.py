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
