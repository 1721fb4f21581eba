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
"""


import jax
import jax.numpy as jnp

from stn_jax import _checks

METHODS = ("bilinear", "nearest", "bicubic")
PADDING_MODES = ("zeros", "border", "reflection")

# Keeps pixel coordinates far inside int32 range before they become indices.
# Any coordinate beyond it reads padding, so the clamp changes no value.
_COORD_LIMIT = 2.0 ** 24


def _unnormalize(coord, size: int, align_corners: bool):
  """Normalised coordinate -> pixel index coordinate (pixel i's centre is i)."""
  if align_corners:
    return (coord + 1.0) / 2.0 * (size - 1)
  return ((coord + 1.0) * size - 1.0) / 2.0


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
  values = flat.at[linear].get(mode="promise_in_bounds")
  return values, valid


def _linear_or_nearest(image, grid, *, method, padding_mode, align_corners,
                       compute_dtype):
  """Bilinear/trilinear or nearest sampling of one image, any rank."""
  spatial = image.shape[:-1]
  channels = image.shape[-1]
  sizes = spatial[::-1]  # (x, y[, z]) order, like the grid's last axis
  out_shape = grid.shape[:-1]
  coords = grid.reshape(-1, grid.shape[-1]).astype(compute_dtype)
  flat = image.reshape(-1, channels)
  pix = []
  for axis, size in enumerate(sizes):
    c = _unnormalize(coords[:, axis], size, align_corners)
    c = _apply_padding(c, size, padding_mode, align_corners)
    pix.append(jnp.clip(c, -_COORD_LIMIT, _COORD_LIMIT))

  if method == "nearest":
    # Round half to even, like torch's nearbyint.
    idx = [jnp.round(c).astype(jnp.int32)[None] for c in pix]
    values, valid = _gather(flat, sizes, idx)
    out = jnp.where(valid[..., None], values, jnp.zeros((), values.dtype))[0]
    return out.reshape(out_shape + (channels,))

  lows = [jnp.floor(c) for c in pix]
  fracs = [c - lo for c, lo in zip(pix, lows)]
  low_idx = [lo.astype(jnp.int32) for lo in lows]
  ndim = len(sizes)
  corner_idx = [[] for _ in range(ndim)]
  weights = []
  for corner in range(2 ** ndim):
    w = None
    for axis in range(ndim):
      up = (corner >> axis) & 1
      corner_idx[axis].append(low_idx[axis] + up)
      wa = fracs[axis] if up else 1.0 - fracs[axis]
      w = wa if w is None else w * wa
    weights.append(w)
  values, valid = _gather(flat, sizes, [jnp.stack(c) for c in corner_idx])
  weights = jnp.where(valid, jnp.stack(weights), 0.0)
  out = jnp.einsum("tp,tpc->pc", weights, values.astype(compute_dtype),
                   precision=jax.lax.Precision.HIGHEST)
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
  x = jnp.clip(_unnormalize(coords[:, 0], width, align_corners),
               -_COORD_LIMIT, _COORD_LIMIT)
  y = jnp.clip(_unnormalize(coords[:, 1], height, align_corners),
               -_COORD_LIMIT, _COORD_LIMIT)
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
  out = jnp.einsum("tp,tpc->pc", weights, values.astype(compute_dtype),
                   precision=jax.lax.Precision.HIGHEST)
  return out.reshape(out_shape + (channels,))


def _validate(image, grid, method, padding_mode):
  _checks.check_choice("method", method, METHODS)
  _checks.check_choice("padding_mode", padding_mode, PADDING_MODES)
  if image.ndim not in (3, 4):
    raise ValueError(
        "`image` must be [H, W, C] (2D) or [D, H, W, C] (3D, a volume), got "
        f"shape {list(image.shape)}.")
  spatial = image.ndim - 1
  if grid.ndim != spatial + 1 or grid.shape[-1] != spatial:
    expected = "[h, w, 2]" if spatial == 2 else "[d, h, w, 3]"
    raise ValueError(
        f"`grid` must be {expected} for an image of shape "
        f"{list(image.shape)}, got shape {list(grid.shape)}.")
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
           align_corners: bool = False) -> jnp.ndarray:
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

  Returns:
    `[h, w, C]` (or `[d, h, w, C]`) in `image`'s dtype. Interpolation runs in
    float32 (float64 for float64 inputs) whatever the image dtype.
  """
  image = jnp.asarray(image)
  grid = jnp.asarray(grid)
  _validate(image, grid, method, padding_mode)
  compute_dtype = jnp.promote_types(
      jnp.promote_types(image.dtype, grid.dtype), jnp.float32)
  if method == "bicubic":
    out = _bicubic(image, grid, padding_mode=padding_mode,
                   align_corners=align_corners, compute_dtype=compute_dtype)
  else:
    out = _linear_or_nearest(image, grid, method=method,
                             padding_mode=padding_mode,
                             align_corners=align_corners,
                             compute_dtype=compute_dtype)
  return out.astype(image.dtype)
