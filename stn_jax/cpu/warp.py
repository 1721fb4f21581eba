"""Fused grid generation and bilinear sampling for the models' transformers.

`warp(images, params, transform=..., output_size=...)` is
`vmap(sample)(images, vmap(make_grid)(params))` computed for the whole batch
at once, in forms XLA's CPU backend runs well. Same values (up to float32
rounding: the coordinates come from a matmul, ~1e-6) and the same gradients
w.r.t. both the images and the transform parameters, torch's conventions at
the image edges included; `tests/test_cpu_warp.py` checks both against the
plain path.

What it changes from the plain path, and why
(benchmarks/results/design_notes.md#warp-fused-path):

* The plain grid `[B, h, w, 2]` interleaves x and y. The sampler reads them as
  strided slices; in the backward pass their gradients are padded back into
  the interleaved layout, sliced apart again by the grid's own backward and
  reduced per parameter (small reductions XLA:CPU runs as library calls).
  Here the coordinates stay two `[B, h*w]` arrays made by one matmul per axis
  (`params [B, k] @ base [k, h*w]`), whose gradient is the transposed matmul.
* The plain sampler gives each corner its own in-bounds mask, a separate
  elementwise pass kept alive for the backward, and its own gather. Here
  (`stn_jax.sampler.bilinear_zeros`, the sampler's fast batched form) the
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
(benchmarks/results/design_notes.md#warp-single-channel-only), so other
inputs and options take it; it computes the same function. Reverse-mode only
(`jax.grad`, `jax.vjp`); use `make_grid` + `sample` for forward-mode.
"""

from __future__ import annotations

import jax.numpy as jnp

from stn_jax import _checks
from stn_jax import grids
from stn_jax import sampler
from stn_jax import transforms
from stn_jax import warping


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

  Arguments and result as `stn_jax.warp`: images `[B, H, W, C]` floating,
  params `[B, num_params(transform, **transform_kwargs)]`, result
  `[B, h, w, C]` in the images' dtype for `output_size` `(h, w)`.
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
    return warping.warp(images, params, transform=transform, output_size=shape,
                        align_corners=align_corners, method=method,
                        padding_mode=padding_mode, **transform_kwargs)
  x, y = family.batch_coords(params, shape, align_corners=align_corners,
                             **transform_kwargs)
  out = sampler.bilinear_zeros(images, x, y, align_corners=align_corners)
  return out.reshape((images.shape[0],) + shape + (images.shape[-1],))
