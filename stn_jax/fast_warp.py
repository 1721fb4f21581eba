"""Fused grid generation and bilinear sampling for the models' transformers.

`warp(images, params, transform=..., output_size=...)` is
`vmap(sample)(images, vmap(make_grid)(params))` computed for the whole batch
at once, in forms XLA's CPU backend runs well. Same values (up to float32
rounding: the coordinates come from a matmul, ~1e-6) and the same gradients
w.r.t. both the images and the transform parameters, torch's conventions at
the image edges included; `tests/test_fast_warp.py` checks both against the
plain path.

What it changes from the plain path, and why
(benchmarks/results/design_notes.md#fast_warp-fused-path):

* The plain grid `[B, h, w, 2]` interleaves x and y. The sampler reads them as
  strided slices; in the backward pass their gradients are padded back into
  the interleaved layout, sliced apart again by the grid's own backward and
  reduced per parameter (small reductions XLA:CPU runs as library calls).
  Here the coordinates stay two `[B, h*w]` arrays made by one matmul per axis
  (`params [B, k] @ base [k, h*w]`), whose gradient is the transposed matmul.
* The plain sampler gives each corner its own in-bounds mask, a separate
  elementwise pass kept alive for the backward, and its own gather. Here the
  image is zero-padded by 2 pixels and the corner index clipped into the
  padding, so an outside corner reads an exact 0 and no masks exist; and a
  table holding each pixel's 2x2 block lets one gather of 4-value rows read
  all four corners.
* The backward is hand-written (a custom VJP): the coordinate gradient from
  slopes computed in the forward pass, the image gradient as one scatter-add
  into the table (removed by XLA when the image needs no gradient, as at a
  model's input).

Without differentiation (inference, evaluation) the sampling is the plain
sampler's, whose forward pass alone is the fastest. Only single-channel
images with "bilinear" sampling and "zeros" padding, through a family with a
batched coordinate path (`Transform.batch_coords`: the built-in families),
are fused (the paper's MNIST models): with several channels the corner table
holds four copies of the image and the plain path is faster
(benchmarks/results/design_notes.md#fast_warp-single-channel-only), so other
inputs and options take it; it computes the same function. Reverse-mode only
(`jax.grad`, `jax.vjp`); use `make_grid` + `sample` for forward-mode.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from stn_jax import _checks
from stn_jax import grids
from stn_jax import sampler
from stn_jax import transforms

_HI = jax.lax.Precision.HIGHEST

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
  (benchmarks/results/design_notes.md#fast_warp-corner-table).
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


def _pixel(coord, size, align_corners):
  return jnp.clip(sampler._unnormalize(coord, size, align_corners),
                  -sampler._COORD_LIMIT, sampler._COORD_LIMIT)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _sample_xy(images, x, y, align_corners):
  """`[B, P, C]` bilinear, zeros-padded samples of `images` at normalised
  coordinates x, y `[B, P]`.

  Evaluated without differentiation (inference, evaluation) this is the
  plain sampler, whose forward pass alone beats the corner-table gathers
  below (benchmarks/results/design_notes.md#fast_warp-plain-forward). Under
  `jax.grad` the forward pass gathers from the corner table and keeps the
  slopes for the hand-written backward pass.
  """
  grid = jnp.stack([x, y], axis=-1)[:, :, None, :]  # [B, P, 1, 2]
  out = jax.vmap(lambda im, g: sampler.sample(
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

  The fused kernel of `warp`: equals `sample(images[b], grid[b])` with
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


def warp(images, params, *, transform: str, output_size,
         align_corners: bool = False, method: str = "bilinear",
         padding_mode: str = "zeros", **transform_kwargs) -> jnp.ndarray:
  """A batch of images resampled through a batch of transforms.

  Equals `jax.vmap(lambda im, p: sample(im, make_grid(transform, p,
  output_size, align_corners=align_corners, **transform_kwargs),
  method=method, padding_mode=padding_mode,
  align_corners=align_corners))(images, params)`: fused for single-channel
  images with bilinear sampling and zeros padding, the plain path otherwise
  (see the module docstring), e.g. for a family registered without
  `batch_coords`.

  Args:
    images: `[B, H, W, C]` floating images.
    params: `[B, num_params(transform, **transform_kwargs)]` flat transform
      parameters (`stn_jax.transforms`).
    transform: family name in `stn_jax.TRANSFORMS`.
    output_size: `(h, w)` of the output grid.
    align_corners: normalisation convention (see `stn_jax.grids`).
    method: sampler kernel, as in `sample`.
    padding_mode: as in `sample`.
    **transform_kwargs: family options (tps: `num_points`,
      `regularization`).

  Returns:
    `[B, h, w, C]` in `images`' dtype.
  """
  images = jnp.asarray(images)
  params = grids._as_float(params)
  _checks.check_choice("transform", transform, tuple(transforms.TRANSFORMS))
  family = transforms.TRANSFORMS[transform]
  _checks.check_choice("method", method, sampler.METHODS)
  _checks.check_choice("padding_mode", padding_mode, sampler.PADDING_MODES)
  shape = _checks.check_output_shape("output_size", output_size, 2)
  if images.ndim != 4 or not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError("`images` must be a floating batch [B, H, W, C], got "
                     f"shape {list(images.shape)} and dtype {images.dtype}.")
  if params.ndim != 2 or params.shape[0] != images.shape[0]:
    raise ValueError(
        f"`params` must be [B, n] with B = {images.shape[0]} (one flat "
        f"parameter vector per image), got shape {list(params.shape)}.")
  if (family.batch_coords is None or method != "bilinear" or
      padding_mode != "zeros" or images.shape[-1] != 1):
    return plain_warp(images, params, transform=transform, output_size=shape,
                      align_corners=align_corners, method=method,
                      padding_mode=padding_mode, **transform_kwargs)
  x, y = family.batch_coords(params, shape, align_corners=align_corners,
                             **transform_kwargs)
  out = bilinear_zeros(images, x, y, align_corners=align_corners)
  return out.reshape((images.shape[0],) + shape + (images.shape[-1],))


def plain_warp(images, params, *, transform: str, output_size,
               align_corners: bool = False, method: str = "bilinear",
               padding_mode: str = "zeros", **transform_kwargs):
  """`warp` as the vmapped `make_grid` + `sample` (the reference path).

  Same arguments, shapes and result as `warp`; forward- and reverse-mode
  differentiable.
  """
  shape = _checks.check_output_shape("output_size", output_size, 2)
  grid = jax.vmap(lambda p: transforms.make_grid(
      transform, p, shape, align_corners=align_corners,
      **transform_kwargs))(params)
  return jax.vmap(lambda im, g: sampler.sample(
      im, g, method=method, padding_mode=padding_mode,
      align_corners=align_corners))(images, grid)


# Implementations by the models' `kernels` name (`stn_jax.models`).
WARP_IMPLS = {"fast": warp, "xla": plain_warp}
