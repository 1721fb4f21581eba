"""Grid generators T_theta(G): where each output pixel samples the input.

Conventions (shared by the whole package, and equal to PyTorch's
`torch.nn.functional.affine_grid`):

* A 2D grid is `[h, w, 2]`; `grid[i, j] = (x, y)` is the SOURCE position
  (in the input image) of output pixel row `i`, column `j`. A 3D grid is
  `[d, h, w, 3]` of (x, y, z). The mapping goes from output to input.
* Coordinates are normalised: -1 and +1 are the edges of the image. With
  `align_corners=True` they are the centres of the corner pixels (the paper's
  `linspace(-1, 1, n)` target grid); with `align_corners=False` they are the
  outer edges of the corner pixels, so pixel `i` of `n` has centre
  `(2 i + 1) / n - 1`.
* Every function builds the grid of ONE example; batch with `jax.vmap`, e.g.
  `jax.vmap(affine_grid, in_axes=(0, None))(thetas, (h, w))`. A batch (or a
  torch-style `(N, C, H, W)` size) is refused with a message naming that call.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import _checks

# Where `projective_grid` sends an output point whose homogeneous coordinate
# w is <= _W_EPS (a point "behind the camera", or at infinity): a fixed
# position well outside the image in normalised units, so that zero padding
# reads zeros there. Its gradient w.r.t. the transform is exactly zero.
PROJECTIVE_OUTSIDE = -4.0
_W_EPS = 1e-6


def to_pixel(coord, size, *, align_corners: bool):
  """Normalised coordinate -> pixel index coordinate (pixel i's centre is i).

  The one place of the formula (torch's `grid_sampler_unnormalize`): the
  sampler, `normalized_to_pixel` and the fused batched sampler use it.

  Args:
    coord: normalised coordinates along one axis (number or array), or
      `[..., k]` with `size` broadcasting over the last axis.
    size: pixels along that axis (number, or an array broadcastable with
      `coord`).
    align_corners: normalisation convention (see the module docstring).

  Returns:
    Pixel coordinates, the broadcast shape of `coord` and `size`.
  """
  if align_corners:
    return (coord + 1.0) / 2.0 * (size - 1)
  return ((coord + 1.0) * size - 1.0) / 2.0


def to_normalized(pix, size, *, align_corners: bool):
  """Pixel index coordinate -> normalised coordinate: `to_pixel`'s inverse.

  Same arguments as `to_pixel` (`pix` in pixel units); with
  `align_corners=True` an axis of one pixel maps to 0.
  """
  if align_corners:
    denom = np.maximum(np.asarray(size) - 1, 1)
    return jnp.where(np.asarray(size) > 1, 2.0 * pix / denom - 1.0, 0.0)
  return (2.0 * pix + 1.0) / size - 1.0


def _normalized_centres(n: int, align_corners: bool) -> np.ndarray:
  """Normalised coordinates of the centres of `n` pixels (torch's convention)."""
  if n == 1:
    return np.zeros((1,), np.float64)
  centres = np.linspace(-1.0, 1.0, n)
  if not align_corners:
    centres = centres * (n - 1) / n
  return centres


def base_grid(shape, *, align_corners: bool = False) -> jnp.ndarray:
  """The identity grid in homogeneous coordinates.

  Args:
    shape: `(h, w)` for a 2D grid or `(d, h, w)` for a 3D grid.
    align_corners: normalisation convention (see module docstring).

  Returns:
    float32 `[h, w, 3]` of (x, y, 1) or `[d, h, w, 4]` of (x, y, z, 1).
  """
  if len(shape) not in (2, 3):
    hint = (_checks.spatial_size_hint(shape, len(shape) - 2)
            if len(shape) in (4, 5) else "")
    raise ValueError(
        f"`shape` must be (h, w) or (d, h, w), got {shape!r}.{hint}")
  shape = _checks.check_output_shape("shape", shape, len(shape))
  axes = [_normalized_centres(n, align_corners) for n in shape]
  # meshgrid in (…, y, x) order; coordinates are stored as (x, y[, z]).
  mesh = np.meshgrid(*axes, indexing="ij")
  coords = list(mesh[::-1]) + [np.ones(shape)]
  return jnp.asarray(np.stack(coords, axis=-1), jnp.float32)


def _as_float(x) -> jnp.ndarray:
  """`x` as a jax array; integer and bool inputs become float32."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return x


def _vmap_call(fn: str, arg: str, shape, ndim: int) -> str:
  """`jax.vmap(stn_jax.<fn>, in_axes=(0, None))(<arg>, <shape>)` as text."""
  size = _SPATIAL_NAMES[ndim]
  try:
    if len(shape) == ndim:
      size = repr(tuple(int(s) for s in shape))
  except (TypeError, ValueError):
    pass
  return f"jax.vmap(stn_jax.{fn}, in_axes=(0, None))({arg}, {size})"


_SPATIAL_NAMES = {2: "(h, w)", 3: "(d, h, w)"}


def affine_grid(theta, shape, *, align_corners: bool = False) -> jnp.ndarray:
  """Affine grid: source (x, y) = theta @ (x_t, y_t, 1).

  Equals `torch.nn.functional.affine_grid(theta[None], (1, C, h, w),
  align_corners)[0]`. One example: for a batch `thetas [B, 2, 3]`, use
  `jax.vmap(stn_jax.affine_grid, in_axes=(0, None))(thetas, (h, w))`
  (-> `[B, h, w, 2]`).

  Args:
    theta: `[2, 3]` affine matrix in normalised coordinates, mapping output
      (target) points to input (source) points.
    shape: `(h, w)` of the output grid.
    align_corners: normalisation convention (see module docstring).

  Returns:
    `[h, w, 2]` grid of (x, y) source coordinates, dtype of theta (float32 for
    integer input).
  """
  theta = _as_float(theta)
  _checks.check_shape("theta", theta, (2, 3), "(a 2x3 affine matrix)",
                      batch_call=_vmap_call("affine_grid", "thetas", shape, 2))
  shape = _checks.check_output_shape("shape", shape, 2)
  base = base_grid(shape, align_corners=align_corners).astype(theta.dtype)
  return _apply_matrix(base, theta)


def _apply_matrix(base, matrix):
  """`base [..., k] @ matrix[c, k].T -> [..., c]` as written-out multiply-adds.

  A k <= 4 contraction: as elementwise work XLA fuses it with the sampler's
  coordinate arithmetic, where a dot (batched under vmap) would run as a
  separate library call with a transposed output
  (benchmarks/results/design_notes.md#grids-multiply-adds).
  """
  rows = []
  for c in range(matrix.shape[0]):
    acc = base[..., 0] * matrix[c, 0]
    for k in range(1, matrix.shape[1]):
      acc = acc + base[..., k] * matrix[c, k]
    rows.append(acc)
  return jnp.stack(rows, axis=-1)


def affine_grid_3d(theta, shape, *, align_corners: bool = False) -> jnp.ndarray:
  """3D affine grid: source (x, y, z) = theta @ (x_t, y_t, z_t, 1).

  Equals `torch.nn.functional.affine_grid(theta[None], (1, C, d, h, w),
  align_corners)[0]`. One example: batch with
  `jax.vmap(stn_jax.affine_grid_3d, in_axes=(0, None))(thetas, (d, h, w))`.

  Args:
    theta: `[3, 4]` affine matrix in normalised coordinates (output -> input).
    shape: `(d, h, w)` of the output grid.
    align_corners: normalisation convention (see module docstring).

  Returns:
    `[d, h, w, 3]` grid of (x, y, z) source coordinates.
  """
  theta = _as_float(theta)
  _checks.check_shape("theta", theta, (3, 4), "(a 3x4 affine matrix)",
                      batch_call=_vmap_call("affine_grid_3d", "thetas", shape,
                                            3))
  shape = _checks.check_output_shape("shape", shape, 3)
  base = base_grid(shape, align_corners=align_corners).astype(theta.dtype)
  return _apply_matrix(base, theta)


def attention_params_to_affine(params) -> jnp.ndarray:
  """(s, tx, ty) `[3]` -> the affine `[2, 3]` [[s, 0, tx], [0, s, ty]].

  One example; batch with `jax.vmap`.
  """
  params = _as_float(params)
  _checks.check_shape(
      "params", params, (3,), "(scale, tx, ty)",
      batch_call="jax.vmap(stn_jax.grids.attention_params_to_affine)(params)")
  s, tx, ty = params[0], params[1], params[2]
  zero = jnp.zeros_like(s)
  return jnp.stack([jnp.stack([s, zero, tx]), jnp.stack([zero, s, ty])])


def attention_grid(params, shape, *, align_corners: bool = False) -> jnp.ndarray:
  """The paper's attention transform: isotropic scale plus translation.

  Args:
    params: `[3]` = (s, tx, ty); theta = [[s, 0, tx], [0, s, ty]].
    shape: `(h, w)` of the output grid.
    align_corners: normalisation convention (see module docstring).

  Returns:
    `[h, w, 2]` grid of (x, y) source coordinates. One example; batch with
    `jax.vmap(stn_jax.attention_grid, in_axes=(0, None))(params, (h, w))`.
  """
  params = _as_float(params)
  _checks.check_shape("params", params, (3,), "(scale, tx, ty)",
                      batch_call=_vmap_call("attention_grid", "params", shape,
                                            2))
  return affine_grid(attention_params_to_affine(params), shape,
                     align_corners=align_corners)


def projective_matrix(h, *, name: str = "h",
                      batch_call: str | None = None) -> jnp.ndarray:
  """Returns the `[3, 3]` matrix of `h` given as `[3, 3]` or `[8]` (h33 = 1).

  Args:
    h: a homography, `[3, 3]` or `[8]` (its first 8 row-major entries).
    name: the argument's name in the error message.
    batch_call: the `jax.vmap` call suggested when `h` looks like a batch
      (default: one of `projective_matrix` itself).

  Returns:
    `[3, 3]` matrix, dtype of `h` (float32 for integer input).
  """
  h = _as_float(h)
  if h.shape == (8,):
    return jnp.concatenate([h, jnp.ones((1,), h.dtype)]).reshape(3, 3)
  if h.shape == (3, 3):
    return h
  batched = (_checks.looks_batched(h.shape, (8,))
             or _checks.looks_batched(h.shape, (3, 3)))
  hint = _checks.batch_hint(
      batch_call or f"jax.vmap(stn_jax.grids.projective_matrix)({name})"
  ) if batched else ""
  raise ValueError(
      f"`{name}` must have shape [3, 3] (a homography) or [8] (its first 8 "
      f"row-major entries, h33 = 1), got shape {list(h.shape)}.{hint}")


def projective_grid(h, shape, *, align_corners: bool = False) -> jnp.ndarray:
  """Plane projective grid: (x, y) = (u / w, v / w), (u, v, w) = H (x_t, y_t, 1).

  Output points whose homogeneous coordinate w is <= 1e-6 (points at or behind
  the horizon of the transform) map to `(PROJECTIVE_OUTSIDE,
  PROJECTIVE_OUTSIDE)` = (-4, -4), outside the image, with zero gradient; no
  value or gradient is ever NaN or inf for finite `h`. (With zero padding they
  read 0; with border or reflection padding, whatever those modes give at
  (-4, -4).)

  Args:
    h: `[3, 3]` homography or `[8]` = its first 8 row-major entries (h33 = 1),
      in normalised coordinates, output -> input.
    shape: `(h, w)` of the output grid.
    align_corners: normalisation convention (see module docstring).

  Returns:
    `[h, w, 2]` grid of (x, y) source coordinates. One example; batch with
    `jax.vmap(stn_jax.projective_grid, in_axes=(0, None))(hs, (h, w))`.
  """
  matrix = projective_matrix(
      h, batch_call=_vmap_call("projective_grid", "hs", shape, 2))
  shape = _checks.check_output_shape("shape", shape, 2)
  base = base_grid(shape, align_corners=align_corners).astype(matrix.dtype)
  hom = _apply_matrix(base, matrix)
  return jnp.stack(dehomogenize(hom[..., 0], hom[..., 1], hom[..., 2]),
                   axis=-1)


def dehomogenize(u, v, w):
  """`(u / w, v / w)` of homogeneous coordinates, any (equal) shapes.

  Where `w <= 1e-6` (at or behind the horizon) both are `PROJECTIVE_OUTSIDE`
  with zero gradient; nothing is NaN or inf for finite inputs.
  """
  ok = w > _W_EPS
  # Double `where`: the unselected branch must not divide by ~0, or its
  # (discarded) inf would still poison the gradient.
  safe_w = jnp.where(ok, w, jnp.ones_like(w))
  outside = jnp.full_like(w, PROJECTIVE_OUTSIDE)
  # x and y divided one by one: broadcasting w [..., 1] over [..., 2] makes
  # w's gradient a reduction over that size-2 axis, which XLA:CPU runs as a
  # slow library call (benchmarks/results/design_notes.md#grids-dehomogenize).
  return (jnp.where(ok, u / safe_w, outside),
          jnp.where(ok, v / safe_w, outside))


# ----------------------------------------------------------------- thin plate


def tps_source_points(num_points: int) -> np.ndarray:
  """The default TPS source points: a regular sqrt(K) x sqrt(K) lattice.

  Args:
    num_points: K, a perfect square >= 4.

  Returns:
    float32 numpy `[K, 2]` of (x, y) over [-1, 1]^2, row-major (y outer, x
    inner): point k sits at column `k % n`, row `k // n`, n = sqrt(K); point 0
    is (-1, -1), point K-1 is (1, 1).
  """
  n = int(round(np.sqrt(num_points))) if num_points > 0 else 0
  if (not isinstance(num_points, (int, np.integer)) or n * n != num_points
      or n < 2):
    raise ValueError(
        "`num_points` (K) must be a perfect square >= 4 for the default "
        f"sqrt(K) x sqrt(K) lattice of TPS source points, got {num_points!r}.")
  axis = np.linspace(-1.0, 1.0, n)
  ys, xs = np.meshgrid(axis, axis, indexing="ij")
  return np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)


def _tps_kernel(d2, xp):
  """U(r) = r^2 log r^2, with U(0) = 0; `d2` holds squared distances."""
  safe = xp.where(d2 > 0, d2, 1.0)
  return xp.where(d2 > 0, d2 * xp.log(safe), 0.0)


def _sq_dists(a, b):
  """`[N, M]` squared distances between points `a` `[N, 2]` and `b` `[M, 2]`.

  Per coordinate, not as a sum over a trailing axis of 2: XLA's CPU code for
  that reduction is several times slower under vmap
  (benchmarks/results/design_notes.md#grids-tps-traced-source).
  """
  dx = a[:, 0:1] - b[:, 0][None, :]
  dy = a[:, 1:2] - b[:, 1][None, :]
  return dx * dx + dy * dy


def _tps_system(source, regularization, xp):
  """The `[K + 3, K + 3]` TPS matrix L = [[U(P, P) + lambda I, Q], [Q^T, 0]]."""
  k = source.shape[0]
  ones = xp.ones((k, 1), source.dtype)
  q = xp.concatenate([ones, source], axis=1)
  top = xp.concatenate(
      [_tps_kernel(_sq_dists(source, source), xp)
       + regularization * xp.eye(k, dtype=source.dtype), q], 1)
  bottom = xp.concatenate([q.T, xp.zeros((3, 3), source.dtype)], axis=1)
  return xp.concatenate([top, bottom], axis=0)


def _tps_features(targets, source, xp):
  """`[N, K + 3]` rows [U(|t - p_k|) for k | 1 | t] of the N target points."""
  return xp.concatenate([_tps_kernel(_sq_dists(targets, source), xp),
                         xp.ones((targets.shape[0], 1), targets.dtype),
                         targets], axis=1)


def _tps_basis(targets, source, regularization, xp):
  """`[N, K]` matrix B with grid = B @ control_points for N target points.

  The TPS f(p) = sum_k w_k U(|p - p_k|) + a0 + a1 x + a2 y solves
  L [w; a] = [c; 0] with L = [[U(P, P) + lambda I, Q], [Q^T, 0]], Q = [1 P].
  So [w; a] = inv(L)[:, :K] c and f(targets) = [U(T, P) | 1 | T] inv(L)[:, :K] c,
  a matrix that depends on the source points only, never on the control points.
  """
  k = source.shape[0]
  # Solve for the first K columns of inv(L): L X = [I_K; 0].
  rhs = xp.concatenate([xp.eye(k), xp.zeros((3, k))], axis=0).astype(
      source.dtype)
  coeff_map = xp.linalg.solve(_tps_system(source, regularization, xp), rhs)
  return _tps_features(targets, source, xp) @ coeff_map


def _tps_grid_traced(control_points, source, targets, regularization):
  """`[N, 2]` TPS values at `targets` for traced source points.

  Solves L [w; a] = [c; 0] for the two coordinate columns only (not the
  `[K + 3, K]` basis): per example that is 2 right-hand sides instead of K
  and no `[N, K + 3] @ [K + 3, K]` product.
  """
  rhs = jnp.concatenate(
      [control_points, jnp.zeros((3, 2), control_points.dtype)], axis=0)
  coeffs = jnp.linalg.solve(_tps_system(source, regularization, jnp), rhs)
  k = source.shape[0]
  weights, affine = coeffs[:k], coeffs[k:]

  # The kernel part one source point at a time, summed in a loop: no
  # [N, K] kernel matrix is written, and each logarithm is taken once for
  # both coordinates, 2x faster than the kernel matrix and a product
  # (benchmarks/results/design_notes.md#grids-tps-traced-source).
  def add_point(i, bent):
    d2 = ((targets[:, 0] - source[i, 0]) ** 2
          + (targets[:, 1] - source[i, 1]) ** 2)
    u = _tps_kernel(d2, jnp)
    return bent[0] + u * weights[i, 0], bent[1] + u * weights[i, 1]

  zero = jnp.zeros(targets.shape[:1], targets.dtype)
  bent_x, bent_y = jax.lax.fori_loop(0, k, add_point, (zero, zero))
  return jnp.stack(
      [bent_x + affine[0, 0] + targets[:, 0] * affine[1, 0]
       + targets[:, 1] * affine[2, 0],
       bent_y + affine[0, 1] + targets[:, 0] * affine[1, 1]
       + targets[:, 1] * affine[2, 1]], axis=-1)


@functools.lru_cache(maxsize=64)
def _tps_basis_cached(shape, source_bytes, num_points, regularization,
                      align_corners):
  """The TPS basis for concrete source points, in float64, computed once."""
  source = np.frombuffer(source_bytes, np.float64).reshape(num_points, 2)
  # Exact float64 pixel centres, not float32-rounded ones.
  axes = [_normalized_centres(n, align_corners) for n in shape]
  ys, xs = np.meshgrid(*axes, indexing="ij")
  targets = np.stack([xs.ravel(), ys.ravel()], axis=-1)
  basis = _tps_basis(targets, source, regularization, np)
  return np.asarray(basis, np.float32)


def _check_tps_args(k: int, source_points, regularization):
  """Checked `(source_points, regularization)`; default: the lattice."""
  try:
    regularization = float(regularization)
  except TypeError as e:
    raise ValueError("`regularization` must be a Python float >= 0, got "
                     f"{regularization!r}.") from e
  if not regularization >= 0:
    raise ValueError(
        f"`regularization` must be >= 0, got {regularization!r}.")
  if source_points is None:
    return tps_source_points(k), regularization
  if np.shape(source_points) != (k, 2):
    raise ValueError(
        f"`source_points` must have shape [{k}, 2] like `control_points`, "
        f"got shape {list(np.shape(source_points))}.")
  return source_points, regularization


def _target_points(shape, align_corners: bool) -> jnp.ndarray:
  """`[h * w, 2]` (x, y) output pixel centres, row-major."""
  return base_grid(shape, align_corners=align_corners)[..., :2].reshape(-1, 2)


def tps_grid(control_points, shape, *, source_points=None,
             regularization: float = 0.0,
             align_corners: bool = False) -> jnp.ndarray:
  """Thin-plate-spline grid (kernel U(r) = r^2 log r^2, plus an affine part).

  The spline maps each source point p_k (a position in the OUTPUT, normalised
  coordinates) to its control point c_k (a position in the INPUT). With
  `regularization=0` the warp passes exactly through every control point, and
  control points equal to the source points give the identity grid.

  The (K+3)x(K+3) system depends only on the source points, so for concrete
  (non-traced) source points the whole linear map control points -> grid is a
  `[h*w, K]` matrix computed once in float64 and cached; a call is then one
  `[h*w, K] @ [K, 2]` product, and a vmapped batch holds no per-example kernel
  values at all. Traced source points (a spline per example, e.g. the "e"
  distortion's moved lattice) are solved per call, for the two coordinate
  columns only.

  Args:
    control_points: `[K, 2]` of (x, y) input positions where the source points
      land.
    shape: `(h, w)` of the output grid.
    source_points: `[K, 2]` of (x, y) output positions; default
      `tps_source_points(K)`, a regular sqrt(K) x sqrt(K) lattice over
      [-1, 1]^2 ordered row-major (y outer, x inner).
    regularization: Python float lambda >= 0 added to the diagonal of the
      kernel matrix [U(|p_i - p_j|)] with U(r) = r^2 log r^2 (smoothing; 0
      interpolates exactly). Not differentiable: it shapes the cached system.
    align_corners: normalisation convention of the output grid.

  Returns:
    `[h, w, 2]` grid of (x, y) source coordinates. One example; batch with
    `jax.vmap(stn_jax.tps_grid, in_axes=(0, None))(control_points, (h, w))`
    for control points `[B, K, 2]`.
  """
  control_points = _as_float(control_points)
  _checks.check_shape("control_points", control_points, (None, 2),
                      "(K points of (x, y))",
                      batch_call=_vmap_call("tps_grid", "control_points",
                                            shape, 2))
  shape = _checks.check_output_shape("shape", shape, 2)
  source_points, regularization = _check_tps_args(
      control_points.shape[0], source_points, regularization)
  if isinstance(source_points, jax.core.Tracer):
    grid = _tps_grid_traced(
        control_points, _as_float(source_points).astype(control_points.dtype),
        _target_points(shape, align_corners).astype(control_points.dtype),
        regularization)
    return grid.reshape(shape + (2,))
  basis = tps_basis(control_points.shape[0], shape,
                    source_points=source_points,
                    regularization=regularization,
                    align_corners=align_corners)
  # As [2, P] = control_points^T basis^T, then transposed: under vmap the
  # dot's output is [B, 2, P] and XLA folds the transpose into the
  # sampler's reads, where [P, B, 2] (basis @ control_points) needs a
  # separate transpose
  # (benchmarks/results/design_notes.md#grids-tps-contraction).
  grid = jnp.einsum("kc,pk->cp", control_points,
                    basis.astype(control_points.dtype),
                    precision=jax.lax.Precision.HIGHEST)
  return grid.T.reshape(shape + (2,))


def tps_basis(num_points: int, shape, *, source_points=None,
              regularization: float = 0.0,
              align_corners: bool = False) -> jnp.ndarray:
  """The `[h * w, K]` matrix B of `tps_grid`: grid = B @ control_points.

  Row `i * w + j` belongs to output pixel (row i, column j). Arguments as in
  `tps_grid` (K = `num_points`). float32, cached for concrete source points.
  """
  k = num_points
  shape = _checks.check_output_shape("shape", shape, 2)
  source_points, regularization = _check_tps_args(k, source_points,
                                                  regularization)
  if isinstance(source_points, jax.core.Tracer):
    source = _as_float(source_points)
    basis = _tps_basis(_target_points(shape, align_corners).astype(
        source.dtype), source, regularization, jnp)
  else:
    source = np.asarray(source_points, np.float64)
    basis = jnp.asarray(_tps_basis_cached(shape, source.tobytes(), k,
                                          regularization, align_corners))
  return basis
