"""Batched per-axis source coordinates of the built-in transform families.

`<family>_coords(params [B, n], (h, w), *, align_corners, **options)` ->
`(x, y)`, each `[B, h * w]`: the normalised source coordinates of
`make_grid(family, params[b], (h, w), ...)` for every b, one array per axis,
made by one matmul per axis (`params @ base`). They are the optional fast
batched path of a family (`stn_jax.transforms.Transform.batch_coords`) that
`stn_jax.cpu.warp.warp` samples from; a family without one takes the plain
`make_grid` + `sample` path.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from stn_jax import _checks
from stn_jax import grids

_HI = jax.lax.Precision.HIGHEST


def _check_params(name, params, n):
  _checks.check_shape("params", params, (None, n),
                      f"(a batch of flat {name!r} parameters)")


def _base_rows(name, params, n, shape, align_corners, kw):
  """Checks a family without options and `n` parameters; returns the
  `[3, h * w]` rows (x_t, y_t, 1) of the identity grid (row-major pixels)
  in `params`' dtype."""
  _checks.no_options(name, kw)
  _check_params(name, params, n)
  base = grids.base_grid(shape, align_corners=align_corners)
  return base.reshape(-1, 3).T.astype(params.dtype)


def affine_coords(params, shape, *, align_corners, **kw):
  base = _base_rows("affine", params, 6, shape, align_corners, kw)
  return (jnp.dot(params[:, 0:3], base, precision=_HI),
          jnp.dot(params[:, 3:6], base, precision=_HI))


def attention_coords(params, shape, *, align_corners, **kw):
  base = _base_rows("attention", params, 3, shape, align_corners, kw)
  s, tx, ty = params[:, 0:1], params[:, 1:2], params[:, 2:3]
  return (jnp.dot(jnp.concatenate([s, tx], 1), base[0::2], precision=_HI),
          jnp.dot(jnp.concatenate([s, ty], 1), base[1:], precision=_HI))


def projective_coords(params, shape, *, align_corners, **kw):
  base = _base_rows("projective", params, 8, shape, align_corners, kw)
  m = jnp.concatenate([params, jnp.ones_like(params[:, :1])], 1)
  u, v, w = (jnp.dot(m[:, 3 * r:3 * r + 3], base, precision=_HI)
             for r in range(3))
  return grids.dehomogenize(u, v, w)


def tps_coords(params, shape, *, align_corners, num_points=16,
                regularization=0.0):
  grids.tps_source_points(num_points)  # validates K
  _check_params("tps", params, 2 * num_points)
  basis = grids.tps_basis(num_points, shape, regularization=regularization,
                          align_corners=align_corners).astype(params.dtype)
  points = params.reshape(params.shape[0], num_points, 2)
  return tuple(jnp.dot(points[:, :, c], basis.T, precision=_HI)
               for c in range(2))
