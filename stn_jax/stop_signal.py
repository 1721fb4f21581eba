"""A clean stop on SIGTERM: finish the step, checkpoint, exit.

`kill`, a cluster's scheduler before a pre-emption or time limit (SLURM,
Kubernetes) and the sweep runner (`experiments.sweep`, when it is stopped)
send SIGTERM. Python's default is to die at once, losing every step since
the last periodic checkpoint (up to half an hour of a CNN run on a CPU).
Inside `StopOnSignal` the signal only sets a flag; the training loop looks
at it after each step, saves a checkpoint there and raises `StoppedBySignal`,
which `stn_jax.main` turns into exit status 128 + signal (143 for SIGTERM,
the status a shell reports for a process killed by it). Re-running the same
command resumes from that step.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional, Sequence


class StoppedBySignal(Exception):
  """Training stopped on a signal after `step`, a checkpoint saved there."""

  def __init__(self, step: int, signum: int, workdirs: Sequence[str]):
    self.step = int(step)
    self.signum = int(signum)
    self.workdirs = list(workdirs)
    name = signal.Signals(signum).name
    super().__init__(
        f"stopped by {name} after step {step}; checkpoint saved there in "
        f"{', '.join(self.workdirs)}: the same command resumes from it.")

  @property
  def exit_code(self) -> int:
    """128 + the signal's number, as a shell reports a process it killed."""
    return 128 + self.signum


class StopOnSignal:
  """Context manager: `signals` set `requested` instead of killing.

  Usage (the flag is read between steps; nothing is interrupted mid-step):

      with StopOnSignal() as stop:
        for step in ...:
          ...
          if stop.requested is not None: save, then stop.

  Outside the main thread, where Python cannot install handlers, it does
  nothing (`requested` stays None, signals keep their handlers). The
  previous handlers are restored on exit.
  """

  def __init__(self, signals: Sequence[int] = (signal.SIGTERM,)):
    self.signals = tuple(signals)
    self.requested: Optional[int] = None  # The first signal received.
    self._previous = {}

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    if self.requested is None:
      self.requested = signum

  def __enter__(self) -> "StopOnSignal":
    if threading.current_thread() is threading.main_thread():
      for s in self.signals:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for s, handler in self._previous.items():
      # None: the handler was not set from Python; the default is the best guess.
      signal.signal(s, signal.SIG_DFL if handler is None else handler)
    self._previous = {}
