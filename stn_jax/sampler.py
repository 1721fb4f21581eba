"""The differentiable sampler: V = sum_nm U_nm k(x - m) k(y - n), per channel.

`sample(image, grid)` reads `image` at the source positions of `grid` (see
`stn_jax.grids` for the coordinate conventions) with the semantics of
`torch.nn.functional.grid_sample` (channels-last here, NCHW there): the same
values and the same gradients for every method x padding mode x align_corners,
including torch's choices at the edges (a coordinate clamped by border or
reflection padding, or sitting exactly on the clamp limit, passes no gradient).

Bilinear is the paper's kernel max(0, 1 - |x - m|) with its sub-gradient: at an
integer x the gradient w.r.t. x is the one-sided (right) derivative
U[x + 1] - U[x], which is non-zero in general, so a transformer initialised at
the identity (all sample points on pixel centres) still learns.

`bilinear_zeros(images, x, y, align_corners=...)` is the same sampling in its
fast batched form (a batch `[B, H, W, C]` at per-axis coordinates `[B, P]`,
bilinear with zeros padding, reverse-mode differentiable), which
`stn_jax.cpu.warp.warp` runs for the models' transformers. Pixel coordinates
come from the one formula, `stn_jax.grids.to_pixel`.
"""


import functools

import jax
import jax.numpy as jnp

from stn_jax import _checks
from stn_jax import grids

METHODS = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")

# Keeps pixel coordinates far inside int32 range before they become indices.
# Any coordinate beyond it reads padding, so the clamp changes no value.
_COORD_LIMIT = 2.0 ** 24


def _pixel(coord, size: int, align_corners: bool):
  """Normalised coordinate -> pixel coordinate (`grids.to_pixel`), clamped
  to +-`_COORD_LIMIT`."""
  return jnp.clip(grids.to_pixel(coord, size, align_corners=align_corners),
                  -_COORD_LIMIT, _COORD_LIMIT)


def _clip(coord, size: int):
  """Clamps to [0, size - 1]. As in torch, the limits themselves pass no
  gradient (they count as out of bounds for the gradient)."""
  hi = float(size - 1)
  inside = (coord > 0) & (coord < hi)
  clamped = jnp.where(coord <= 0, 0.0, hi).astype(coord.dtype)
  return jnp.where(inside, coord, jax.lax.stop_gradient(clamped))


def _reflect(coord, twice_low: int, twice_high: int):
  """Reflects `coord` into [twice_low / 2, twice_high / 2] (torch's rule)."""
  if twice_low == twice_high:
    return jnp.zeros_like(coord)
  low = twice_low / 2.0
  span = (twice_high - twice_low) / 2.0
  shifted = coord - low
  # where, not abs: the gradient at exactly `low` is +1, as in torch.
  mag = jnp.where(shifted < 0, -shifted, shifted)
  extra = jnp.fmod(mag, span)
  flips = jnp.floor(mag / span)
  even = jnp.fmod(flips, 2.0) == 0
  return jnp.where(even, extra + low, span - extra + low)


def _apply_padding(coord, size: int, padding_mode: str, align_corners: bool):
  """torch's `compute_coordinates`: maps a pixel coordinate into the image
  for border/reflection padding; leaves it alone for zeros padding."""
  if padding_mode == "border":
    return _clip(coord, size)
  if padding_mode == "reflection":
    if align_corners:
      coord = _reflect(coord, 0, 2 * (size - 1))
    else:
      coord = _reflect(coord, -1, 2 * size - 1)
    return _clip(coord, size)
  return coord


# --- Row gather with a batch-folding vmap rule. Under `jax.vmap`, reading
# rows of a batched image at batched indices becomes XLA's batched gather,
# which XLA:CPU runs far slower than one plain gather over the whole batch
# (benchmarks/results/design_notes.md#sampler-batch-folding-gather). So the
# batching rule folds the batch into the row axis: image [B, N, C] ->
# [B * N, C], indices + b * N. The derivative is a custom JVP whose tangent is
# the plain gather `d_flat[idx]`: JAX can transpose it (reverse mode: a
# scatter-add) and evaluate it (forward mode), which a custom VJP or a
# custom-vmap tangent would not allow; only the primal takes the folded path.


def _batch_offsets(axis_size: int, rows: int, idx):
  shape = (axis_size,) + (1,) * (idx.ndim - 1)
  return (jnp.arange(axis_size, dtype=idx.dtype) * rows).reshape(shape)


@jax.custom_batching.custom_vmap
def _take_rows_folded(flat, idx):
  return flat.at[idx].get(mode="promise_in_bounds")


@_take_rows_folded.def_vmap
def _take_rows_vmap(axis_size, in_batched, flat, idx):
  flat_batched, idx_batched = in_batched
  if not flat_batched:
    return flat.at[idx].get(mode="promise_in_bounds"), idx_batched
  if not idx_batched:
    idx = jnp.broadcast_to(idx, (axis_size,) + idx.shape)
  rows = flat.shape[1]
  folded = flat.reshape((axis_size * rows,) + flat.shape[2:])
  idx = idx + _batch_offsets(axis_size, rows, idx)
  return folded.at[idx].get(mode="promise_in_bounds"), True


@jax.custom_jvp
def take_rows(flat, idx):
  """`flat[idx]` for `flat` `[N, C]` and int32 `idx` `[...]` in [0, N).

  Returns `[..., C]`. Same values and derivatives (forward and reverse mode)
  as `flat[idx]`; under `jax.vmap` the values come from one gather over the
  whole batch.
  """
  return _take_rows_folded(flat, idx)


@take_rows.defjvp
def _take_rows_jvp(primals, tangents):
  flat, idx = primals
  d_flat, _ = tangents
  return (take_rows(flat, idx),
          d_flat.at[idx].get(mode="promise_in_bounds"))


def _gather(flat, sizes, corner_idx):
  """Reads `flat` ([prod(sizes), C]) at integer corners, zero outside.

  Args:
    flat: the image flattened over its spatial axes, `[N, C]`.
    sizes: spatial sizes, in (x, y[, z]) order.
    corner_idx: list over axes (x, y[, z]) of int32 arrays `[T, P]`.

  Returns:
    `[T, P, C]` values and the `[T, P]` in-bounds mask.
  """
  valid = None
  linear = None
  stride = 1
  for idx, size in zip(corner_idx, sizes):
    ok = (idx >= 0) & (idx < size)
    valid = ok if valid is None else valid & ok
    term = jnp.clip(idx, 0, size - 1) * stride
    linear = term if linear is None else linear + term
    stride *= size
  values = take_rows(flat, linear)
  return values, valid


def _pixel_coords(grid, sizes, padding_mode, align_corners, compute_dtype):
  """Grid -> per-axis pixel coordinates `[P]` (x, y[, z] order), padded.

  Border/reflection padding moves the coordinate into the image here, so the
  interpolation paths below only ever see zeros padding (a corner outside the
  image reads 0). Autodiff handles this part; it is cheap elementwise work.
  """
  coords = grid.reshape(-1, grid.shape[-1]).astype(compute_dtype)
  pix = []
  for axis, size in enumerate(sizes):
    c = grids.to_pixel(coords[:, axis], size, align_corners=align_corners)
    c = _apply_padding(c, size, padding_mode, align_corners)
    pix.append(jnp.clip(c, -_COORD_LIMIT, _COORD_LIMIT))
  return tuple(pix)


def _corner_terms(pix, sizes):
  """Yields the 2^ndim interpolation corners of every sample point, one by one.

  Args:
    pix: per-axis pixel coordinates, each `[P]`, in (x, y[, z]) order.
    sizes: spatial sizes in the same order.

  Yields:
    Per corner `(linear, weight)`: int32 `[P]` row index in the flattened
    image, clipped into range; the `[P]` interpolation weight, zero for a
    corner outside the image.
  """
  lows = [jnp.floor(c) for c in pix]
  fracs = [c - lo for c, lo in zip(pix, lows)]
  low_idx = [lo.astype(jnp.int32) for lo in lows]
  for corner in range(2 ** len(sizes)):
    linear, inside, weight, stride = 0, True, 1.0, 1
    for axis, size in enumerate(sizes):
      up = (corner >> axis) & 1
      idx = low_idx[axis] + up
      inside = inside & (idx >= 0) & (idx < size)
      linear = linear + jnp.clip(idx, 0, size - 1) * stride
      weight = weight * (fracs[axis] if up else 1.0 - fracs[axis])
      stride *= size
    yield linear, jnp.where(inside, weight, 0.0)


def _weighted_sum(weights, values):
  """sum_t weights[t, p] * values[t, p, c] as plain multiply-adds.

  Written out (not einsum / sum over t): XLA:CPU lowers the einsum to a
  batched matmul over points and the small reduction to a slow library call,
  while the unrolled form fuses into one elementwise loop
  (benchmarks/results/design_notes.md#sampler-unrolled-weighted-sum).
  """
  out = weights[0][:, None] * values[0]
  for t in range(1, weights.shape[0]):
    out = out + weights[t][:, None] * values[t]
  return out


# --- Path "gather" (the default for all but tiny images): for each of the
# 2^ndim corners, gather its rows, weight them and add; JAX differentiates
# (the image gradient is the transpose of each gather, a scatter-add). One
# gather per corner, not one stacked [2^ndim, P] gather: under vmap the
# stacked indices and weights come out as [B, 2^ndim, P], and slicing corners
# out of that strided layout costs more than the gathers
# (benchmarks/results/design_notes.md#sampler-one-gather-per-corner).


def _interp_gather(flat, pix, sizes):
  out = None
  for linear, weight in _corner_terms(pix, sizes):
    term = weight[:, None] * take_rows(flat, linear).astype(pix[0].dtype)
    out = term if out is None else out + term
  return out


# --- Path "separable", for images of a handful of pixels: the interpolation
# as dense linear algebra, which XLA runs as matmuls (no gather, no
# scatter). It builds, per
# axis, a `[P, size]` matrix of the 1-D weights (1 - f at floor, f at
# floor + 1, zero elsewhere, so corners outside the image drop out exactly as
# in the gather path); autodiff of these matmuls gives the same gradients:
# the image gradient is the transposed matmul, and d weight / d f = -1 / +1 is
# the kernel's sub-gradient (the one-sided derivative at integer positions).


def _axis_weight_matrix(coord, size, dtype):
  """`[P, size]` matrix of the 1-D bilinear weights of `coord` `[P]`."""
  low = jnp.floor(coord)
  frac = coord - low
  low = jax.lax.stop_gradient(low).astype(jnp.int32)
  m = jnp.arange(size, dtype=jnp.int32)[None, :]
  return (jnp.where(m == low[:, None], 1.0 - frac[:, None], 0.0)
          + jnp.where(m == low[:, None] + 1, frac[:, None], 0.0)).astype(dtype)


def _interp_separable(flat, pix, sizes):
  """Contract one axis at a time: T[p, n, c] = sum_m Wx[p, m] U[n, m, c],
  V[p, c] = sum_n Wy[p, n] T[p, n, c] (and once more for z in 3D)."""
  compute_dtype = pix[0].dtype
  mats = [_axis_weight_matrix(c, s, compute_dtype) for c, s in zip(pix, sizes)]
  channels = flat.shape[-1]
  rest = flat.astype(compute_dtype).reshape(sizes[::-1] + (channels,))
  # First contraction: a matmul over the x axis, [P, W] @ [W, (z) y C].
  rest = jnp.moveaxis(rest, -2, 0).reshape(sizes[0], -1)
  t = jnp.matmul(mats[0], rest, precision=jax.lax.Precision.HIGHEST)
  t = t.reshape((-1,) + sizes[:0:-1] + (channels,))  # [P, (D,) H, C]
  for mat in mats[1:]:
    # Contract the innermost remaining spatial axis (y, then z).
    t = jnp.einsum("pn,p...nc->p...c", mat, t,
                   precision=jax.lax.Precision.HIGHEST)
  return t


# Linear interpolation (bilinear / trilinear) of a flattened image [N, C] at
# per-axis pixel coordinates (each [P], in the compute dtype; sizes in the same
# (x, y[, z]) order) -> [P, C] in the compute dtype. Both give the same
# values and gradients; `choose_linear_path` picks one.
LINEAR_PATHS = {
    "gather": _interp_gather,
    "separable": _interp_separable,
}
PATHS = ("auto",) + tuple(LINEAR_PATHS)


def choose_linear_path(sizes, num_points: int, channels: int) -> str:
  """The path `path="auto"` takes for bilinear/trilinear sampling.

  A static cost model in element operations: the gather path costs about
  2^ndim corners per point, each ~(8 + C) operations (index arithmetic plus C
  values); `separable` touches every (point, pixel) pair, ~P * N * (C / 16 +
  1) (a matmul at ~16 flops per element-op, plus the weight matrices), times
  a margin of 4 set from benchmarks. So `separable` is picked only for images
  of a handful of pixels
  (benchmarks/results/design_notes.md#sampler-path-cost-model).
  """
  n = 1
  for s in sizes:
    n *= s
  gather_cost = num_points * (2 ** len(sizes)) * (8 + channels)
  separable_cost = 4.0 * num_points * n * (channels / 16.0 + 1.0)
  return "separable" if separable_cost < gather_cost else "gather"


def _linear_or_nearest(image, grid, *, method, padding_mode, align_corners,
                       compute_dtype, path):
  """Bilinear/trilinear or nearest sampling of one image, any rank."""
  spatial = image.shape[:-1]
  channels = image.shape[-1]
  sizes = spatial[::-1]  # (x, y[, z]) order, like the grid's last axis
  out_shape = grid.shape[:-1]
  flat = image.reshape(-1, channels)
  pix = _pixel_coords(grid, sizes, padding_mode, align_corners, compute_dtype)

  if method == "nearest":
    # Round half to even, like torch's nearbyint.
    idx = [jnp.round(c).astype(jnp.int32)[None] for c in pix]
    values, valid = _gather(flat, sizes, idx)
    out = jnp.where(valid[..., None], values, jnp.zeros((), values.dtype))[0]
    return out.reshape(out_shape + (channels,))

  if path == "auto":
    path = choose_linear_path(sizes, pix[0].shape[0], channels)
  out = LINEAR_PATHS[path](flat, pix, sizes)
  return out.reshape(out_shape + (channels,))


def _cubic_coefficients(t):
  """Keys' cubic convolution weights (A = -0.75, as torch) for taps -1..2."""
  a = -0.75

  def near(x):  # |x| <= 1
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0

  def far(x):  # 1 < |x| < 2
    return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a

  return jnp.stack([far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)])


def _bicubic(image, grid, *, padding_mode, align_corners, compute_dtype):
  """Bicubic sampling of one `[H, W, C]` image (torch's bicubic grid_sample)."""
  height, width, channels = image.shape
  out_shape = grid.shape[:-1]
  coords = grid.reshape(-1, 2).astype(compute_dtype)
  x = _pixel(coords[:, 0], width, align_corners)
  y = _pixel(coords[:, 1], height, align_corners)
  x0, y0 = jnp.floor(x), jnp.floor(y)
  wx = _cubic_coefficients(x - x0)  # [4, P]
  wy = _cubic_coefficients(y - y0)
  offsets = jnp.arange(-1.0, 3.0, dtype=compute_dtype)
  # Padding applies to each tap's integer position, not to the sample point.
  tap_x = _apply_padding(x0[None] + offsets[:, None], width, padding_mode,
                         align_corners)  # [4, P]
  tap_y = _apply_padding(y0[None] + offsets[:, None], height, padding_mode,
                         align_corners)
  # Truncation toward zero, as torch's float -> int cast.
  ix = jnp.trunc(tap_x).astype(jnp.int32)
  iy = jnp.trunc(tap_y).astype(jnp.int32)
  # All 16 taps: index [4 (y), 4 (x), P].
  idx_x = jnp.broadcast_to(ix[None], (4, 4, ix.shape[-1])).reshape(16, -1)
  idx_y = jnp.broadcast_to(iy[:, None], (4, 4, iy.shape[-1])).reshape(16, -1)
  values, valid = _gather(image.reshape(-1, channels), (width, height),
                          [idx_x, idx_y])
  weights = (wy[:, None] * wx[None, :]).reshape(16, -1)
  weights = jnp.where(valid, weights, 0.0)
  out = _weighted_sum(weights, values.astype(compute_dtype))
  return out.reshape(out_shape + (channels,))


def _batch_call(image_shape, grid_shape) -> str:
  """The `jax.vmap` call that fits an image and a grid that do not pair up.

  Returns "" unless the shapes look like a batch on one or both sides: an
  image `[B, H, W, C]` (which `sample` reads as a volume) with grids
  `[B, h, w, 2]` or one grid `[h, w, 2]`; one image with grids `[B, h, w, 2]`;
  volumes `[B, D, H, W, C]`; one volume with grids `[B, d, h, w, 3]`.
  """
  image_rank, grid_rank = len(image_shape), len(grid_shape)
  grid_dims = grid_shape[-1] if grid_shape else None
  if image_rank == 4 and grid_dims == 2:  # [B, H, W, C]: a batch of images
    if grid_rank == 4:
      return "jax.vmap(stn_jax.sample)(images, grids)"
    if grid_rank == 3:
      return "jax.vmap(stn_jax.sample, in_axes=(0, None))(images, grid)"
  if image_rank == 3 and grid_rank == 4 and grid_dims == 2:
    return "jax.vmap(stn_jax.sample, in_axes=(None, 0))(image, grids)"
  if image_rank == 4 and grid_rank == 5 and grid_dims == 3:
    return "jax.vmap(stn_jax.sample, in_axes=(None, 0))(volume, grids)"
  if image_rank == 5:  # [B, D, H, W, C]: a batch of volumes
    if grid_rank == 5:
      return "jax.vmap(stn_jax.sample)(volumes, grids)"
    if grid_rank == 4:
      return "jax.vmap(stn_jax.sample, in_axes=(0, None))(volumes, grid)"
  return ""


def _validate(image, grid, method, padding_mode, path):
  """Raises a `ValueError` naming the bad argument (see `stn_jax._checks`).

  Shape errors end with hints where the input looks like a common slip: a
  batch (every function handles one example; the message names the
  `jax.vmap` call to use) or a channels-first (torch NCHW) image.
  """
  _checks.check_choice("method", method, METHODS)
  _checks.check_choice("path", path, PATHS)
  _checks.check_choice("padding_mode", padding_mode, PADDING_MODES)
  layout = _checks.channels_last_hint(image.shape)
  batch_call = _batch_call(image.shape, grid.shape)
  hint = (_checks.batch_hint(batch_call) if batch_call else "") + layout
  if image.ndim not in (3, 4):
    if image.ndim == 2 and not hint:
      hint = (" A single-channel image needs its channel axis: "
              "image[..., None] is [H, W, 1].")
    raise ValueError(
        "`image` must be [H, W, C] (2D) or [D, H, W, C] (3D, a volume), got "
        f"shape {list(image.shape)}.{hint}")
  spatial = image.ndim - 1
  if grid.ndim != spatial + 1 or grid.shape[-1] != spatial:
    expected = "[h, w, 2]" if spatial == 2 else "[d, h, w, 3]"
    read_as = ("an image [H, W, C]" if spatial == 2
               else "a volume [D, H, W, C], as it has 4 axes")
    raise ValueError(
        f"`grid` must be {expected} for an `image` of shape "
        f"{list(image.shape)} (read as {read_as}), got shape "
        f"{list(grid.shape)}.{hint}")
  if spatial == 3 and method == "bicubic":
    raise ValueError(
        "`method`='bicubic' supports 2D images only (as torch); use "
        "'bilinear' (trilinear) or 'nearest' for volumes.")
  if not jnp.issubdtype(image.dtype, jnp.floating):
    raise ValueError(
        f"`image` must have a floating dtype, got {image.dtype}; convert "
        "first (e.g. uint8 / 255).")
  if not jnp.issubdtype(grid.dtype, jnp.floating):
    raise ValueError(f"`grid` must have a floating dtype, got {grid.dtype}.")


def sample(image, grid, *, method: str = "bilinear",
           padding_mode: str = "zeros",
           align_corners: bool = False, path: str = "auto") -> jnp.ndarray:
  """Samples `image` at the source positions `grid` (torch's `grid_sample`).

  Args:
    image: `[H, W, C]` image or `[D, H, W, C]` volume, floating dtype
      (float32, bfloat16, float16 or float64).
    grid: `[h, w, 2]` of normalised (x, y) source positions for a 2D image,
      `[d, h, w, 3]` of (x, y, z) for a volume. The output takes the grid's
      size, not the image's.
    method: "bilinear" (trilinear for volumes), "nearest" (round half to
      even, as torch), or "bicubic" (2D only; Keys' kernel with A = -0.75).
    padding_mode: what positions outside the image read: "zeros", "border"
      (the nearest edge pixel), or "reflection" (mirrored at the edges).
    align_corners: normalisation convention (see `stn_jax.grids`): True puts
      -1/+1 at the centres of the corner pixels (the paper's), False at their
      outer edges.
    path: how bilinear/trilinear sampling is computed; every path gives the
      same values and gradients (only speed differs). "auto" (default) picks
      by `choose_linear_path`; "gather" gathers the 2^ndim corners
      (differentiated by JAX); "separable" uses matmuls with per-axis weight
      matrices (for tiny images). "nearest" and "bicubic" always gather.

  Returns:
    `[h, w, C]` (or `[d, h, w, C]`) in `image`'s dtype. Interpolation runs in
    float32 (float64 for float64 inputs) whatever the image dtype.

  One example, channels-last: for a batch `images [B, H, W, C]` and
  `grids [B, h, w, 2]`, use `jax.vmap(stn_jax.sample)(images, grids)`
  (-> `[B, h, w, C]`); a batch passed directly is read as one volume and
  refused with a message naming that call, and a channels-first (torch
  `[N, C, H, W]`) shape is named as such in the error.
  """
  image = jnp.asarray(image)
  grid = jnp.asarray(grid)
  _validate(image, grid, method, padding_mode, path)
  compute_dtype = jnp.promote_types(
      jnp.promote_types(image.dtype, grid.dtype), jnp.float32)
  if method == "bicubic":
    out = _bicubic(image, grid, padding_mode=padding_mode,
                   align_corners=align_corners, compute_dtype=compute_dtype)
  else:
    out = _linear_or_nearest(image, grid, method=method,
                             padding_mode=padding_mode,
                             align_corners=align_corners,
                             compute_dtype=compute_dtype, path=path)
  return out.astype(image.dtype)


# --- The fast batched form: bilinear sampling with zeros padding of a whole
# batch at per-axis coordinates `[B, P]` (what `stn_jax.cpu.warp.warp`
# fuses with the grid), in forms XLA's CPU backend runs well
# (benchmarks/results/design_notes.md#warp-fused-path): the image is
# zero-padded by `_PAD` pixels and each corner index clipped into the
# padding, so an outside corner reads an exact 0 and no masks exist; a table
# holding each pixel's 2x2 block lets one gather of 4-value rows read all
# four corners; the backward is hand-written (a custom VJP). Reverse-mode
# only.

# Zero padding around the image, in pixels. The corner index is clipped into
# [-_PAD, size]: then both corners of an axis, floor(x) and floor(x) + 1, lie
# in the padded image, and any corner outside the image reads a zero.
_PAD = 2


# ------------------------------------------------ bilinear interpolation


def _corner_index(px, py, size):
  """Flat index of each point's top-left corner in the padded batch, and
  the fractions (fx, fy). px, py: `[B, P]` pixel coordinates."""
  height, width = size
  padded_w = width + 2 * _PAD
  x0, y0 = jnp.floor(px), jnp.floor(py)
  fx, fy = px - x0, py - y0
  row = jnp.clip(y0.astype(jnp.int32), -_PAD, height) + _PAD
  col = jnp.clip(x0.astype(jnp.int32), -_PAD, width) + _PAD
  image_start = (jnp.arange(px.shape[0], dtype=jnp.int32) *
                 ((height + 2 * _PAD) * padded_w))[:, None]
  return image_start + row * padded_w + col, fx, fy


def _corner_table(images):
  """`[B * (H + 4) * (W + 4), 4, C]` for images `[B, H, W, C]`: row i holds
  the 2x2 block whose top-left pixel is pixel i of the batch zero-padded by
  2 pixels, as (y0 x0, y0 x1, y1 x0, y1 x1).

  One gather of a 4-value row per point then reads all four corners, so the
  index arithmetic runs once instead of per corner
  (benchmarks/results/design_notes.md#warp-corner-table).
  """
  channels = images.shape[-1]
  rows, cols = images.shape[1] + 2 * _PAD, images.shape[2] + 2 * _PAD
  # Padded and sliced channels-first: with one channel the rows are then
  # contiguous (free to reorder for C = 1).
  x = jnp.moveaxis(images, -1, 1)
  # One more zero row and column at the end: every block is complete.
  x = jnp.pad(x, ((0, 0), (0, 0), (_PAD, _PAD + 1), (_PAD, _PAD + 1)))
  table = jnp.stack([x[..., :rows, :cols], x[..., :rows, 1:],
                     x[..., 1:, :cols], x[..., 1:, 1:]], axis=-1)
  return jnp.moveaxis(table, 1, -1).reshape(-1, 4, channels)


def _axis_weights(fx, fy):
  """The 1-D bilinear weights `(wx0, wx1, wy0, wy1)`, each `[B, P, 1]`."""
  wx1, wy1 = fx[..., None], fy[..., None]
  return 1.0 - wx1, wx1, 1.0 - wy1, wy1


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _sample_xy(images, x, y, align_corners):
  """`[B, P, C]` bilinear, zeros-padded samples of `images` at normalised
  coordinates x, y `[B, P]`.

  Evaluated without differentiation (inference, evaluation) this is the
  plain sampler, whose forward pass alone beats the corner-table gathers
  below (benchmarks/results/design_notes.md#warp-plain-forward). Under
  `jax.grad` the forward pass gathers from the corner table and keeps the
  slopes for the hand-written backward pass.
  """
  grid = jnp.stack([x, y], axis=-1)[:, :, None, :]  # [B, P, 1, 2]
  out = jax.vmap(lambda im, g: sample(
      im, g, align_corners=align_corners))(images, grid)
  return out[:, :, 0, :]


def _sample_xy_fwd(images, x, y, align_corners):
  size = images.shape[1:3]
  px = _pixel(x, size[1], align_corners)
  py = _pixel(y, size[0], align_corners)
  index, fx, fy = _corner_index(px, py, size)
  corners = _corner_table(images).at[index].get(
      mode="promise_in_bounds")  # [B, P, 4, C]
  v00, v01, v10, v11 = (corners[:, :, i] for i in range(4))
  wx0, wx1, wy0, wy1 = _axis_weights(fx, fy)
  top = wx0 * v00 + wx1 * v01
  bottom = wx0 * v10 + wx1 * v11
  out = wy0 * top + wy1 * bottom
  # d out / d px and d out / d py: the one-sided (right) derivative at
  # integer coordinates, and outside corners contribute 0, as in torch.
  slope_x = wy0 * (v01 - v00) + wy1 * (v11 - v10)
  slope_y = bottom - top
  # Residuals must be arrays: an empty one carries the images' shape.
  carrier = jnp.zeros((0,) + images.shape, images.dtype)
  return out, (slope_x, slope_y, index, fx, fy, x, y, carrier)


def _sample_xy_bwd(align_corners, res, g):
  slope_x, slope_y, index, fx, fy, x, y, carrier = res
  shape = carrier.shape[1:]
  size = shape[1:3]
  d_px = jnp.sum(g * slope_x, axis=-1)
  d_py = jnp.sum(g * slope_y, axis=-1)
  d_x = jax.vjp(lambda c: _pixel(c, size[1], align_corners), x)[1](d_px)[0]
  d_y = jax.vjp(lambda c: _pixel(c, size[0], align_corners), y)[1](d_py)[0]
  wx0, wx1, wy0, wy1 = _axis_weights(fx, fy)
  # One scatter-add of the four weighted rows into the table, then the
  # table's construction transposed back to the image (XLA drops all of it
  # when the images need no gradient, as at a model's input).
  updates = jnp.stack([wy0 * wx0 * g, wy0 * wx1 * g, wy1 * wx0 * g,
                       wy1 * wx1 * g], axis=2)
  table_shape = jax.eval_shape(
      _corner_table, jax.ShapeDtypeStruct(shape, carrier.dtype))
  d_table = jnp.zeros(table_shape.shape, g.dtype).at[index].add(
      updates, mode="promise_in_bounds")
  d_images, = jax.linear_transpose(
      _corner_table, jax.ShapeDtypeStruct(shape, g.dtype))(d_table)
  return d_images.astype(carrier.dtype), d_x, d_y


_sample_xy.defvjp(_sample_xy_fwd, _sample_xy_bwd)


def bilinear_zeros(images, x, y, *, align_corners: bool):
  """Bilinear samples of `images` at per-axis normalised coordinates.

  The fast batched form of `sample` (`stn_jax.cpu.warp.warp` runs it):
  equals `sample(images[b], grid[b])` with
  `grid[b, p] = (x[b, p], y[b, p])`, bilinear, zeros padding.

  Args:
    images: `[B, H, W, C]` floating images.
    x, y: `[B, P]` normalised source coordinates (see `stn_jax.grids`).
    align_corners: normalisation convention.

  Returns:
    `[B, P, C]` samples in `images`' dtype (computed in float32 or wider).
  """
  if images.ndim != 4:
    raise ValueError("`images` must be a batch [B, H, W, C], got shape "
                     f"{list(images.shape)}.")
  batch = images.shape[0]
  if x.shape != y.shape or x.ndim != 2 or x.shape[0] != batch:
    raise ValueError(
        f"`x` and `y` must both be [B, P] with B = {batch}, got shapes "
        f"{list(x.shape)} and {list(y.shape)}.")
  rows = batch * (images.shape[1] + 2 * _PAD) * (images.shape[2] + 2 * _PAD)
  if rows >= 2 ** 31:  # The corner index is int32.
    raise ValueError(
        f"`images` {list(images.shape)}: the padded batch has {rows} pixels, "
        "more than int32 indices reach; split the batch.")
  compute_dtype = jnp.promote_types(
      jnp.promote_types(images.dtype, x.dtype), jnp.float32)
  out = _sample_xy(images.astype(compute_dtype), x.astype(compute_dtype),
                   y.astype(compute_dtype), align_corners)
  return out.astype(images.dtype)
