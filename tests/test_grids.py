"""Tests for the grid generators in `stn_jax.grids`.

References: torch.nn.functional.affine_grid, numpy direct solves (the
projective corner map, an independent thin-plate-spline solve), and closed
forms (identity, 90-degree rotation).
"""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax
from tests import _reference as ref

ALIGN = (True, False)
METHODS = ("bilinear", "nearest", "bicubic")
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)


# ------------------------------------------------------------------ affine


# torch warns that unit-size grids with align_corners=True put the point at 0
# (since 1.3.0); that is the convention tested here.
@pytest.mark.filterwarnings("ignore:Since version 1.3.0")
@pytest.mark.parametrize("shape,align_corners", list(itertools.product(
    [(4, 7), (7, 4), (1, 5), (5, 1), (3, 3)], ALIGN)))
def test_affine_grid_matches_torch(shape, align_corners):
  rng = np.random.default_rng(0)
  theta = rng.normal(size=(2, 3)).astype(np.float32)
  grid = stn_jax.affine_grid(theta, shape, align_corners=align_corners)
  assert grid.shape == shape + (2,)
  assert grid.dtype == jnp.float32
  np.testing.assert_allclose(
      grid, ref.torch_affine_grid(theta, shape, align_corners=align_corners),
      atol=1e-5)


@pytest.mark.filterwarnings("ignore:Since version 1.3.0")
@pytest.mark.parametrize("shape,align_corners", list(itertools.product(
    [(2, 3, 4), (4, 1, 3)], ALIGN)))
def test_affine_grid_3d_matches_torch(shape, align_corners):
  rng = np.random.default_rng(1)
  theta = rng.normal(size=(3, 4)).astype(np.float32)
  grid = stn_jax.affine_grid_3d(theta, shape, align_corners=align_corners)
  assert grid.shape == shape + (3,)
  np.testing.assert_allclose(
      grid, ref.torch_affine_grid(theta, shape, align_corners=align_corners),
      atol=1e-5)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_identity_affine_grid_is_the_pixel_centres(align_corners):
  grid = stn_jax.affine_grid(IDENTITY, (3, 5), align_corners=align_corners)
  np.testing.assert_allclose(grid, ref.pixel_centres((3, 5), align_corners),
                             atol=1e-6)
  if align_corners:  # the paper's linspace(-1, 1) target grid
    np.testing.assert_allclose(grid[0, :, 0], np.linspace(-1, 1, 5),
                               atol=1e-6)


def test_affine_grid_vmap_matches_torch_batch():
  rng = np.random.default_rng(2)
  thetas = rng.normal(size=(3, 2, 3)).astype(np.float32)
  grids = jax.jit(jax.vmap(functools.partial(
      stn_jax.affine_grid, shape=(4, 6), align_corners=True)))(thetas)
  import torch  # pylint: disable=g-import-not-at-top
  expected = torch.nn.functional.affine_grid(
      torch.tensor(thetas), (3, 1, 4, 6), align_corners=True).numpy()
  np.testing.assert_allclose(grids, expected, atol=1e-5)


def test_attention_grid_is_scale_and_translation():
  params = np.array([0.6, 0.25, -0.3], np.float32)
  theta = np.array([[0.6, 0.0, 0.25], [0.0, 0.6, -0.3]], np.float32)
  for align_corners in ALIGN:
    np.testing.assert_allclose(
        stn_jax.attention_grid(params, (5, 6), align_corners=align_corners),
        ref.torch_affine_grid(theta, (5, 6), align_corners=align_corners),
        atol=1e-6)


# ------------------------------------------------------------ closed forms


@functools.lru_cache(maxsize=None)
def _sampler(method, align_corners):
  return jax.jit(functools.partial(stn_jax.sample, method=method,
                                   align_corners=align_corners))


@pytest.mark.parametrize("method,align_corners",
                         list(itertools.product(METHODS, ALIGN)))
def test_identity_affine_reproduces_the_input(method, align_corners):
  rng = np.random.default_rng(3)
  image = rng.uniform(size=(5, 7, 2)).astype(np.float32)
  grid = stn_jax.affine_grid(IDENTITY, (5, 7), align_corners=align_corners)
  out = _sampler(method, align_corners)(image, grid)
  if method == "nearest":
    np.testing.assert_array_equal(out, image)
  else:  # the float32 pixel centres are within an ulp of the exact ones
    np.testing.assert_allclose(out, image, atol=1e-6)


@pytest.mark.parametrize("method,align_corners",
                         list(itertools.product(METHODS, ALIGN)))
def test_rotation_by_90_degrees_is_rot90(method, align_corners):
  """np.rot90 (counter-clockwise): out[i, j] = img[j, W - 1 - i].

  The grid maps output to input: output (x_t, y_t) reads input column
  W - 1 - i, i.e. x_s = -y_t, and row j, i.e. y_s = x_t. So theta =
  [[0, -1, 0], [1, 0, 0]], on a non-square image (output (W, H)).
  """
  rng = np.random.default_rng(4)
  image = rng.uniform(size=(5, 7, 2)).astype(np.float32)
  theta = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
  grid = stn_jax.affine_grid(theta, (7, 5), align_corners=align_corners)
  out = _sampler(method, align_corners)(image, grid)
  np.testing.assert_allclose(out, np.rot90(image, k=1, axes=(0, 1)),
                             atol=1e-6)
  # And the inverse rotation is rot90 clockwise.
  grid = stn_jax.affine_grid(-theta, (7, 5), align_corners=align_corners)
  out = _sampler(method, align_corners)(image, grid)
  np.testing.assert_allclose(out, np.rot90(image, k=-1, axes=(0, 1)),
                             atol=1e-6)


# -------------------------------------------------------------- projective


@pytest.mark.parametrize("align_corners", ALIGN)
def test_projective_grid_matches_numpy(align_corners):
  rng = np.random.default_rng(5)
  h = np.eye(3) + 0.1 * rng.normal(size=(3, 3))
  h /= h[2, 2]
  flat = h.reshape(-1)[:8].astype(np.float32)
  grid = stn_jax.projective_grid(flat, (5, 6), align_corners=align_corners)
  grid33 = stn_jax.projective_grid(h.astype(np.float32), (5, 6),
                                   align_corners=align_corners)
  expected = ref.apply_homography(h, ref.pixel_centres((5, 6), align_corners))
  np.testing.assert_allclose(grid, expected, atol=1e-5)
  np.testing.assert_allclose(grid33, grid, atol=1e-6)


def test_projective_grid_with_affine_matrix_is_affine_grid():
  theta = np.array([[0.9, 0.2, 0.1], [-0.3, 1.1, -0.2]], np.float32)
  h = np.concatenate([theta, [[0.0, 0.0, 1.0]]]).astype(np.float32)
  for align_corners in ALIGN:
    np.testing.assert_allclose(
        stn_jax.projective_grid(h, (4, 5), align_corners=align_corners),
        stn_jax.affine_grid(theta, (4, 5), align_corners=align_corners),
        atol=1e-6)


def test_projective_grid_maps_corners_where_a_direct_solve_says():
  """With align_corners=True the grid's corners are the output corners
  (+-1, +-1); H from a numpy 8x8 solve must send them to `dst`."""
  rng = np.random.default_rng(6)
  corners = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], np.float64)
  dst = corners * 0.8 + rng.normal(scale=0.15, size=(4, 2))
  h = ref.homography_from_points(corners, dst)
  grid = stn_jax.projective_grid(h.astype(np.float32), (6, 5),
                                 align_corners=True)
  got = np.stack([grid[0, 0], grid[0, -1], grid[-1, 0], grid[-1, -1]])
  np.testing.assert_allclose(got, dst, atol=1e-5)


# w = x_t: exactly 0 on the middle column, negative left of it.
_W_ZERO_COLUMN = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]], np.float32)
# [8] form, w = 2 x_t + 1: exactly 0 at x_t = -0.5 (column 1 of 5).
_W_ZERO_FLAT = np.array([1, 0, 0, 0, 1, 0, 2, 0], np.float32)
# w <= 0 everywhere (every point behind the camera).
_W_NEGATIVE = np.array([[1, 0, 0], [0, 1, 0], [0, 0, -1]], np.float32)


@pytest.mark.parametrize("h,method", [
    (_W_ZERO_COLUMN, "bilinear"), (_W_ZERO_FLAT, "bilinear"),
    (_W_NEGATIVE, "bilinear"), (_W_ZERO_COLUMN, "bicubic")])
def test_projective_w_nonpositive_is_finite_with_finite_gradients(h, method):
  rng = np.random.default_rng(7)
  image = jnp.asarray(rng.uniform(size=(5, 5, 1)), jnp.float32)
  grid = stn_jax.projective_grid(h, (5, 5), align_corners=True)
  assert np.all(np.isfinite(grid))
  m = h.reshape(-1) if h.shape == (3, 3) else np.append(h, 1.0)
  m = m.reshape(3, 3).astype(np.float64)
  centres = ref.pixel_centres((5, 5), True)
  w = centres @ m[2, :2] + m[2, 2]
  assert (w <= 0).any()
  ok = w > 0
  np.testing.assert_allclose(
      np.asarray(grid)[ok], ref.apply_homography(m, centres)[ok], atol=1e-5)

  def loss(hh, img):
    g = stn_jax.projective_grid(hh, (5, 5), align_corners=True)
    return jnp.sum(stn_jax.sample(img, g, method=method, align_corners=True))

  value, (d_h, d_image) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(
      jnp.asarray(h), image)
  assert np.isfinite(value)
  assert np.all(np.isfinite(d_h)) and np.all(np.isfinite(d_image))
  # Points with w <= 0 land outside the image: zero padding reads 0 there.
  out = stn_jax.sample(image, grid, method=method, align_corners=True)
  np.testing.assert_array_equal(np.asarray(out)[~ok], 0.0)


# --------------------------------------------------------- thin-plate spline


def test_tps_source_points_layout():
  points = stn_jax.tps_source_points(16)
  assert points.shape == (16, 2)
  third = 1.0 / 3.0
  np.testing.assert_allclose(points[0], [-1, -1], atol=1e-7)
  np.testing.assert_allclose(points[1], [-third, -1], atol=1e-6)  # x inner
  np.testing.assert_allclose(points[4], [-1, -third], atol=1e-6)  # y outer
  np.testing.assert_allclose(points[15], [1, 1], atol=1e-7)
  np.testing.assert_allclose(stn_jax.tps_source_points(4),
                             [[-1, -1], [1, -1], [-1, 1], [1, 1]])


def test_tps_passes_through_its_control_points():
  """K = 16, a 4x4 output, align_corners=True: the output pixel centres ARE
  the source lattice, so the grid equals the control points exactly."""
  rng = np.random.default_rng(8)
  source = stn_jax.tps_source_points(16)
  control = (source + rng.normal(scale=0.2, size=(16, 2))).astype(np.float32)
  grid = stn_jax.tps_grid(control, (4, 4), align_corners=True)
  np.testing.assert_allclose(grid, control.reshape(4, 4, 2), atol=1e-5)


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("num_points", [9, 16])
def test_tps_identity_control_points_give_the_identity_grid(align_corners,
                                                            num_points):
  source = stn_jax.tps_source_points(num_points)
  grid = stn_jax.tps_grid(source, (5, 7), align_corners=align_corners)
  np.testing.assert_allclose(
      grid, stn_jax.affine_grid(IDENTITY, (5, 7), align_corners=align_corners),
      atol=1e-5)


def test_tps_reproduces_affine_maps_even_when_regularized():
  """An affine warp of the lattice is reproduced exactly: the spline's
  non-affine part is 0, whatever the smoothing."""
  theta = np.array([[0.8, 0.3, 0.1], [-0.2, 0.9, 0.05]], np.float32)
  source = stn_jax.tps_source_points(16).astype(np.float64)
  control = (source @ theta[:, :2].T + theta[:, 2]).astype(np.float32)
  for regularization in (0.0, 0.5):
    grid = stn_jax.tps_grid(control, (6, 5), regularization=regularization)
    np.testing.assert_allclose(grid, stn_jax.affine_grid(theta, (6, 5)),
                               atol=1e-5)


def test_tps_regularization_smooths_instead_of_interpolating():
  rng = np.random.default_rng(9)
  source = stn_jax.tps_source_points(16)
  control = (source + rng.normal(scale=0.2, size=(16, 2))).astype(np.float32)
  exact = stn_jax.tps_grid(control, (4, 4), align_corners=True)
  smooth = stn_jax.tps_grid(control, (4, 4), align_corners=True,
                            regularization=1.0)
  assert np.all(np.isfinite(smooth))
  err = np.abs(np.asarray(smooth) - control.reshape(4, 4, 2)).max()
  assert err > 1e-2
  np.testing.assert_allclose(exact, control.reshape(4, 4, 2), atol=1e-5)


def _numpy_tps(source, control, targets):
  """An independent TPS solve with phi(r) = r^2 log r (the r^2 log r^2 of
  the library is twice that, which only rescales the kernel weights)."""
  def phi(d):
    r2 = (d ** 2).sum(-1)
    return np.where(r2 > 0, 0.5 * r2 * np.log(np.where(r2 > 0, r2, 1.0)), 0.0)

  k = len(source)
  p = np.concatenate([np.ones((k, 1)), source], 1)
  system = np.zeros((k + 3, k + 3))
  system[:k, :k] = phi(source[:, None] - source[None])
  system[:k, k:] = p
  system[k:, :k] = p.T
  coeffs = np.linalg.solve(system, np.concatenate([control, np.zeros((3, 2))]))
  t = np.concatenate([np.ones((len(targets), 1)), targets], 1)
  return phi(targets[:, None] - source[None]) @ coeffs[:k] + t @ coeffs[k:]


@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_matches_independent_numpy_solve(align_corners):
  rng = np.random.default_rng(10)
  source = stn_jax.tps_source_points(16).astype(np.float64)
  control = source + rng.normal(scale=0.15, size=(16, 2))
  grid = stn_jax.tps_grid(control.astype(np.float32), (6, 7),
                          align_corners=align_corners)
  targets = ref.pixel_centres((6, 7), align_corners).reshape(-1, 2)
  expected = _numpy_tps(source, control, targets).reshape(6, 7, 2)
  np.testing.assert_allclose(grid, expected, atol=1e-4)


def test_tps_custom_source_points_pass_through_control_points():
  """Source points on an irregular subset of pixel centres."""
  rng = np.random.default_rng(11)
  centres = ref.pixel_centres((5, 6), True).reshape(-1, 2)
  pick = rng.choice(len(centres), size=7, replace=False)
  source = centres[pick].astype(np.float32)
  control = (source + rng.normal(scale=0.1, size=(7, 2))).astype(np.float32)
  grid = stn_jax.tps_grid(control, (5, 6), source_points=source,
                          align_corners=True)
  np.testing.assert_allclose(np.asarray(grid).reshape(-1, 2)[pick], control,
                             atol=1e-4)
  expected = _numpy_tps(source.astype(np.float64),
                        control.astype(np.float64), centres).reshape(5, 6, 2)
  np.testing.assert_allclose(grid, expected, atol=1e-4)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_tps_traced_source_points_match_independent_numpy_solve(
    align_corners):
  """Source points traced under jit take the per-call two-column solve (the
  "e" distortion's path); it must agree with numpy and with the cached path."""
  rng = np.random.default_rng(13)
  source = (stn_jax.tps_source_points(16).astype(np.float64)
            + rng.normal(scale=0.05, size=(16, 2)))
  control = source + rng.normal(scale=0.15, size=(16, 2))
  traced = jax.jit(lambda c, s: stn_jax.tps_grid(
      c, (6, 7), source_points=s, align_corners=align_corners))(
          control.astype(np.float32), source.astype(np.float32))
  targets = ref.pixel_centres((6, 7), align_corners).reshape(-1, 2)
  expected = _numpy_tps(source, control, targets).reshape(6, 7, 2)
  np.testing.assert_allclose(traced, expected, atol=1e-4)
  cached = stn_jax.tps_grid(control.astype(np.float32), (6, 7),
                            source_points=source.astype(np.float32),
                            align_corners=align_corners)
  np.testing.assert_allclose(traced, cached, atol=1e-4)


def test_tps_traced_source_points_gradient_matches_numpy_differences():
  """The traced path sums the kernel in a loop over the source points; its
  gradient w.r.t. the source and control points must match central
  differences of the independent float64 numpy solve."""
  rng = np.random.default_rng(14)
  source = (stn_jax.tps_source_points(9).astype(np.float64)
            + rng.normal(scale=0.05, size=(9, 2)))
  control = source + rng.normal(scale=0.15, size=(9, 2))
  weights = rng.normal(size=(5, 6, 2))
  targets = ref.pixel_centres((5, 6), True).reshape(-1, 2)

  def numpy_loss(s, c):
    return np.sum(_numpy_tps(s, c, targets).reshape(5, 6, 2) * weights)

  d_source, d_control = jax.grad(
      lambda s, c: jnp.sum(stn_jax.tps_grid(c, (5, 6), source_points=s,
                                            align_corners=True) * weights),
      argnums=(0, 1))(source.astype(np.float32), control.astype(np.float32))
  eps = 1e-6
  for got, which in ((d_source, 0), (d_control, 1)):
    expected = np.zeros((9, 2))
    for i in range(9):
      for c in range(2):
        args = [source.copy(), control.copy()]
        args[which][i, c] += eps
        up = numpy_loss(*args)
        args[which][i, c] -= 2 * eps
        expected[i, c] = (up - numpy_loss(*args)) / (2 * eps)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_tps_is_linear_in_control_points_and_differentiable():
  rng = np.random.default_rng(12)
  c1 = rng.normal(size=(16, 2)).astype(np.float32)
  c2 = rng.normal(size=(16, 2)).astype(np.float32)
  fn = jax.jit(functools.partial(stn_jax.tps_grid, shape=(5, 5)))
  np.testing.assert_allclose(fn(2.0 * c1 - c2), 2.0 * fn(c1) - fn(c2),
                             atol=1e-4)
  # d grid[i, j] / d control point k is the basis weight: with control points
  # at the lattice and a 4x4 output (align_corners=True) it is the identity.
  jac = jax.jacobian(functools.partial(stn_jax.tps_grid, shape=(4, 4),
                                       align_corners=True))(c1)
  np.testing.assert_allclose(
      np.asarray(jac).reshape(32, 32), np.eye(32), atol=1e-5)


# --------------------------------------------------------------- bad input


@pytest.mark.parametrize("fn,args,match", [
    # (argument name ... what it got), as a regular expression.
    (stn_jax.affine_grid, (np.zeros((3, 3)), (4, 4)), r"theta.*3, 3"),
    (stn_jax.affine_grid, (np.zeros((6,)), (4, 4)), r"theta.*6"),
    (stn_jax.affine_grid_3d, (np.zeros((2, 3)), (2, 4, 4)), r"theta.*2, 3"),
    (stn_jax.affine_grid, (np.zeros((2, 3)), (4,)), r"\bshape\b.*\(4,\)"),
    (stn_jax.affine_grid, (np.zeros((2, 3)), (4, 0)), r"\bshape\b.*4, 0"),
    (stn_jax.affine_grid_3d, (np.zeros((3, 4)), (4, 4)), r"\bshape\b.*4, 4"),
    (stn_jax.attention_grid, (np.zeros((4,)), (4, 4)), r"params.*4"),
    (stn_jax.projective_grid, (np.zeros((9,)), (4, 4)), r"\bh\b.*9"),
    (stn_jax.projective_grid, (np.zeros((2, 3)), (4, 4)), r"\bh\b.*2, 3"),
    (stn_jax.tps_grid, (np.zeros((16, 3)), (4, 4)),
     r"control_points.*16, 3"),
    (stn_jax.tps_grid, (np.zeros((15, 2)), (4, 4)), r"15"),  # K not square
])
def test_bad_input_raises_value_error_naming_argument(fn, args, match):
  with pytest.raises(ValueError, match="(?s)" + match):
    fn(*args)


def test_bad_shapes_raise_at_trace_time():
  with pytest.raises(ValueError, match=r"(?s)theta.*\[3, 3\]"):
    jax.jit(functools.partial(stn_jax.affine_grid, shape=(4, 4))).lower(
        jnp.zeros((3, 3)))
  with pytest.raises(ValueError, match=r"(?s)\bh\b.*\[9\]"):
    jax.jit(functools.partial(stn_jax.projective_grid, shape=(4, 4))).lower(
        jnp.zeros((9,)))


def test_tps_source_points_wrong_shape_raises():
  with pytest.raises(ValueError, match="source_points"):
    stn_jax.tps_grid(np.zeros((16, 2)), (4, 4),
                     source_points=np.zeros((9, 2)))
  with pytest.raises(ValueError, match="regularization"):
    stn_jax.tps_grid(np.zeros((16, 2)), (4, 4), regularization=-1.0)


# ------------------------------------------------ hints for PyTorch habits


@pytest.mark.parametrize("fn,args,name,call,out_shape", [
    (stn_jax.affine_grid, (np.tile(IDENTITY, (8, 1, 1)), (5, 6)), "theta",
     "jax.vmap(stn_jax.affine_grid, in_axes=(0, None))(thetas, (5, 6))",
     (8, 5, 6, 2)),
    (stn_jax.affine_grid_3d, (np.tile(np.eye(3, 4), (8, 1, 1)), (2, 5, 6)),
     "theta",
     "jax.vmap(stn_jax.affine_grid_3d, in_axes=(0, None))(thetas, (2, 5, 6))",
     (8, 2, 5, 6, 3)),
    (stn_jax.attention_grid, (np.tile([1.0, 0.0, 0.0], (8, 1)), (5, 6)),
     "params",
     "jax.vmap(stn_jax.attention_grid, in_axes=(0, None))(params, (5, 6))",
     (8, 5, 6, 2)),
    (stn_jax.projective_grid, (np.tile(np.eye(3), (8, 1, 1)), (5, 6)), "h",
     "jax.vmap(stn_jax.projective_grid, in_axes=(0, None))(hs, (5, 6))",
     (8, 5, 6, 2)),
    (stn_jax.tps_grid,
     (np.tile(stn_jax.tps_source_points(16), (8, 1, 1)), (5, 6)),
     "control_points",
     "jax.vmap(stn_jax.tps_grid, in_axes=(0, None))(control_points, (5, 6))",
     (8, 5, 6, 2)),
])
def test_a_batch_gets_the_vmap_call_and_the_call_works(fn, args, name, call,
                                                         out_shape):
  batch, shape = args
  with pytest.raises(ValueError, match=(
      rf"(?s)^`{name}` must .*got shape {re.escape(str(list(batch.shape)))}"
      r"\. Every stn_jax function handles ONE example; for a batch, use "
      + re.escape(call) + r"\.$")):
    fn(batch, shape)
  # The suggested call is valid code that does the job.
  arrays = {"thetas": batch, "params": batch, "hs": batch,
            "control_points": batch, "jax": jax, "stn_jax": stn_jax}
  out = eval(call, arrays)  # pylint: disable=eval-used
  assert out.shape == out_shape
  np.testing.assert_allclose(out[3], fn(batch[3], shape), atol=1e-6)


@pytest.mark.parametrize("fn,theta,size,spatial", [
    # torch.nn.functional.affine_grid(theta, x.size()) with x [N, C, H, W].
    (stn_jax.affine_grid, IDENTITY, (8, 1, 28, 28), "(28, 28)"),
    (stn_jax.affine_grid_3d, np.eye(3, 4), (8, 1, 4, 28, 28), "(4, 28, 28)"),
])
def test_a_torch_nchw_size_gets_the_spatial_size_and_vmap(fn, theta, size,
                                                          spatial):
  with pytest.raises(ValueError, match=(
      rf"(?s)^`shape` must be .*got {re.escape(repr(size))}.*torch's "
      rf"\(N, C, .*H, W\) size.*spatial size .*here {re.escape(spatial)}.*"
      r"ONE example.*jax\.vmap")):
    fn(theta, size)
  with pytest.raises(ValueError, match=r"(?s)torch's \(N, C, H, W\) size.*"
                     r"here \(28, 28\).*jax\.vmap"):
    stn_jax.base_grid((8, 1, 28, 28))


def test_an_image_shape_as_grid_size_is_told_to_drop_the_channels():
  with pytest.raises(ValueError, match=r"(?s)`shape`.*\(28, 28, 1\).*only the "
                     r"output's spatial size \(h, w\), without batch or channel"):
    stn_jax.affine_grid(IDENTITY, (28, 28, 1))


def test_no_batch_hint_where_the_shape_is_simply_wrong():
  for fn, args in ((stn_jax.affine_grid, (np.zeros((3, 3)), (4, 4))),
                   (stn_jax.affine_grid, (np.zeros((8, 6)), (4, 4))),
                   (stn_jax.projective_grid, (np.zeros((9,)), (4, 4)))):
    with pytest.raises(ValueError) as e:
      fn(*args)
    assert "jax.vmap" not in str(e.value), str(e.value)
