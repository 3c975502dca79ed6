"""Stop signals turned into a clean stop: SIGINT (Ctrl-C), SIGTERM (Kubernetes, Slurm, systemd,
`docker stop`) and SIGHUP (a closed terminal) all mean "checkpoint, one line, exit code 2".

`install()` (the command line does it; a Python caller keeps its own handlers) makes each of
them raise `Interrupted`, a KeyboardInterrupt, so every `except KeyboardInterrupt` path serves
all three. Two ways to hold a signal back instead of raising at once:
- `deferred()`: a critical section (a checkpoint being written); a signal that arrives inside
  is raised when it ends, so a second Ctrl-C never leaves half a checkpoint.
- `polled()`: the multi-worker training loop; a signal only records itself (`pending()`), the
  loop all-reduces "someone was signalled" once per update and every worker stops at the same
  update with one checkpoint. Raising inside a collective op would strand the other workers.
"""

from __future__ import annotations

import contextlib
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived; `signal_name` says which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signal_name = signal.Signals(signum).name


class _State:
    installed = False
    defer_depth = 0
    polling = False
    pending: int | None = None


_state = _State()


def _handle(signum, frame) -> None:
    if _state.defer_depth or _state.polling:
        _state.pending = _state.pending or signum
        return
    raise Interrupted(signum)


def install() -> None:
    """Every stop signal raises Interrupted (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handle)
    _state.installed = True


def pending() -> str | None:
    """The name of a signal held back by deferred() or polled(), if one arrived."""
    return signal.Signals(_state.pending).name if _state.pending else None


@contextlib.contextmanager
def deferred():
    """Signals wait until the block ends (then the first one is raised).

    A block that fails keeps its own error: the signal asked for a stop and the error is one,
    so the signal is dropped rather than raised over it (an interrupt replacing a divergence
    error would checkpoint the diverged weights)."""
    _state.defer_depth += 1
    try:
        yield
    except BaseException:
        _state.defer_depth -= 1
        if not _state.defer_depth and not _state.polling:
            _state.pending = None
        raise
    _state.defer_depth -= 1
    if not _state.defer_depth and not _state.polling and _state.pending:
        signum, _state.pending = _state.pending, None
        raise Interrupted(signum)


@contextlib.contextmanager
def polled():
    """Signals are only recorded (see pending()) while the block runs; without install() (a
    Python caller's process) SIGINT keeps Python's default and still raises at once."""
    _state.polling = True
    try:
        yield
    finally:
        _state.polling = False
