"""Start N local training workers: `python -m tfppo.launch --num_workers=N -- <train flags>`.

Each worker is `python -m tfppo.train <train flags>` with a TF_CONFIG naming N workers on
127.0.0.1 (free ports); worker 0 is the chief. Their output is streamed with a `[worker k]`
prefix. If a worker fails, or a worker is not ready (TF_CONFIG cluster connected, weights
broadcast) within --startup_timeout seconds, every other worker gets SIGTERM and, after
--grace seconds, SIGKILL: a worker waiting for a dead peer does not stop by itself. Ctrl-C,
SIGTERM or SIGHUP to the launcher send every worker SIGTERM: the workers stop after the same
update with one checkpoint (the chief's), and the launcher exits with code 2. The exit code is
otherwise the first failing worker's (0 when all succeed).

For several machines, start `python -m tfppo.train` on each with its own TF_CONFIG (see
BUILD.md); the logdir must be on storage every worker can read for --resume.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

READY = "tfppo worker {index}/{num_workers} ready"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # One line and exit code 2.
        self.exit(2, f"error: {message} (see python -m tfppo.launch --help)\n")


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free on 127.0.0.1 (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config(addresses: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


class Worker:
    def __init__(self, index: int, num_workers: int, command: list[str], env: dict):
        self.index = index
        self.ready_line = READY.format(index=index, num_workers=num_workers)
        self.ready = threading.Event()
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Its own process group: signals reach its children too.
        )
        self.reader = threading.Thread(target=self._stream, daemon=True)
        self.reader.start()

    def _stream(self) -> None:
        for line in self.process.stdout:
            if line.rstrip("\n") == self.ready_line:
                self.ready.set()
            sys.stdout.write(f"[worker {self.index}] {line}")
            sys.stdout.flush()

    def signal(self, signum) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signum)
            except ProcessLookupError:
                pass


def stop_all(workers: list[Worker], grace_s: float) -> None:
    """SIGTERM, then SIGKILL whatever still runs after grace_s; waits for every process."""
    for worker in workers:
        worker.signal(signal.SIGTERM)
    deadline = time.time() + grace_s
    for worker in workers:
        try:
            worker.process.wait(timeout=max(deadline - time.time(), 0.0))
        except subprocess.TimeoutExpired:
            pass
    for worker in workers:
        worker.signal(signal.SIGKILL)
        worker.process.wait()
        worker.reader.join(timeout=5)


def say(message: str) -> None:
    print(f"[launch] {message}", file=sys.stderr, flush=True)


def supervise(
    workers: list[Worker], startup_timeout_s: float, stop: threading.Event, poll_s: float = 0.2
) -> int | None:
    """Waits for all workers; returns the exit code (first failure) without stopping anyone, or
    None once `stop` is set (a signal to the launcher)."""
    started = time.time()
    while not stop.is_set():
        codes = [w.process.poll() for w in workers]
        failed = [(w, c) for w, c in zip(workers, codes, strict=True) if c not in (None, 0)]
        if failed:
            worker, code = failed[0]
            say(f"worker {worker.index} exited with code {code}; stopping the other workers")
            return code if code > 0 else 1
        if all(c == 0 for c in codes):
            return 0
        if len(workers) > 1 and time.time() - started > startup_timeout_s:
            late = [w.index for w in workers if not w.ready.is_set() and w.process.poll() is None]
            if late:
                say(
                    f"worker {late[0]} was not ready within --startup_timeout={startup_timeout_s:g} s; "
                    "stopping every worker"
                )
                return 1
        stop.wait(poll_s)
    return None


def main(argv: list[str]) -> int:
    # Ctrl-C, and a cluster manager's SIGTERM or SIGHUP, only set `stop`: an exception raised
    # from a handler can land inside Popen.poll() between its lock's acquire and its try, leaving
    # the lock held, and stop_all's Popen.wait() then blocks forever (seen as a launcher that
    # never exits after SIGINT: twice in the slow reliability case).
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda signum, frame: stop.set())
    if "--" in argv:
        split = argv.index("--")
        own, train_flags = argv[:split], argv[split + 1 :]
    else:
        own, train_flags = argv, []
    parser = _Parser(prog="python -m tfppo.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--num_workers", type=int, default=2, help="worker processes (>= 1)")
    parser.add_argument(
        "--startup_timeout", type=float, default=120.0, help="seconds for every worker to be ready"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds between SIGTERM (workers checkpoint at their next update) and SIGKILL",
    )
    args = parser.parse_args(own)
    if args.num_workers < 1:
        parser.error(f"--num_workers={args.num_workers} must be >= 1")
    if args.startup_timeout <= 0 or args.grace < 0:
        parser.error("--startup_timeout must be > 0 and --grace >= 0")
    addresses = [f"127.0.0.1:{port}" for port in free_ports(args.num_workers)]
    command = [sys.executable, "-m", "tfppo.train", *train_flags]
    workers: list[Worker] = []
    code = 1
    try:
        for index in range(args.num_workers):
            if stop.is_set():
                break
            env = dict(os.environ, TF_CONFIG=tf_config(addresses, index))
            workers.append(Worker(index, args.num_workers, command, env))
            say(f"started worker {index} (pid {workers[-1].process.pid}) on {addresses[index]}")
        code = supervise(workers, args.startup_timeout, stop)
        if code is None:
            # SIGTERM to every worker: each stops after the same update (the stop is all-reduced),
            # the chief writes one checkpoint, and `--resume` continues from it.
            say("interrupted; every worker checkpoints and stops (continue with --resume)")
            code = 2
    finally:
        stop_all(workers, args.grace)
    return code


def run() -> None:
    """The `tfppo-launch` console script: `main` on the command line, its result the exit code."""
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run()
