"""Transform families by name, coordinate conversion, and transform algebra.

A model or config picks a transform family by name from `TRANSFORMS`
("affine", "attention", "projective", "tps"); each family's parameters travel
as one FLAT float vector (what a localisation network regresses):

| kind         | num_params | flat layout                                    |
|--------------|------------|------------------------------------------------|
| "affine"     | 6          | the 2x3 matrix, row-major                      |
| "attention"  | 3          | (s, tx, ty)                                    |
| "projective" | 8          | the 3x3 homography's first 8 entries, h33 = 1  |
| "tps"        | 2K         | the `[K, 2]` control points, row-major (x, y)  |

"tps" takes the keyword `num_points` (K, a perfect square; default 16).

Every function handles ONE example (the coordinate conversions accept any
leading axes); batch the others with `jax.vmap`. A batch passed where one
example is expected is refused with a message naming the `jax.vmap` call.
"""

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks
from stn_jax import batch_coords
from stn_jax import grids

_HI = jax.lax.Precision.HIGHEST


# ---------------------------------------------------------------- coordinates


def _sizes_xyz(coords, shape):
  """Image sizes along (x, y[, z]) for coords `[..., 2|3]` and `shape`."""
  coords = jnp.asarray(coords)
  ndim = len(shape)
  if ndim not in (2, 3):
    raise ValueError(f"`shape` must be (h, w) or (d, h, w), got {shape!r}.")
  shape = _checks.check_output_shape("shape", shape, ndim)
  if coords.ndim < 1 or coords.shape[-1] != ndim:
    raise ValueError(
        f"`coords` must have shape [..., {ndim}] for a shape of {ndim} sizes, "
        f"got shape {list(coords.shape)}.")
  return np.asarray(shape[::-1], np.float32)


def pixel_to_normalized(coords, shape, *, align_corners: bool = False):
  """Pixel coordinates -> normalised coordinates (see `stn_jax.grids`).

  Args:
    coords: `[..., 2]` of (x, y) for `shape=(h, w)`, or `[..., 3]` of (x, y, z)
      for `shape=(d, h, w)`; pixel index units (pixel i's centre is i).
    shape: the image size the coordinates refer to.
    align_corners: normalisation convention.

  Returns:
    Normalised coordinates, same shape as `coords` (float). A size-1 axis maps
    to 0.
  """
  sizes = _sizes_xyz(coords, shape)
  coords = grids._as_float(coords)
  return grids.to_normalized(coords, sizes,
                             align_corners=align_corners).astype(coords.dtype)


def normalized_to_pixel(coords, shape, *, align_corners: bool = False):
  """Normalised coordinates -> pixel coordinates (torch's `unnormalize`).

  Args:
    coords: `[..., 2]` (x, y) for `shape=(h, w)` or `[..., 3]` (x, y, z) for
      `shape=(d, h, w)`, normalised.
    shape: the image size.
    align_corners: normalisation convention.

  Returns:
    Pixel index coordinates, same shape as `coords`.
  """
  sizes = _sizes_xyz(coords, shape)
  coords = grids._as_float(coords)
  return grids.to_pixel(coords, sizes,
                        align_corners=align_corners).astype(coords.dtype)


# -------------------------------------------------------------------- algebra


def _affine_to_3x3(theta):
  return jnp.concatenate([theta, jnp.array([[0.0, 0.0, 1.0]], theta.dtype)])


def compose_affine(a, b):
  """The affine map "apply `b`, then `a`": x -> a(b(x)).

  Grids map output points to input points, so warping twice,
  `sample(sample(img, affine_grid(b)), affine_grid(a))`, reads `img` at
  b(a(p)): it equals one warp with `affine_grid(compose_affine(b, a))`.

  Args:
    a, b: `[2, 3]` affine matrices.

  Returns:
    `[2, 3]` matrix of the composition.
  """
  a, b = grids._as_float(a), grids._as_float(b)
  call = "jax.vmap(stn_jax.compose_affine)(a, b)"
  _checks.check_shape("a", a, (2, 3), batch_call=call)
  _checks.check_shape("b", b, (2, 3), batch_call=call)
  return jnp.matmul(_affine_to_3x3(a), _affine_to_3x3(b), precision=_HI)[:2]


def invert_affine(theta):
  """Inverse of an affine map.

  Args:
    theta: `[2, 3]` invertible affine matrix.

  Returns:
    `[2, 3]` matrix m with `compose_affine(m, theta)` = identity.
  """
  theta = grids._as_float(theta)
  _checks.check_shape("theta", theta, (2, 3),
                      batch_call="jax.vmap(stn_jax.invert_affine)(thetas)")
  linear_inv = jnp.linalg.inv(theta[:, :2])
  shift = -jnp.matmul(linear_inv, theta[:, 2], precision=_HI)
  return jnp.concatenate([linear_inv, shift[:, None]], axis=1)


def _normalize_h33(h):
  return h / h[2, 2]


def compose_projective(h1, h2):
  """The projective map "apply `h2`, then `h1`" (see `compose_affine` for
  the order when warping twice).

  Args:
    h1, h2: homographies, `[3, 3]` or `[8]` (h33 = 1).

  Returns:
    `[3, 3]` homography scaled so that its h33 is 1 (h33 must not be 0).
  """
  call = "jax.vmap(stn_jax.compose_projective)(h1, h2)"
  m1 = grids.projective_matrix(h1, name="h1", batch_call=call)
  m2 = grids.projective_matrix(h2, name="h2", batch_call=call)
  return _normalize_h33(jnp.matmul(m1, m2, precision=_HI))


def invert_projective(h):
  """Inverse of a homography.

  Args:
    h: `[3, 3]` or `[8]` invertible homography.

  Returns:
    `[3, 3]` inverse scaled so that its h33 is 1 (h33 must not be 0).
  """
  return _normalize_h33(jnp.linalg.inv(grids.projective_matrix(
      h, batch_call="jax.vmap(stn_jax.invert_projective)(hs)")))


def projective_from_points(src, dst):
  """The homography that maps four points onto four others (direct solve).

  Args:
    src: `[4, 2]` (x, y) points, no three collinear.
    dst: `[4, 2]` their images.

  Returns:
    `[3, 3]` H with h33 = 1 and (H [x, y, 1]) ~ [u, v, 1] for each pair.
  """
  src, dst = grids._as_float(src), grids._as_float(dst)
  call = "jax.vmap(stn_jax.projective_from_points)(src, dst)"
  _checks.check_shape("src", src, (4, 2), "(4 points of (x, y))",
                      batch_call=call)
  _checks.check_shape("dst", dst, (4, 2), "(4 points of (x, y))",
                      batch_call=call)
  x, y = src[:, 0], src[:, 1]
  u, v = dst[:, 0], dst[:, 1]
  one, zero = jnp.ones_like(x), jnp.zeros_like(x)
  rows_u = jnp.stack([x, y, one, zero, zero, zero, -x * u, -y * u], axis=1)
  rows_v = jnp.stack([zero, zero, zero, x, y, one, -x * v, -y * v], axis=1)
  system = jnp.concatenate([rows_u, rows_v], axis=0)
  rhs = jnp.concatenate([u, v])
  return grids.projective_matrix(jnp.linalg.solve(system, rhs))


# ------------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class Transform:
  """A transform family: parameter count, identity, and flat-params grid.

  Attributes:
    name: registry name.
    num_params: `(**kw) -> int`.
    identity_params: `(**kw) -> float32 [num_params]`.
    grid: `(flat_params, shape, *, align_corners, **kw) -> [h, w, 2]`.
    batch_coords: optional fast batched path, `(params [B, num_params],
      (h, w), *, align_corners, **kw) -> (x, y)` each `[B, h * w]`, the grids'
      x and y for the whole batch (`stn_jax.batch_coords`); None: the models'
      fused warp (`stn_jax.cpu.warp.warp`) falls back to the vmapped `grid`
      and `sample`.
  """
  name: str
  num_params: Callable[..., int]
  identity_params: Callable[..., jnp.ndarray]
  grid: Callable[..., jnp.ndarray]
  batch_coords: Optional[Callable[..., tuple]] = None


_no_kwargs = _checks.no_options


def _fixed(name, n, identity):
  def num(**kw):
    _no_kwargs(name, kw)
    return n

  def ident(**kw):
    _no_kwargs(name, kw)
    return jnp.asarray(identity, jnp.float32)

  return num, ident


def _flat(name, params, n, shape=None):
  """`params` as a float `[n]` vector, or a `ValueError` naming `params`."""
  params = grids._as_float(params)
  size = "(h, w)"
  if shape is not None and np.ndim(shape) == 1 and len(shape) == 2:
    size = repr(tuple(shape))
  _checks.check_shape(
      "params", params, (n,), f"(flat parameters of transform {name!r})",
      batch_call=(f"jax.vmap(lambda p: stn_jax.make_grid({name!r}, p, "
                  f"{size}))(params)"))
  return params


def _affine_grid(params, shape, *, align_corners=False, **kw):
  _no_kwargs("affine", kw)
  return grids.affine_grid(_flat("affine", params, 6, shape).reshape(2, 3), shape,
                           align_corners=align_corners)


def _attention_grid(params, shape, *, align_corners=False, **kw):
  _no_kwargs("attention", kw)
  return grids.attention_grid(_flat("attention", params, 3, shape), shape,
                              align_corners=align_corners)


def _projective_grid(params, shape, *, align_corners=False, **kw):
  _no_kwargs("projective", kw)
  return grids.projective_grid(_flat("projective", params, 8, shape), shape,
                               align_corners=align_corners)


def _tps_num_params(*, num_points=16, regularization=0.0):
  del regularization  # Smooths the grid; the parameters stay the same.
  grids.tps_source_points(num_points)  # validates K
  return 2 * num_points


def _tps_identity(*, num_points=16, regularization=0.0):
  del regularization  # The identity interpolates exactly at any lambda.
  return jnp.asarray(grids.tps_source_points(num_points).ravel())


def _tps_grid(params, shape, *, align_corners=False, num_points=16,
              regularization=0.0):
  k2 = _tps_num_params(num_points=num_points)
  points = _flat("tps", params, k2, shape).reshape(num_points, 2)
  return grids.tps_grid(points, shape, regularization=regularization,
                        align_corners=align_corners)


TRANSFORMS: dict[str, Transform] = {
    "affine": Transform("affine", *_fixed("affine", 6, [1, 0, 0, 0, 1, 0]),
                        _affine_grid, batch_coords.affine_coords),
    "attention": Transform("attention", *_fixed("attention", 3, [1, 0, 0]),
                           _attention_grid, batch_coords.attention_coords),
    "projective": Transform(
        "projective", *_fixed("projective", 8, [1, 0, 0, 0, 1, 0, 0, 0]),
        _projective_grid, batch_coords.projective_coords),
    "tps": Transform("tps", _tps_num_params, _tps_identity, _tps_grid,
                     batch_coords.tps_coords),
}


def register_transform(name: str, *, num_params, identity: Callable,
                       grid: Callable,
                       batch_coords: Optional[Callable] = None) -> Transform:
  """Adds a transform family to `TRANSFORMS`; returns its entry.

  After this call the family works wherever a built-in one does:
  `make_grid(name, ...)`, `num_params`, `identity_params`, the models'
  transformers (`--config.model.transform=<name>`; the fused warp falls back
  to `grid` + `sample` without `batch_coords`), sweeps and figures.

  Args:
    name: a new family name (a non-empty string; built-in and registered
      names are refused).
    num_params: P, the length of the flat parameter vector: an int, or a
      callable `(**options) -> int`.
    identity: `(**options) -> [P]` flat parameters of the identity transform
      (a transformer's regression layer starts there).
    grid: `(params [P], shape (h, w), *, align_corners, **options) ->
      [h, w, 2]` normalised (x, y) source coordinates of every output pixel
      (one example; see `stn_jax.grids` for the conventions).
    batch_coords: optional fast batched path (see `Transform`).

  Raises:
    ValueError: a bad or taken name, or a `num_params` that is not a positive
      int or callable.
  """
  if not isinstance(name, str) or not name:
    raise ValueError(f"`name` must be a non-empty string, got {name!r}.")
  if name in TRANSFORMS:
    raise ValueError(f"`name` {name!r} is already a transform family "
                     f"({sorted(TRANSFORMS)}).")
  if callable(num_params):
    count = num_params
  elif isinstance(num_params, (int, np.integer)) and not isinstance(
      num_params, bool) and num_params > 0:
    n = int(num_params)
    count = lambda **kw: (_no_kwargs(name, kw), n)[1]
  else:
    raise ValueError(f"`num_params` must be a positive int or a callable, "
                     f"got {num_params!r}.")
  for arg, fn in (("identity", identity), ("grid", grid)):
    if not callable(fn):
      raise ValueError(f"`{arg}` must be callable, got {fn!r}.")

  def checked_identity(**kw):
    params = jnp.asarray(identity(**kw), jnp.float32)
    _checks.check_shape("identity(...)", params, (count(**kw),),
                        f"(the identity of transform {name!r})")
    return params

  def checked_grid(params, shape, *, align_corners=False, **kw):
    params = _flat(name, params, count(**kw), shape)
    out = jnp.asarray(grid(params, tuple(shape), align_corners=align_corners,
                           **kw))
    _checks.check_shape("grid(...)", out, tuple(shape) + (2,),
                        f"(the grid of transform {name!r})")
    return out

  entry = Transform(name, count, checked_identity, checked_grid, batch_coords)
  TRANSFORMS[name] = entry
  return entry


def get_transform(kind: str) -> Transform:
  """Returns the registered transform family `kind` (see module docstring)."""
  _checks.check_choice("kind", kind, tuple(TRANSFORMS))
  return TRANSFORMS[kind]


def num_params(kind: str, **kw) -> int:
  """Number of flat parameters of transform `kind` (e.g. tps: 2 * num_points)."""
  return get_transform(kind).num_params(**kw)


def identity_params(kind: str, **kw) -> jnp.ndarray:
  """Flat float32 `[num_params(kind)]` parameters of the identity transform."""
  return get_transform(kind).identity_params(**kw)


def make_grid(kind: str, params, shape, *, align_corners: bool = False, **kw):
  """The `[h, w, 2]` grid of transform `kind` from its FLAT parameters.

  Args:
    kind: "affine" | "attention" | "projective" | "tps".
    params: `[num_params(kind, **kw)]` flat parameters (module docstring).
    shape: `(h, w)` of the output grid.
    align_corners: normalisation convention.
    **kw: family options (tps: `num_points`, `regularization`).

  Returns:
    `[h, w, 2]` grid of (x, y) source coordinates. One example; for a batch
    `params [B, num_params]`, use
    `jax.vmap(lambda p: stn_jax.make_grid(kind, p, (h, w)))(params)`.
  """
  return get_transform(kind).grid(params, shape, align_corners=align_corners,
                                  **kw)
