r"""Runs one of CleanRL's own single-file PPO scripts, unmodified, for benchmarks/speed_vs_peers.py.

Runs under .venv-cleanrl (never under tfppo's venv), from the directory where the script should
write its `runs/` folder:

  .venv-cleanrl/bin/python benchmarks/_cleanrl_driver.py --script=CLEANRL/cleanrl/ppo.py \
      --records=RUN.jsonl --summary=RUN.json -- --env-id CartPole-v1 --num-envs 8 --seed 0 ...

Everything after `--` goes to the script's own command line (tyro). The script itself runs
through `runpy.run_path` as `__main__`, exactly as `python ppo.py ...` would run it; the driver
only adds a timing hook around it, installed before the script is loaded:

- `gymnasium.vector.SyncVectorEnv` notes when the script starts building its vector env (the
  clock starts there: imports, tyro parsing and the TensorBoard writer are not timed; the agent
  and the optimizer are built after the env, inside the clock) and when it first resets it.
- `torch.utils.tensorboard.SummaryWriter` is replaced by a subclass that writes everything the
  script logs, as before, and also counts `charts/episodic_return` (the script's only record of
  finished episodes) and writes one record to --records at each `charts/SPS`, the script's
  last scalar of an iteration (rollout + update): global_step, episodes, episode_return_mean
  (mean undiscounted return of the last 100 episodes: the script's RecordEpisodeStatistics sits
  below its reward normalisation) and wall_s (seconds since the env construction started).
- torch gets --torch_threads threads (the script does not set it), and one throwaway Adam is
  created before the clock starts: the first torch optimizer imports torch._dynamo and sympy
  (~1.8 s here), which is import time.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import os
import runpy
import sys
import time

RETURN_WINDOW = 100


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" in argv:
        split = argv.index("--")
        own, script_args = argv[:split], argv[split + 1 :]
    else:
        own, script_args = argv, []
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--script", required=True, help="path of CleanRL's ppo*.py")
    parser.add_argument("--records", required=True, help="jsonl written after every iteration")
    parser.add_argument("--summary", required=True, help="json written at the end")
    parser.add_argument("--torch_threads", type=int, default=1)
    return parser.parse_args(own), script_args


class Recorder:
    """What the hooks saw: clock marks, finished episodes and one record per iteration."""

    def __init__(self, records_file):
        self.records_file = records_file
        self.marks: dict[str, float] = {}
        self.episodes = 0
        self.returns: collections.deque = collections.deque(maxlen=RETURN_WINDOW)
        self.last_step = 0

    def scalar(self, tag: str, value, step) -> None:
        if tag == "charts/episodic_return":
            self.episodes += 1
            self.returns.append(float(value))
        elif tag == "charts/SPS":
            now = time.perf_counter()
            self.marks["end"] = now
            self.last_step = int(step)
            record = {
                "global_step": int(step),
                "episodes": self.episodes,
                "episode_return_mean": sum(self.returns) / len(self.returns) if self.returns else None,
                "wall_s": now - self.marks["construct_start"],
            }
            self.records_file.write(json.dumps(record) + "\n")


def install_hooks(recorder: Recorder) -> None:
    import gymnasium
    import torch.utils.tensorboard

    vector_env = gymnasium.vector.SyncVectorEnv
    init, reset = vector_env.__init__, vector_env.reset

    def timed_init(self, *args, **kwargs):
        recorder.marks.setdefault("construct_start", time.perf_counter())
        init(self, *args, **kwargs)

    def timed_reset(self, *args, **kwargs):
        recorder.marks.setdefault("first_reset", time.perf_counter())
        return reset(self, *args, **kwargs)

    vector_env.__init__, vector_env.reset = timed_init, timed_reset

    class RecordingWriter(torch.utils.tensorboard.SummaryWriter):
        def add_scalar(self, tag, scalar_value, global_step=None, *args, **kwargs):
            super().add_scalar(tag, scalar_value, global_step, *args, **kwargs)
            recorder.scalar(tag, scalar_value, global_step)

    torch.utils.tensorboard.SummaryWriter = RecordingWriter


def register_ale() -> None:
    """ale-py >= 0.9 registers the ALE ids when imported; 0.8 (CleanRL's pin, which has no ROMs)
    did it through a gymnasium plugin entry point, so CleanRL's scripts import nothing for it."""
    try:
        import ale_py  # noqa: F401
    except ImportError:  # no Atari in this venv: the classic-control and MuJoCo scripts
        pass


def main() -> None:
    args, script_args = parse_args(sys.argv[1:])
    import gymnasium
    import torch

    torch.set_num_threads(args.torch_threads)
    torch.optim.Adam(torch.nn.Linear(1, 1).parameters())  # imports torch._dynamo before the clock
    with open(args.records, "w", encoding="utf-8") as records_file:
        recorder = Recorder(records_file)
        install_hooks(recorder)
        sys.argv = [args.script, *script_args]
        register_ale()
        # As `python SCRIPT` does, the script's folder first on the import path; then the
        # checkout root, where ppo_atari.py finds cleanrl_utils (a plain folder holds it itself).
        folder = os.path.dirname(os.path.abspath(args.script))
        sys.path[:0] = [folder, os.path.dirname(folder)]
        runpy.run_path(args.script, run_name="__main__")
    marks = recorder.marks
    if not {"construct_start", "first_reset", "end"} <= set(marks):
        raise SystemExit(f"error: the timing hook saw {sorted(marks)}: did {args.script} change?")
    with open(args.script, "rb") as f:
        script_sha256 = hashlib.sha256(f.read()).hexdigest()
    summary = {
        "steps": recorder.last_step,
        "construct_s": marks["first_reset"] - marks["construct_start"],
        "total_s": marks["end"] - marks["construct_start"],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "gymnasium": gymnasium.__version__,
        "script_sha256": script_sha256,
    }
    with open(args.summary, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
