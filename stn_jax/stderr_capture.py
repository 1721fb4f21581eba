"""Holding what native libraries print on stderr at import (TensorFlow's notes)."""

from __future__ import annotations

import os
import sys
import tempfile


class HeldStderr:
  """Holds what is written to file descriptor 2 (C++ libraries included).

  Used around imports whose native libraries print start-up notes: `release`
  writes the held bytes to stderr; an exception inside the block releases them
  at once; dropped otherwise.
  """

  def __enter__(self):
    sys.stderr.flush()
    self._file = tempfile.TemporaryFile()
    self._saved = os.dup(2)
    os.dup2(self._file.fileno(), 2)
    self.held = b""
    return self

  def __exit__(self, exc_type, exc, tb):
    sys.stderr.flush()
    os.dup2(self._saved, 2)
    os.close(self._saved)
    self._file.seek(0)
    self.held = self._file.read()
    self._file.close()
    if exc_type is not None:
      self.release()
    return False

  def release(self) -> None:
    if self.held:
      os.write(2, self.held)
      self.held = b""
