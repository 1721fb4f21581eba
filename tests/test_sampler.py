"""Tests for `stn_jax.sample` against independent references.

References: torch.nn.functional.grid_sample (values and autograd gradients),
scipy.ndimage.map_coordinates, the paper's sampling formula written out in
numpy float64, and finite differences.
"""

import functools
import itertools
import re

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
import pytest
from scipy import ndimage

import stn_jax
from tests import _reference as ref

METHODS_2D = ("bilinear", "nearest", "bicubic")
METHODS_3D = ("bilinear", "nearest")
PADDINGS = ("zeros", "border", "reflection")
ALIGN = (True, False)
ATOL = 1e-5


@functools.lru_cache(maxsize=None)
def _sampler(method="bilinear", padding_mode="zeros", align_corners=False):
  """`stn_jax.sample` jitted once per configuration (eager dispatch is slow)."""
  return jax.jit(functools.partial(stn_jax.sample, method=method,
                                   padding_mode=padding_mode,
                                   align_corners=align_corners))


@functools.lru_cache(maxsize=None)
def _jit_value_and_vjp(method, padding_mode, align_corners):
  """One jitted (image, grid, cotangent) -> (out, d image, d grid) per config."""

  def fn(image, grid, cotangent):
    out, vjp = jax.vjp(
        functools.partial(stn_jax.sample, method=method,
                          padding_mode=padding_mode,
                          align_corners=align_corners), image, grid)
    return (out,) + vjp(cotangent)

  return jax.jit(fn)


def _standard_case(ndim, align_corners, *, seed, avoid_integer=False,
                   integer_fraction=0.35):
  """Image, grid and cotangent of the standard shapes for one convention.

  Every configuration test uses these shapes, so each jitted configuration
  compiles once for the whole file (compiles dominate the runtime). The grid
  has as many points as the image has pixels, some outside the image, some
  exactly on integer pixel positions (`EXACT_SIZES_*` make that exact).
  """
  rng = np.random.default_rng(seed)
  spatial = (ref.EXACT_SIZES_2D if ndim == 2 else
             ref.EXACT_SIZES_3D)[align_corners]
  image = rng.uniform(-1, 1, size=spatial + (2,)).astype(np.float32)
  grid = ref.random_grid(rng, spatial, spatial, align_corners,
                         integer_fraction=integer_fraction,
                         avoid_integer=avoid_integer)
  if integer_fraction:
    # A few points many image widths away: reflection folds them many times.
    flat = grid.reshape(-1, ndim)
    for i, pix in enumerate((40.3, -37.2, 1000.7)):
      flat[i, i % ndim] = ref.normalize(pix, spatial[ndim - 1 - i % ndim],
                                        align_corners)
    # And always the integer positions at and next to the edges, on every
    # axis at once: where clamping and reflection have their kinks.
    for i, offset in enumerate((-1, 0, 1), start=3):
      for axis in range(ndim):
        size = spatial[ndim - 1 - axis]
        for j, pix in enumerate((offset, size - 1 - offset)):
          flat[i + 3 * j, axis] = ref.normalize(pix, size, align_corners)
  cotangent = rng.normal(size=spatial + (2,)).astype(np.float32)
  return image, grid, cotangent


def _check_torch_parity(image, grid, cotangent, method, padding_mode,
                        align_corners):
  out, d_image, d_grid = _jit_value_and_vjp(method, padding_mode,
                                            align_corners)(
                                                image, grid, cotangent)
  t_out, t_image, t_grid = ref.torch_grid_sample(
      image, grid, cotangent, method=method, padding_mode=padding_mode,
      align_corners=align_corners)
  assert out.shape == t_out.shape
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, t_out, atol=ATOL, rtol=1e-5,
                             err_msg="values")
  np.testing.assert_allclose(d_image, t_image, atol=ATOL, rtol=1e-5,
                             err_msg="gradient w.r.t. image")
  np.testing.assert_allclose(d_grid, t_grid, atol=ATOL, rtol=1e-5,
                             err_msg="gradient w.r.t. grid")
  return d_grid


# ------------------------------------------------------------- torch parity


@pytest.mark.parametrize("method,padding_mode,align_corners",
                         list(itertools.product(METHODS_2D, PADDINGS, ALIGN)))
def test_torch_parity_2d(method, padding_mode, align_corners):
  """Values and gradients (image and grid) equal torch's grid_sample."""
  image, grid, cotangent = _standard_case(2, align_corners, seed=0)
  width = image.shape[1]
  # The grid must really contain out-of-range and exactly-integer points.
  pix_x = ref.unnormalize(grid[..., 0], width, align_corners)
  assert (pix_x < -0.5).any() and (pix_x > width - 0.5).any()
  assert (pix_x == np.round(pix_x)).sum() >= 5
  d_grid = _check_torch_parity(image, grid, cotangent, method, padding_mode,
                               align_corners)
  if method == "nearest":
    np.testing.assert_array_equal(d_grid, 0.0)
  else:
    assert np.abs(d_grid).max() > 0.1


@pytest.mark.parametrize("method,padding_mode,align_corners",
                         list(itertools.product(METHODS_3D, PADDINGS, ALIGN)))
def test_torch_parity_3d(method, padding_mode, align_corners):
  """Volumes: values and gradients equal torch's 5-D grid_sample."""
  image, grid, cotangent = _standard_case(3, align_corners, seed=1)
  d_grid = _check_torch_parity(image, grid, cotangent, method, padding_mode,
                               align_corners)
  if method == "nearest":
    np.testing.assert_array_equal(d_grid, 0.0)
  else:
    assert np.abs(d_grid).max() > 0.1


@pytest.mark.parametrize("method", METHODS_2D)
def test_torch_parity_downsampling_and_one_channel(method):
  """An output smaller than the input, one channel, sizes not powers of 2."""
  rng = np.random.default_rng(2)
  image = rng.uniform(size=(11, 6, 1)).astype(np.float32)
  grid = rng.uniform(-1.2, 1.2, size=(3, 2, 2)).astype(np.float32)
  cotangent = rng.normal(size=(3, 2, 1)).astype(np.float32)
  _check_torch_parity(image, grid, cotangent, method, "zeros", False)


@pytest.mark.parametrize("shape,align_corners", [((1, 5), True),
                                                   ((4, 1), False)])
def test_torch_parity_size_one_axes(shape, align_corners):
  """A size-1 axis (with align_corners=True its unnormalisation divides by
  size - 1 = 0 in the inverse map): several configurations in one jit."""
  rng = np.random.default_rng(11)
  image = rng.uniform(size=shape + (1,)).astype(np.float32)
  grid = rng.uniform(-2.5, 2.5, size=(3, 4, 2)).astype(np.float32)
  cotangent = rng.normal(size=(3, 4, 1)).astype(np.float32)
  configs = [("bilinear", p, align_corners) for p in PADDINGS] + [
      ("bicubic", p, align_corners) for p in ("border", "reflection")]

  @jax.jit
  def all_configs(img, g, ct):
    results = []
    for method, padding_mode, align_corners in configs:
      out, vjp = jax.vjp(functools.partial(
          stn_jax.sample, method=method, padding_mode=padding_mode,
          align_corners=align_corners), img, g)
      results.append((out,) + vjp(ct))
    return results

  for config, got in zip(configs, all_configs(image, grid, cotangent)):
    method, padding_mode, align_corners = config
    want = ref.torch_grid_sample(image, grid, cotangent, method=method,
                                 padding_mode=padding_mode,
                                 align_corners=align_corners)
    for name, g, w in zip(("values", "d image", "d grid"), got, want):
      np.testing.assert_allclose(g, w, atol=ATOL, rtol=1e-5,
                                 err_msg=f"{name} {config}")


@pytest.mark.parametrize("align_corners", ALIGN)
def test_nearest_rounds_half_to_even_like_torch(align_corners):
  """At exact x.5 pixel positions nearest rounds half to even (torch)."""
  image, _, _ = _standard_case(2, align_corners, seed=3)
  height, width = image.shape[:2]
  rng = np.random.default_rng(3)
  half_x = rng.integers(0, width - 1, size=(height, width)) + 0.5
  half_y = rng.integers(0, height - 1, size=(height, width)) + 0.5
  grid = np.stack([ref.normalize(half_x, width, align_corners),
                   ref.normalize(half_y, height, align_corners)],
                  axis=-1).astype(np.float32)
  out, _, _ = _jit_value_and_vjp("nearest", "zeros", align_corners)(
      image, grid, image)
  rows = np.round(half_y).astype(int)  # numpy rounds half to even
  cols = np.round(half_x).astype(int)
  np.testing.assert_array_equal(out, image[rows, cols])
  torch_out = ref.torch_grid_sample(image, grid, method="nearest",
                                    padding_mode="zeros",
                                    align_corners=align_corners)
  np.testing.assert_array_equal(out, torch_out)


# ------------------------------------------------------------- scipy parity

# map_coordinates modes that define the same extension as torch's padding.
# Zeros padding reads 0 at every tap outside the image: scipy's
# 'grid-constant' (its 'constant' stops interpolating at the edge instead).
# Reflection about the corner-pixel centres (align_corners=True) is 'mirror'
# (d c b | a b c d | c b a); about the outer edges (False) it is 'reflect'
# (c b a | a b c d | d c b).
_SCIPY_MODE = {
    ("zeros", True): "grid-constant",
    ("zeros", False): "grid-constant",
    ("border", True): "nearest",
    ("border", False): "nearest",
    ("reflection", True): "mirror",
    ("reflection", False): "reflect",
}
_SCIPY_ORDER = {"nearest": 0, "bilinear": 1}


def _scipy_sample(image, grid, order, mode, align_corners):
  """map_coordinates per channel; scipy wants (row, col[, ...]) = (y, x)."""
  spatial = image.shape[:-1]
  ndim = len(spatial)
  coords = [ref.unnormalize(grid[..., axis], spatial[ndim - 1 - axis],
                            align_corners)
            for axis in range(ndim)][::-1]  # (x, y, z) -> (z, y, x)
  return np.stack([
      ndimage.map_coordinates(image[..., c].astype(np.float64), coords,
                              order=order, mode=mode, cval=0.0,
                              prefilter=False)
      for c in range(image.shape[-1])], axis=-1)


@pytest.mark.parametrize(
    "ndim,method,padding_mode,align_corners",
    [(2, m, p, a) for m, p, a in itertools.product(("bilinear", "nearest"),
                                                   PADDINGS, ALIGN)]
    + [(3, "bilinear", p, a) for p, a in itertools.product(PADDINGS, ALIGN)])
def test_matches_scipy_map_coordinates(ndim, method, padding_mode,
                                       align_corners):
  """order 0/1 map_coordinates with the matching mode, random grids."""
  # Points up to 2 pixels beyond the edges, some exactly on integers; no
  # rounding ties (scipy and torch round x.5 differently).
  image, grid, cotangent = _standard_case(ndim, align_corners, seed=4)
  out, _, _ = _jit_value_and_vjp(method, padding_mode, align_corners)(
      image, grid, cotangent)
  expected = _scipy_sample(image, grid, _SCIPY_ORDER[method],
                           _SCIPY_MODE[(padding_mode, align_corners)],
                           align_corners)
  np.testing.assert_allclose(out, expected, atol=ATOL)


def _identity_pixel_grid(height, width, align_corners):
  """The grid whose every point is the centre of the same output pixel."""
  ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  return np.stack([ref.normalize(xs, width, align_corners),
                   ref.normalize(ys, height, align_corners)],
                  axis=-1).astype(np.float32)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_bicubic_interpolates_at_pixel_centres_like_scipy(align_corners):
  """Bicubic vs scipy only where the two definitions agree.

  scipy's order=3 is B-spline interpolation (a prefilter, then a B-spline of
  infinite support); torch/stn_jax use Keys' cubic convolution (A = -0.75,
  4 taps). Both interpolate, so they agree at integer pixel positions only:
  there both return the pixel values. Elsewhere torch is the reference.
  """
  image, _, cotangent = _standard_case(2, align_corners, seed=5)
  height, width = image.shape[:2]
  grid = _identity_pixel_grid(height, width, align_corners)
  out, _, _ = _jit_value_and_vjp("bicubic", "zeros", align_corners)(
      image, grid, cotangent)
  ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  expected = np.stack([
      ndimage.map_coordinates(image[..., c].astype(np.float64),
                              [ys.astype(np.float64), xs.astype(np.float64)],
                              order=3, mode="mirror")
      for c in range(image.shape[-1])], axis=-1)
  np.testing.assert_allclose(expected, image, atol=1e-6)  # scipy sanity
  np.testing.assert_allclose(out, expected, atol=ATOL)


# --------------------------------------------------- the paper's formula


@pytest.mark.parametrize("method,kernel", [("bilinear", ref.bilinear_kernel),
                                           ("nearest", ref.nearest_kernel)])
@pytest.mark.parametrize("align_corners", ALIGN)
def test_matches_paper_formula(method, kernel, align_corners):
  """V = sum_nm U_nm k(x - m) k(y - n) over all pixels (zero padding)."""
  image, grid, cotangent = _standard_case(2, align_corners, seed=6,
                                          integer_fraction=0.0)
  out, _, _ = _jit_value_and_vjp(method, "zeros", align_corners)(
      image, grid, cotangent)
  expected = ref.paper_sample(image, grid, kernel=kernel,
                              align_corners=align_corners)
  np.testing.assert_allclose(out, expected, atol=ATOL)


# ------------------------------------------------------- finite differences


@pytest.mark.parametrize("method", ("bilinear", "bicubic"))
@pytest.mark.parametrize("padding_mode", PADDINGS)
@pytest.mark.parametrize("align_corners", ALIGN)
def test_gradients_match_central_differences(method, padding_mode,
                                             align_corners):
  """<d loss, direction> vs float32 central differences of the sampler
  itself, for the image and the grid, at generic points: off the integer
  lattice, so no finite-difference step crosses a kink of the kernel."""
  image, grid, cotangent = _standard_case(2, align_corners, seed=7,
                                          avoid_integer=True,
                                          integer_fraction=0.0)
  rng = np.random.default_rng(7)
  grid_dir = rng.normal(size=grid.shape).astype(np.float32)
  image_dir = rng.normal(size=image.shape).astype(np.float32)
  fn = _jit_value_and_vjp(method, padding_mode, align_corners)

  def loss(img, g):
    out = fn(img, g, cotangent)[0]
    return float(np.sum(np.asarray(out, np.float64) * cotangent))

  _, d_image, d_grid = fn(image, grid, cotangent)
  # A pixel step of 0.02 keeps points 0.08 from the nearest kink away from it.
  eps = 0.02 / max(image.shape[:2])
  fd_grid = (loss(image, grid + eps * grid_dir)
             - loss(image, grid - eps * grid_dir)) / (2 * eps)
  fd_image = (loss(image + 0.1 * image_dir, grid)
              - loss(image - 0.1 * image_dir, grid)) / 0.2  # linear in image
  analytic_grid = float(np.sum(np.asarray(d_grid, np.float64) * grid_dir))
  analytic_image = float(np.sum(np.asarray(d_image, np.float64) * image_dir))
  assert abs(analytic_grid) > 1.0  # the check is not vacuous
  np.testing.assert_allclose(analytic_grid, fd_grid, rtol=2e-3, atol=1e-2)
  np.testing.assert_allclose(analytic_image, fd_image, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_gradients_match_float64_central_differences_of_paper_formula(
    align_corners):
  """d sample / d grid and d image vs central differences of the paper's
  formula in float64 (bilinear, zero padding, generic points incl. outside)."""
  image, grid, cotangent = _standard_case(2, align_corners, seed=8,
                                          avoid_integer=True,
                                          integer_fraction=0.0)
  rng = np.random.default_rng(8)
  direction = rng.normal(size=grid.shape)
  image_direction = rng.normal(size=image.shape)

  def loss(img, g):
    return np.sum(cotangent * ref.paper_sample(
        img, g, kernel=ref.bilinear_kernel, align_corners=align_corners))

  eps = 1e-6
  g64 = grid.astype(np.float64)
  fd_grid = (loss(image, g64 + eps * direction)
             - loss(image, g64 - eps * direction)) / (2 * eps)
  fd_image = (loss(image + eps * image_direction, g64)
              - loss(image - eps * image_direction, g64)) / (2 * eps)
  _, d_image, d_grid = _jit_value_and_vjp("bilinear", "zeros", align_corners)(
      image, grid, cotangent)
  np.testing.assert_allclose(np.sum(d_grid * direction), fd_grid, rtol=1e-4,
                             atol=1e-4)
  np.testing.assert_allclose(np.sum(d_image * image_direction), fd_image,
                             rtol=1e-4, atol=1e-4)


def test_check_grads_bicubic():
  """jax.test_util.check_grads (JVP and VJP vs finite differences) on the one
  smooth method; generic points inside the image."""
  rng = np.random.default_rng(9)
  image = jnp.asarray(rng.uniform(size=(4, 5, 1)), jnp.float32)
  px = rng.uniform(0.15, 0.85, size=(2, 3)) + rng.integers(0, 4, (2, 3))
  py = rng.uniform(0.15, 0.85, size=(2, 3)) + rng.integers(0, 3, (2, 3))
  grid = jnp.asarray(np.stack([ref.normalize(px, 5, True),
                               ref.normalize(py, 4, True)], -1), jnp.float32)
  check_grads(_sampler("bicubic", "reflection", True), (image, grid),
              order=1, modes=("rev",), eps=1e-3)


# ------------------------------------------------- the paper's sub-gradient


@pytest.mark.parametrize("align_corners", ALIGN)
def test_subgradient_at_integer_coordinates(align_corners):
  """At exactly-integer x the grid gradient is the right difference
  U[x + 1] - U[x] (times d pixel / d normalised), non-zero, and torch's."""
  image, _, _ = _standard_case(2, align_corners, seed=10)
  height, width = image.shape[:2]
  # The identity grid: every sample point sits on a pixel centre.
  grid = _identity_pixel_grid(height, width, align_corners)
  ones = np.ones_like(image)
  _, _, d_grid = _jit_value_and_vjp("bilinear", "zeros", align_corners)(
      image, grid, ones)
  _, _, t_grid = ref.torch_grid_sample(image, grid, ones, method="bilinear",
                                       padding_mode="zeros",
                                       align_corners=align_corners)
  np.testing.assert_allclose(d_grid, t_grid, atol=ATOL)
  scale_x = (width - 1) / 2 if align_corners else width / 2
  scale_y = (height - 1) / 2 if align_corners else height / 2
  total = image.sum(-1)  # the cotangent of ones sums the channels
  padded = np.pad(total, ((0, 1), (0, 1)))  # zeros beyond the edge
  right_x = (padded[:height, 1:] - padded[:height, :width]) * scale_x
  right_y = (padded[1:, :width] - padded[:height, :width]) * scale_y
  np.testing.assert_allclose(d_grid[..., 0], right_x, atol=ATOL)
  np.testing.assert_allclose(d_grid[..., 1], right_y, atol=ATOL)
  assert np.all(np.abs(d_grid[:-1, :-1]) > 1e-3)


# --------------------------------------------------- jit / vmap / dtypes


def test_vmap_matches_per_example():
  """A batch of images and grids under vmap(jit), and one shared image."""
  cases = [_standard_case(2, False, seed=20 + i) for i in range(3)]
  images = np.stack([c[0] for c in cases])
  grids = np.stack([c[1] for c in cases])
  cotangents = np.stack([c[2] for c in cases])
  fn = _jit_value_and_vjp("bilinear", "border", False)
  batched = jax.vmap(fn)(images, grids, cotangents)
  for i in range(3):
    single = fn(images[i], grids[i], cotangents[i])
    for got, want in zip(batched, single):
      np.testing.assert_allclose(got[i], want, atol=1e-6)
  # One shared image, a batch of grids (the image's gradient sums).
  shared = jax.vmap(fn, in_axes=(None, 0, 0))(images[0], grids, cotangents)
  single = fn(images[0], grids[1], cotangents[1])
  np.testing.assert_allclose(shared[0][1], single[0], atol=1e-6)
  np.testing.assert_allclose(shared[2][1], single[2], atol=1e-6)


def test_grad_under_jit_and_vmap_matches_torch():
  """jit(vmap(grad(loss))) for a scalar loss of the samples, vs torch."""
  cases = [_standard_case(2, False, seed=30 + i) for i in range(2)]
  images = np.stack([c[0] for c in cases])
  grids = np.stack([c[1] for c in cases])

  def loss(image, grid):
    return jnp.sum(stn_jax.sample(image, grid, padding_mode="reflection") ** 2)

  d_images, d_grids = jax.jit(jax.vmap(jax.grad(loss, argnums=(0, 1))))(
      images, grids)
  for i in range(2):
    kw = dict(method="bilinear", padding_mode="reflection",
              align_corners=False)
    out = ref.torch_grid_sample(images[i], grids[i], **kw)
    _, t_image, t_grid = ref.torch_grid_sample(images[i], grids[i], 2 * out,
                                               **kw)
    np.testing.assert_allclose(d_images[i], t_image, atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(d_grids[i], t_grid, atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("method", METHODS_2D)
def test_bfloat16_image(method):
  """bfloat16 in, bfloat16 out, close to the float32 result (same inputs)."""
  image, grid, cotangent = _standard_case(2, False, seed=40)
  image_bf16 = jnp.asarray(image, jnp.bfloat16)
  out = _sampler(method)(image_bf16, grid)
  assert out.dtype == jnp.bfloat16
  assert out.shape == image.shape
  expected, _, _ = _jit_value_and_vjp(method, "zeros", False)(
      np.asarray(image_bf16, np.float32), grid, cotangent)
  assert expected.dtype == jnp.float32
  # bfloat16 keeps 8 significant bits: relative 2^-8 of the output's scale.
  np.testing.assert_allclose(np.asarray(out, np.float32), expected,
                             atol=1e-2, rtol=1e-2)
  assert np.abs(expected).max() > 0.5


def test_bfloat16_gradients_are_finite_and_close():
  image, grid, cotangent = _standard_case(2, True, seed=41)

  def loss(img, g):
    out = stn_jax.sample(img, g, align_corners=True)
    return jnp.sum(out.astype(jnp.float32) * cotangent)

  grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
  d_image, d_grid = grad_fn(jnp.asarray(image, jnp.bfloat16), grid)
  assert d_image.dtype == jnp.bfloat16
  _, want_image, want_grid = _jit_value_and_vjp("bilinear", "zeros", True)(
      np.asarray(jnp.asarray(image, jnp.bfloat16), np.float32), grid,
      cotangent)
  np.testing.assert_allclose(np.asarray(d_image, np.float32), want_image,
                             atol=3e-2, rtol=2e-2)
  np.testing.assert_allclose(d_grid, want_grid, atol=0.1, rtol=2e-2)


# ---------------------------------------------------------- bad input


def _raises_at_trace(match, image_shape, grid_shape, **kw):
  image = jnp.zeros(image_shape, jnp.float32)
  grid = jnp.zeros(grid_shape, jnp.float32)
  with pytest.raises(ValueError, match=match):
    jax.jit(functools.partial(stn_jax.sample, **kw)).lower(image, grid)


@pytest.mark.parametrize("match,image_shape,grid_shape,kw", [
    ("image", (4, 5), (3, 3, 2), {}),  # rank 2: no channel axis
    ("image", (1, 2, 3, 4, 5), (3, 3, 2), {}),
    ("grid", (4, 5, 1), (3, 3, 4), {}),  # last dim not 2
    ("grid", (4, 5, 1), (3, 3, 3), {}),  # 2D image with a 3D-style grid
    ("grid", (4, 5, 1), (2, 3, 3, 3), {}),  # 2D image with a 3D grid
    ("grid", (2, 4, 5, 1), (3, 3, 2), {}),  # 3D image with a 2D grid
    ("method", (4, 5, 1), (3, 3, 2), {"method": "trilinear"}),
    ("padding_mode", (4, 5, 1), (3, 3, 2), {"padding_mode": "wrap"}),
    ("bicubic", (2, 4, 5, 1), (1, 3, 3, 3), {"method": "bicubic"}),
])
def test_bad_input_raises_value_error_naming_argument(match, image_shape,
                                                      grid_shape, kw):
  _raises_at_trace(match, image_shape, grid_shape, **kw)


def test_error_message_says_what_it_got():
  with pytest.raises(ValueError, match=r"(?s)padding_mode.*wrap"):
    stn_jax.sample(jnp.zeros((4, 5, 1)), jnp.zeros((3, 3, 2)),
                   padding_mode="wrap")
  with pytest.raises(ValueError, match=r"(?s)grid.*\[3, 3, 4\]"):
    stn_jax.sample(jnp.zeros((4, 5, 1)), jnp.zeros((3, 3, 4)))


# ------------------------------------------------ hints for PyTorch habits


def _suggested_call(message):
  """The `jax.vmap(...)` expression an error message suggests."""
  return message.split("for a batch, use ", 1)[1].rsplit(".", 1)[0]


@pytest.mark.parametrize("image_shape,grid_shape,call,out_shape", [
    # torch's batched grid_sample habit: images [B, H, W, C], grids [B, h, w, 2].
    ((8, 28, 28, 1), (8, 5, 6, 2), "jax.vmap(stn_jax.sample)(images, grids)",
     (8, 5, 6, 1)),
    ((8, 28, 28, 1), (5, 6, 2),
     "jax.vmap(stn_jax.sample, in_axes=(0, None))(images, grid)",
     (8, 5, 6, 1)),
    ((28, 28, 1), (8, 5, 6, 2),
     "jax.vmap(stn_jax.sample, in_axes=(None, 0))(image, grids)",
     (8, 5, 6, 1)),
    ((4, 6, 6, 1), (8, 3, 5, 6, 3),
     "jax.vmap(stn_jax.sample, in_axes=(None, 0))(volume, grids)",
     (8, 3, 5, 6, 1)),
    ((8, 4, 6, 6, 1), (8, 3, 5, 6, 3),
     "jax.vmap(stn_jax.sample)(volumes, grids)", (8, 3, 5, 6, 1)),
])
def test_a_batch_gets_the_vmap_call_and_the_call_works(image_shape,
                                                         grid_shape, call,
                                                         out_shape):
  image = jnp.ones(image_shape)
  grid = jnp.zeros(grid_shape)
  with pytest.raises(ValueError, match=r"(?s)`(image|grid)` must be .*got "
                     r"shape .*ONE example; for a batch, use "
                     + re.escape(call) + r"\.$") as e:
    stn_jax.sample(image, grid)
  # It names the shape it got.
  got = grid_shape if str(e.value).startswith("`grid`") else image_shape
  assert f"got shape {list(got)}" in str(e.value)
  # The suggested call is valid code that does the job.
  names = {"images": image, "image": image, "volume": image, "volumes": image,
           "grids": grid, "grid": grid, "jax": jax, "stn_jax": stn_jax}
  out = eval(_suggested_call(str(e.value)), names)  # pylint: disable=eval-used
  assert out.shape == out_shape
  np.testing.assert_allclose(out, 1.0)  # the grid's zeros read the centre


def test_the_batch_hint_is_given_at_trace_time_too():
  with pytest.raises(ValueError, match=re.escape(
      "jax.vmap(stn_jax.sample)(images, grids)")):
    jax.jit(stn_jax.sample).lower(jnp.zeros((8, 28, 28, 1)),
                                  jnp.zeros((8, 28, 28, 2)))


def test_an_nchw_image_is_told_the_library_is_channels_last():
  with pytest.raises(ValueError, match=r"(?s)channels-first.*\[N, C, H, W\].*"
                     r"channels-last: an image is \[H, W, C\].*"
                     r"jnp\.moveaxis\(x, 1, -1\)") as e:
    stn_jax.sample(jnp.zeros((8, 1, 28, 28)), jnp.zeros((8, 28, 28, 2)))
  assert "jax.vmap(stn_jax.sample)(images, grids)" in str(e.value)
  assert "[8, 1, 28, 28]" in str(e.value)
  # One torch image [C, H, W] with torch's grid [1, h, w, 2].
  with pytest.raises(ValueError, match=r"(?s)\[C, H, W\].*channels-last.*"
                     r"moveaxis\(x, 0, -1\)"):
    stn_jax.sample(jnp.zeros((1, 28, 28)), jnp.zeros((1, 28, 28, 2)))
  # A channels-last batch is not called channels-first.
  with pytest.raises(ValueError) as e:
    stn_jax.sample(jnp.zeros((8, 28, 28, 1)), jnp.zeros((8, 28, 28, 2)))
  assert "channels-first" not in str(e.value)


def test_an_image_without_channel_axis_is_told_to_add_one():
  with pytest.raises(ValueError, match=r"(?s)`image`.*\[28, 28\].*"
                     r"image\[\.\.\., None\]"):
    stn_jax.sample(jnp.zeros((28, 28)), jnp.zeros((28, 28, 2)))


def test_no_batch_hint_where_the_shapes_are_simply_wrong():
  with pytest.raises(ValueError) as e:
    stn_jax.sample(jnp.zeros((4, 5, 1)), jnp.zeros((3, 3, 4)))
  assert "jax.vmap" not in str(e.value)


def test_valid_single_and_vmapped_calls_still_work():
  image = jnp.ones((28, 28, 1))
  grid = stn_jax.affine_grid(jnp.eye(2, 3), (28, 28))
  assert stn_jax.sample(image, grid).shape == (28, 28, 1)
  assert stn_jax.sample(jnp.ones((4, 28, 28, 1)),
                        jnp.zeros((2, 5, 6, 3))).shape == (2, 5, 6, 1)
  images = jnp.ones((8, 28, 28, 1))
  grids = jnp.broadcast_to(grid, (8, 28, 28, 2))
  out = jax.jit(jax.vmap(stn_jax.sample))(images, grids)
  assert out.shape == (8, 28, 28, 1)
  np.testing.assert_allclose(out, 1.0, atol=1e-6)
