"""Where a run reports: TensorBoard scalars, metrics.jsonl, episodes.csv and the console progress.

Only this module writes summaries. The console shows a tqdm bar on a terminal and, when
output is not a terminal (CI, a log file), a plain progress line every `log_every_s` seconds.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from tensorflow.python.ops import gen_summary_ops
from tqdm import tqdm

from tfppo import rundir

# TensorBoard groups: the dashboard shows one section per prefix.
GROUPS = {
    "episode_return_mean": "charts",
    "episode_length_mean": "charts",
    "episodes": "charts",
    "success_rate": "charts",
    "sps": "charts",
    "eval_return_mean": "charts",
    "eval_return_std": "charts",
    "eval_best_return_mean": "charts",
    "policy_loss": "losses",
    "value_loss": "losses",
    "entropy": "losses",
    "explained_variance": "losses",
    "kl": "health",
    "approx_kl_k1": "health",
    "approx_kl_k3": "health",
    "clip_fraction": "health",
    "ratio_max": "health",
    "kl_lambda": "health",
    "kl_lambda_used": "health",
    "actor_epochs_run": "health",
    "critic_epochs_run": "health",
    "clip_epsilon": "optim",
    "actor_grad_norm": "health",
    "critic_grad_norm": "health",
    "sigma_mean": "health",
    "sigma_min": "health",
    "sigma_max": "health",
    "actor_lr": "optim",
    "critic_lr": "optim",
}
SKIP = {"global_step", "update", "wall_s"}


def _format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class MetricsLogger:
    """Writes one record per update to TensorBoard and metrics.jsonl and shows progress.

    total_steps / total_episodes: the run's budget (0 = no limit); progress counts whichever
    is set, env steps first.
    """

    def __init__(
        self,
        logdir: str,
        total_steps: int,
        total_episodes: int,
        initial_step: int = 0,
        initial_episodes: int = 0,
        log_every_s: float = 10.0,
        stream=None,
    ):
        # The run's event file, flushed every 5 s and on close; written by `write` alone.
        self.writer = tf.summary.create_file_writer(logdir, flush_millis=5000)
        self.jsonl = open(rundir.path(logdir, rundir.METRICS_FILE), "a", encoding="utf-8")
        episodes_path = rundir.path(logdir, rundir.EPISODES_FILE)
        # Empty too: a run killed between its first metrics flush and its first episodes flush
        # leaves the file with no header (resume's truncation then keeps it empty).
        headless = not os.path.exists(episodes_path) or os.path.getsize(episodes_path) == 0
        self.episodes_csv = open(episodes_path, "a", encoding="utf-8")
        if headless:
            self.episodes_csv.write("global_step,return,length\n")
        self.total_steps, self.total_episodes = total_steps, total_episodes
        self.stream = stream or sys.stderr
        self.log_every_s = log_every_s
        self.last_line = 0.0
        self.last_shown = None
        by_steps = total_steps > 0
        self.progress = tqdm(
            total=total_steps if by_steps else total_episodes,
            initial=initial_step if by_steps else initial_episodes,
            unit="step" if by_steps else "ep",
            file=self.stream,
            dynamic_ncols=True,
            disable=None,  # None: off when the stream is not a terminal.
        )
        self.interactive = not self.progress.disable

    def write_episodes(self, finished: list) -> None:
        """Appends (env step, undiscounted return, length) rows; flushed with the next record."""
        self.episodes_csv.writelines(f"{step},{ret:.6g},{length}\n" for step, ret, length in finished)

    def write(self, record: dict[str, float]) -> None:
        # One Summary proto with every scalar, written by one op: tf.summary.scalar would be one
        # op per scalar, or a traced function. None and NaN (nothing measured yet) are skipped.
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=f"{GROUPS.get(name, 'misc')}/{name}", simple_value=value)
                for name, value in record.items()
                if name not in SKIP and value is not None and math.isfinite(value)
            ]
        )
        # The raw op on this writer: tf.summary.experimental.write_raw_pb would first evaluate
        # should_record_summaries() eagerly (CartPole's logging: 0.48-0.53 ms an update with it,
        # 0.39-0.46 ms without; benchmarks/README_speed.md). The proto goes in as a string
        # tensor: given Python bytes, the op leaves the fast path for its eager fallback (65 us a
        # call against 26 us, timeit).
        gen_summary_ops.write_raw_proto_summary(
            self.writer._resource, int(record["global_step"]), tf.constant(summary.SerializeToString())
        )
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        self.episodes_csv.flush()
        self._show(record)

    def _fraction_done(self, record) -> float:
        fractions = []
        if self.total_steps:
            fractions.append(record["global_step"] / self.total_steps)
        if self.total_episodes:
            fractions.append(record["episodes"] / self.total_episodes)
        return min(max(fractions), 1.0) if fractions else 0.0

    def _show(self, record) -> None:
        ret = record.get("episode_return_mean", float("nan"))
        ret = f"{ret:.1f}" if math.isfinite(ret) else "-"  # "-" until an episode has ended
        if self.interactive:
            done = record["global_step"] if self.total_steps else record["episodes"]
            self.progress.update(int(done) - self.progress.n)
            self.progress.set_postfix(
                episodes=int(record["episodes"]), ret=ret, sps=f"{record['sps']:.0f}", refresh=False
            )
            return
        now = time.time()
        if now - self.last_line < self.log_every_s or record is self.last_shown:
            return
        self.last_line, self.last_shown = now, record
        fraction = self._fraction_done(record)
        elapsed = record["wall_s"]
        left = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        print(
            f"step {int(record['global_step'])} | episodes {int(record['episodes'])} | "
            f"return {ret} | {record['sps']:.0f} steps/s | {fraction:.0%} | "
            f"time left {_format_duration(left)}",
            file=self.stream,
            flush=True,
        )

    def close(self, final: dict[str, float] | None = None) -> None:
        if final is not None and not self.interactive:
            self.last_line = 0.0
            self._show(final)
        self.progress.close()
        self.writer.close()  # flushes
        self.jsonl.close()
        self.episodes_csv.close()
