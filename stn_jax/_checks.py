"""Argument checks shared by the public functions: clear `ValueError`s at trace time."""

from typing import Sequence

import numpy as np


def check_shape(name: str, value, expected: Sequence, what: str = "") -> None:
  """Raises unless `value.shape` matches `expected` (None matches any size).

  Args:
    name: the argument's name, used in the message.
    value: an array (anything with `.shape`).
    expected: the expected shape; `None` entries match any size.
    what: optional words on what the axes mean, appended to the message.
  """
  shape = tuple(np.shape(value))
  ok = len(shape) == len(expected) and all(
      e is None or e == s for e, s in zip(expected, shape))
  if not ok:
    pretty = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
    raise ValueError(
        f"`{name}` must have shape {pretty}{' ' + what if what else ''}, "
        f"got shape {list(shape)}.")


def check_output_shape(name: str, shape, ndim: int) -> tuple:
  """Returns `shape` as a tuple of `ndim` positive Python ints, or raises."""
  try:
    out = tuple(int(s) for s in shape)
  except TypeError as e:
    raise ValueError(
        f"`{name}` must be a sequence of {ndim} positive ints, got {shape!r}."
    ) from e
  if len(out) != ndim or any(s < 1 for s in out) or any(
      int(s) != s for s in shape):
    raise ValueError(
        f"`{name}` must be a sequence of {ndim} positive ints, got {shape!r}.")
  return out


def check_choice(name: str, value, choices: Sequence[str]) -> None:
  """Raises unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(
        f"`{name}` must be one of {sorted(choices)}, got {value!r}.")
