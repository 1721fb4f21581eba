"""Checks of config values: each raises ValueError naming the key.

Used by the registries that own config fields (`stn_jax.models`) and by
`stn_jax.train.validate_config`. Messages read
"config `<key>` must be <expected>, got <value>."
"""

from __future__ import annotations

import math
from typing import Iterable, Optional

import numpy as np


def fail(key: str, value, expected: str):
  """Raises ValueError: config `key` must be `expected`, got `value`."""
  raise ValueError(f"config `{key}` must be {expected}, got {value!r}.")


def check_int(key: str, value, low: int = 1) -> None:
  """An int (not a bool) >= `low`."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
      value < low):
    fail(key, value, f"an int >= {low}")


def check_float(key: str, value, low: float = 0.0, *, strict=False) -> None:
  """A finite number >= `low` (> `low` if `strict`)."""
  ok = (not isinstance(value, bool) and isinstance(value, (int, float))
        and math.isfinite(value)
        and (value > low if strict else value >= low))
  if not ok:
    fail(key, value, f"a finite number {'>' if strict else '>='} {low}")


def check_choice(key: str, value, choices: Iterable) -> None:
  """One of `choices`."""
  choices = tuple(choices)
  if value not in choices:
    fail(key, value, f"one of {sorted(choices)}")


def check_ints(key: str, value, length: Optional[int] = None) -> None:
  """A non-empty tuple of positive ints (of `length`, if given)."""
  try:
    items = tuple(value)
  except TypeError:
    items = None
  if items is None or (length is not None and len(items) != length) or not (
      items) or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                    or v < 1 for v in items):
    what = f"{length} " if length is not None else ""
    fail(key, value, f"a tuple of {what}positive ints")


def check_keys(key: str, cfg, expected: Iterable[str]) -> None:
  """A ConfigDict (or None when `expected` is empty) with exactly `expected`."""
  got = set(cfg.keys()) if cfg is not None else set()
  if got != set(expected):
    raise ValueError(
        f"config `{key}` must have exactly the fields {sorted(expected)}, got "
        f"{sorted(got)}.")
