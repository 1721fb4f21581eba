"""Argument checks shared by the public functions: clear `ValueError`s at trace time.

One style for every message: "`name` must <what is expected>, got <what it
got>." followed, where the input looks like a common slip, by a hint sentence:

* a batch where one example is expected (every stn_jax function handles ONE
  example): `batch_hint` names the `jax.vmap` call to use;
* a channels-first (torch NCHW) image where channels-last is expected:
  `channels_last_hint`;
* a torch-style `(N, C, H, W)` size where the output's spatial size is
  expected: `check_output_shape` says so.
"""

from typing import Optional, Sequence

import numpy as np


def batch_hint(call: str) -> str:
  """The hint sentence for an argument that looks like a batch.

  Args:
    call: the `jax.vmap` expression to suggest, e.g.
      "jax.vmap(stn_jax.sample)(images, grids)".

  Returns:
    " Every stn_jax function handles ONE example; for a batch, use <call>."
    (with a leading space, to append to a message).
  """
  return (" Every stn_jax function handles ONE example; for a batch, use "
          f"{call}.")


def looks_batched(shape: Sequence[int], expected: Sequence) -> bool:
  """True when `shape` is `expected` (None matches any size) with extra
  leading axes, as a batch of valid arguments is."""
  shape, expected = tuple(shape), tuple(expected)
  extra = len(shape) - len(expected)
  return extra > 0 and all(
      e is None or e == s for e, s in zip(expected, shape[extra:]))


def channels_last_hint(shape: Sequence[int]) -> str:
  """The hint sentence for an image shape that looks channels-first, else "".

  An image is `[H, W, C]` here (a volume `[D, H, W, C]`), where torch's are
  `[N, C, H, W]`. A shape looks channels-first when its last axis is larger
  than 4 while the axis where torch keeps the channels (axis 0 of a 3-axis
  shape `[C, H, W]`, axis 1 of a 4- or 5-axis `[N, C, (D,) H, W]`) is 1..4.

  Returns:
    A sentence with a leading space naming the `jnp.moveaxis` call that
    moves the channels last, or "" when the shape does not look
    channels-first.
  """
  shape = tuple(int(s) for s in shape)
  if len(shape) not in (3, 4, 5):
    return ""
  axis = 0 if len(shape) == 3 else 1
  if not 1 <= shape[axis] <= 4 < shape[-1]:
    return ""
  layout = "[C, H, W]" if axis == 0 else (
      "[N, C, H, W]" if len(shape) == 4 else "[N, C, D, H, W]")
  return (f" This shape looks channels-first ({layout}, torch's layout), but "
          "stn_jax is channels-last: an image is [H, W, C] (a volume "
          f"[D, H, W, C]); move the channels last with "
          f"jnp.moveaxis(x, {axis}, -1).")


def check_shape(name: str, value, expected: Sequence, what: str = "", *,
                batch_call: Optional[str] = None) -> None:
  """Raises unless `value.shape` matches `expected` (None matches any size).

  Args:
    name: the argument's name, used in the message.
    value: an array (anything with `.shape`).
    expected: the expected shape; `None` entries match any size.
    what: optional words on what the axes mean, appended to the message.
    batch_call: the `jax.vmap` call that batches the function; when given and
      `value` looks like a batch of valid arguments (`looks_batched`), the
      message ends with `batch_hint(batch_call)`.
  """
  shape = tuple(np.shape(value))
  ok = len(shape) == len(expected) and all(
      e is None or e == s for e, s in zip(expected, shape))
  if not ok:
    pretty = "[" + ", ".join("?" if e is None else str(e) for e in expected) + "]"
    hint = (batch_hint(batch_call)
            if batch_call and looks_batched(shape, expected) else "")
    raise ValueError(
        f"`{name}` must have shape {pretty}{' ' + what if what else ''}, "
        f"got shape {list(shape)}.{hint}")


_SPATIAL = {2: "(h, w)", 3: "(d, h, w)"}


def spatial_size_hint(shape: Sequence[int], ndim: int) -> str:
  """The hint sentence for a grid size with batch/channel axes, else "".

  Args:
    shape: the sizes given (ints).
    ndim: the number of spatial sizes expected (2 or 3).

  Returns:
    For `ndim + 2` sizes (torch's `(N, C, H, W)` / `(N, C, D, H, W)` `size`
    argument of `affine_grid`), a sentence saying to pass only the last
    `ndim` and to batch with `jax.vmap`; for `ndim + 1` sizes, one saying that
    batch and channel axes do not belong in it; otherwise "".
  """
  shape = tuple(shape)
  spatial = _SPATIAL.get(ndim, f"{ndim} sizes")
  if len(shape) == ndim + 2:
    torch = "(N, C, H, W)" if ndim == 2 else "(N, C, D, H, W)"
    return (f" This looks like torch's {torch} size, but stn_jax takes only the "
            f"output's spatial size {spatial}, here {shape[2:]}: channels do "
            "not enter a grid, and every stn_jax function handles ONE example "
            "(for a batch, use jax.vmap over the other arguments).")
  if len(shape) == ndim + 1:
    return (f" Pass only the output's spatial size {spatial}, without batch "
            "or channel axes (every stn_jax function handles ONE example; for "
            "a batch, use jax.vmap over the other arguments).")
  return ""


def check_output_shape(name: str, shape, ndim: int) -> tuple:
  """Returns `shape` as a tuple of `ndim` positive Python ints, or raises.

  Args:
    name: the argument's name, used in the message.
    shape: the output's spatial size: `(h, w)` for `ndim=2`, `(d, h, w)` for
      `ndim=3`.
    ndim: the number of sizes expected.

  Returns:
    `tuple` of `ndim` Python ints >= 1.
  """
  spatial = _SPATIAL.get(ndim, "")
  expected = f"a sequence of {ndim} positive ints{' ' + spatial if spatial else ''}"
  try:
    out = tuple(int(s) for s in shape)
  except TypeError as e:
    raise ValueError(f"`{name}` must be {expected}, got {shape!r}.") from e
  if len(out) != ndim or any(s < 1 for s in out) or any(
      int(s) != s for s in shape):
    raise ValueError(f"`{name}` must be {expected}, got {shape!r}."
                     + spatial_size_hint(out, ndim))
  return out


def check_choice(name: str, value, choices: Sequence[str]) -> None:
  """Raises unless `value` is one of `choices`."""
  if value not in choices:
    raise ValueError(
        f"`{name}` must be one of {sorted(choices)}, got {value!r}.")


def no_options(name: str, kw) -> None:
  """Raises ValueError if transform family `name` got keyword options `kw`."""
  if kw:
    raise ValueError(
        f"transform {name!r} takes no keyword options, got {sorted(kw)}.")
