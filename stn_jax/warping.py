"""A batch of images resampled through a batch of transforms (the plain path).

`warp(images, params, transform=..., output_size=...)` is the vmapped
`make_grid` + `sample`: the reference that `stn_jax.cpu.warp.warp` (the
fused CPU form the models use by default) computes up to float rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stn_jax import _checks
from stn_jax import sampler
from stn_jax import transforms


def warp(images, params, *, transform: str, output_size,
         align_corners: bool = False, method: str = "bilinear",
         padding_mode: str = "zeros", **transform_kwargs) -> jnp.ndarray:
  """`vmap(sample)(images, vmap(make_grid)(params))` for a batch.

  Forward- and reverse-mode differentiable w.r.t. the images and the
  parameters.

  Args:
    images: `[B, H, W, C]` floating images.
    params: `[B, num_params(transform, **transform_kwargs)]` flat transform
      parameters (`stn_jax.transforms`).
    transform: family name in `stn_jax.TRANSFORMS`.
    output_size: `(h, w)` of the output grid.
    align_corners: normalisation convention (see `stn_jax.grids`).
    method: sampler kernel, as in `stn_jax.sample`.
    padding_mode: as in `stn_jax.sample`.
    **transform_kwargs: family options (tps: `num_points`,
      `regularization`).

  Returns:
    `[B, h, w, C]` in `images`' dtype.
  """
  shape = _checks.check_output_shape("output_size", output_size, 2)
  grid = jax.vmap(lambda p: transforms.make_grid(
      transform, p, shape, align_corners=align_corners,
      **transform_kwargs))(params)
  return jax.vmap(lambda im, g: sampler.sample(
      im, g, method=method, padding_mode=padding_mode,
      align_corners=align_corners))(images, grid)
