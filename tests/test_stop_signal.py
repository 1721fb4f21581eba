"""Tests of `stn_jax.stop_signal`: SIGTERM sets a flag inside the context."""

import os
import signal
import threading

from stn_jax import stop_signal


def test_sigterm_sets_requested_and_the_handler_comes_back():
  before = signal.getsignal(signal.SIGTERM)
  with stop_signal.StopOnSignal() as stop:
    assert stop.requested is None
    os.kill(os.getpid(), signal.SIGTERM)  # Handled before kill returns.
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested == signal.SIGTERM
  assert signal.getsignal(signal.SIGTERM) == before


def test_off_the_main_thread_it_changes_nothing():
  seen = {}

  def body():
    with stop_signal.StopOnSignal() as stop:
      seen["handler"] = signal.getsignal(signal.SIGTERM)
      seen["requested"] = stop.requested

  before = signal.getsignal(signal.SIGTERM)
  thread = threading.Thread(target=body)
  thread.start()
  thread.join()
  assert seen == {"handler": before, "requested": None}


def test_stopped_by_signal_says_where_and_exits_like_a_shell():
  error = stop_signal.StoppedBySignal(1234, signal.SIGTERM, ["/a", "/b"])
  assert error.exit_code == 143
  assert "stopped by SIGTERM after step 1234" in str(error)
  assert "/a, /b" in str(error)
