"""`pip install` of a wheel built from this repository gives a complete, usable package.

Offline: the wheel is built with the build backend already installed here (setuptools + wheel,
which TensorFlow's own requirements bring in), and installed into a fresh venv whose only view
of the dependencies is a .pth file pointing at this interpreter's site-packages. pip then sees
every declared requirement (extras included) as already satisfied and installs tfppo alone; a
range in pyproject.toml that the tested set does not satisfy makes the install fail.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from absl.testing import absltest

from tests.helpers import REPO, make_tempdir

SCRIPTS = {
    "tfppo-train": "tfppo.train:run",
    "tfppo-evaluate": "tfppo.evaluate:run",
    "tfppo-export": "tfppo.export:run",
    "tfppo-plot": "tfppo.plot:run",
    "tfppo-launch": "tfppo.launch:run",
}

# Run by the new venv's python: where tfppo comes from, what it declares.
PROBE = """
import importlib.metadata as md, json, sysconfig, tfppo
print(json.dumps({
    "file": tfppo.__file__,
    "purelib": sysconfig.get_paths()["purelib"],
    "requires": md.requires("tfppo"),
    "scripts": {ep.name: ep.value for ep in md.entry_points(group="console_scripts")
                if ep.name.startswith("tfppo")},
}))
"""


def package_files(root: str) -> set[str]:
    """Paths of the package's files relative to `root`, without caches."""
    found = set()
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        found.update(os.path.relpath(os.path.join(folder, f), root) for f in files if not f.endswith(".pyc"))
    return found


class PackageTest(absltest.TestCase):
    def run_checked(self, args, cwd, env, code=0, timeout=180) -> str:
        result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        self.assertEqual(
            result.returncode, code, f"{' '.join(args)}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
        return result.stdout + result.stderr

    def test_wheel_installs_into_fresh_venv(self):
        start = time.monotonic()
        tmp = make_tempdir(self)
        # pip sees only what this test gives it: no config file (no find-links or extra
        # indexes), no PIP_* settings, no PYTHONPATH leading back to the repository.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
        env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", TF_CPP_MIN_LOG_LEVEL="3")

        # Build from a copy: an in-tree build would leave build/ and tfppo.egg-info/ in the repo.
        src = os.path.join(tmp, "src")
        shutil.copytree(
            os.path.join(REPO, "tfppo"),
            os.path.join(src, "tfppo"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(os.path.join(REPO, name), src)
        dist = os.path.join(tmp, "dist")
        pip = [sys.executable, "-m", "pip"]
        self.run_checked(
            [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src], tmp, env
        )
        (wheel,) = os.listdir(dist)
        wheel = os.path.join(dist, wheel)

        venv = os.path.join(tmp, "venv")
        self.run_checked([sys.executable, "-m", "venv", venv], tmp, env)
        python, bin_dir = os.path.join(venv, "bin", "python"), os.path.join(venv, "bin")
        site_packages = self.run_checked(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env
        ).strip()
        # Appended after the venv's own site-packages, so the installed tfppo comes first.
        ours = [
            p for p in dict.fromkeys(sys.path) if os.path.basename(p) in ("site-packages", "dist-packages")
        ]
        self.assertNotIn(os.path.realpath(REPO), [os.path.realpath(p) for p in ours])
        with open(os.path.join(site_packages, "_tfppo_test_deps.pth"), "w") as f:
            f.write("\n".join(ours) + "\n")

        # The extras too: the tested set (requirements-dev.txt) must satisfy every declared range.
        out = self.run_checked(
            [os.path.join(bin_dir, "pip"), "install", "--no-index", wheel + "[all,dev]"], tmp, env
        )
        installed = [line for line in out.splitlines() if line.startswith("Successfully installed")]
        self.assertEqual(installed, ["Successfully installed tfppo-0.1.0"], out)

        probe = json.loads(self.run_checked([python, "-c", PROBE], tmp, env))
        package = os.path.dirname(os.path.realpath(probe["file"]))
        self.assertEqual(package, os.path.join(os.path.realpath(probe["purelib"]), "tfppo"))
        self.assertFalse(package.startswith(os.path.realpath(REPO) + os.sep))
        requires = [
            r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].strip() for r in probe["requires"]
        ]
        for name in ("tensorflow", "tf-keras", "tensorflow-probability", "gymnasium", "numpy"):
            self.assertIn(name, requires)
        self.assertNotIn("tensorflow-cpu", requires)
        self.assertEqual(probe["scripts"], SCRIPTS)
        # Every file of the package made it into the wheel (a subpackage needs listing in pyproject).
        self.assertEqual(package_files(package), package_files(os.path.join(src, "tfppo")))

        train = os.path.join(bin_dir, "tfppo-train")
        # absl's --help lists only the flags of __main__ (here the console-script wrapper): none.
        self.run_checked([train, "--help"], tmp, env)
        self.assertIn("--total_timesteps", self.run_checked([train, "--helpfull"], tmp, env))
        plot = os.path.join(bin_dir, "tfppo-plot")
        self.assertIn("LOGDIR", self.run_checked([plot, "--help"], tmp, env))
        self.assertIn("error:", self.run_checked([plot], tmp, env, code=2))  # exit codes pass through
        launch = os.path.join(bin_dir, "tfppo-launch")
        self.assertIn("--num_workers", self.run_checked([launch, "--help"], tmp, env))
        self.assertIn(">= 1", self.run_checked([launch, "--num_workers=0"], tmp, env, code=2))
        print(f"package test: {time.monotonic() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    absltest.main()
