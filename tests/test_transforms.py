"""Tests for `stn_jax.transforms`: the registry, coordinates and the algebra.

References: torch's unnormalize formula, numpy matrix algebra and direct
linear solves, and exact resampling by permutations (rotations, flips).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax
from tests import _reference as ref

ALIGN = (True, False)
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
KINDS = {  # kind -> (num_params, identity flat params) from the contract
    "affine": (6, [1, 0, 0, 0, 1, 0]),
    "attention": (3, [1, 0, 0]),
    "projective": (8, [1, 0, 0, 0, 1, 0, 0, 0]),
    "tps": (32, None),  # the default 4x4 lattice, checked below
}


# ----------------------------------------------------------------- registry


def test_registry_names():
  assert set(stn_jax.TRANSFORMS) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_num_and_identity_params(kind):
  n, identity = KINDS[kind]
  assert stn_jax.num_params(kind) == n
  params = stn_jax.identity_params(kind)
  assert params.shape == (n,)
  assert params.dtype == jnp.float32
  if identity is None:
    identity = stn_jax.tps_source_points(16).reshape(-1)
  np.testing.assert_allclose(params, identity, atol=1e-7)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("align_corners", ALIGN)
def test_identity_params_give_the_identity_grid(kind, align_corners):
  grid = stn_jax.make_grid(kind, stn_jax.identity_params(kind), (5, 7),
                           align_corners=align_corners)
  expected = ref.torch_affine_grid(IDENTITY, (5, 7),
                                   align_corners=align_corners)
  assert grid.shape == (5, 7, 2)
  np.testing.assert_allclose(grid, expected, atol=1e-5)


def test_tps_num_points_option():
  assert stn_jax.num_params("tps", num_points=9) == 18
  params = stn_jax.identity_params("tps", num_points=9)
  assert params.shape == (18,)
  np.testing.assert_allclose(params, stn_jax.tps_source_points(9).ravel())
  grid = stn_jax.make_grid("tps", params, (4, 6), num_points=9)
  np.testing.assert_allclose(grid, ref.torch_affine_grid(
      IDENTITY, (4, 6), align_corners=False), atol=1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_make_grid_matches_the_direct_generator(kind):
  rng = np.random.default_rng(0)
  n = KINDS[kind][0]
  params = (np.asarray(stn_jax.identity_params(kind))
            + 0.1 * rng.normal(size=n)).astype(np.float32)
  direct = {
      "affine": lambda p: stn_jax.affine_grid(p.reshape(2, 3), (4, 5),
                                              align_corners=True),
      "attention": lambda p: stn_jax.attention_grid(p, (4, 5),
                                                    align_corners=True),
      "projective": lambda p: stn_jax.projective_grid(p, (4, 5),
                                                      align_corners=True),
      "tps": lambda p: stn_jax.tps_grid(p.reshape(16, 2), (4, 5),
                                        align_corners=True),
  }[kind]
  np.testing.assert_allclose(
      stn_jax.make_grid(kind, params, (4, 5), align_corners=True),
      direct(params), atol=1e-6)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_identity_init_learns(kind):
  """At the identity (every sample on a pixel centre) the loss gradient
  w.r.t. the transform parameters is non-zero (the paper's sub-gradient);
  jit(vmap(grad)) over a batch of parameters works."""
  rng = np.random.default_rng(1)
  image = jnp.asarray(rng.uniform(size=(6, 6, 1)), jnp.float32)
  target = jnp.asarray(rng.uniform(size=(6, 6, 1)), jnp.float32)

  def loss(params):
    grid = stn_jax.make_grid(kind, params, (6, 6), align_corners=True)
    out = stn_jax.sample(image, grid, align_corners=True)
    return jnp.mean((out - target) ** 2)

  batch = jnp.stack([stn_jax.identity_params(kind)] * 2)
  grads = jax.jit(jax.vmap(jax.grad(loss)))(batch)
  assert grads.shape == batch.shape
  assert np.all(np.isfinite(grads))
  assert np.abs(grads[0]).max() > 1e-3
  np.testing.assert_allclose(grads[0], grads[1], atol=1e-7)


@pytest.mark.parametrize("call", [
    lambda: stn_jax.num_params("bogus"),
    lambda: stn_jax.identity_params("bogus"),
    lambda: stn_jax.make_grid("bogus", np.zeros(6), (4, 4)),
])
def test_unknown_kind_raises_naming_it(call):
  with pytest.raises(ValueError, match="bogus"):
    call()


@pytest.mark.parametrize("call", [
    lambda: stn_jax.num_params("tps", num_points=15),
    lambda: stn_jax.identity_params("tps", num_points=15),
    lambda: stn_jax.make_grid("tps", np.zeros(30), (4, 4), num_points=15),
])
def test_tps_non_square_num_points_raises(call):
  with pytest.raises(ValueError, match=r"(?s)num_points.*15|15.*num_points"):
    call()


def test_make_grid_wrong_param_count_raises_naming_params():
  with pytest.raises(ValueError, match=r"(?s)params.*\b5\b"):
    stn_jax.make_grid("affine", np.zeros(5), (4, 4))
  with pytest.raises(ValueError, match="params"):
    jax.jit(lambda p: stn_jax.make_grid("tps", p, (4, 4))).lower(
        jnp.zeros(30))


# -------------------------------------------------------------- coordinates


@pytest.mark.parametrize("align_corners", ALIGN)
@pytest.mark.parametrize("shape", [(5, 8), (3, 4, 6)])
def test_pixel_normalized_round_trip_and_torch_formula(align_corners, shape):
  rng = np.random.default_rng(2)
  ndim = len(shape)
  sizes = shape[::-1]  # (x, y[, z])
  pix = rng.uniform(-2, 9, size=(7, ndim)).astype(np.float32)
  norm = stn_jax.pixel_to_normalized(pix, shape, align_corners=align_corners)
  back = stn_jax.normalized_to_pixel(norm, shape, align_corners=align_corners)
  assert norm.shape == pix.shape and back.shape == pix.shape
  np.testing.assert_allclose(back, pix, atol=1e-5)
  # torch's grid_sampler_unnormalize, per axis.
  coords = rng.uniform(-1.3, 1.3, size=(7, ndim)).astype(np.float32)
  got = stn_jax.normalized_to_pixel(coords, shape,
                                    align_corners=align_corners)
  for axis, size in enumerate(sizes):
    np.testing.assert_allclose(
        got[:, axis], ref.unnormalize(coords[:, axis], size, align_corners),
        atol=1e-5)
    np.testing.assert_allclose(
        norm[:, axis], ref.normalize(pix[:, axis], size, align_corners),
        atol=1e-5)


@pytest.mark.parametrize("align_corners", ALIGN)
def test_edges_and_identity_grid_in_pixels(align_corners):
  shape = (4, 6)
  edges = stn_jax.normalized_to_pixel(
      np.array([[-1.0, -1.0], [1.0, 1.0]], np.float32), shape,
      align_corners=align_corners)
  if align_corners:  # centres of the corner pixels
    np.testing.assert_allclose(edges, [[0, 0], [5, 3]], atol=1e-6)
  else:  # outer edges of the corner pixels
    np.testing.assert_allclose(edges, [[-0.5, -0.5], [5.5, 3.5]], atol=1e-6)
  grid = stn_jax.affine_grid(IDENTITY, shape, align_corners=align_corners)
  pix = stn_jax.normalized_to_pixel(grid, shape, align_corners=align_corners)
  ys, xs = np.meshgrid(np.arange(4), np.arange(6), indexing="ij")
  np.testing.assert_allclose(pix, np.stack([xs, ys], -1), atol=1e-5)


def test_coords_wrong_last_dim_raises():
  with pytest.raises(ValueError, match="coords"):
    stn_jax.pixel_to_normalized(np.zeros((5, 3)), (4, 6))
  with pytest.raises(ValueError, match="coords"):
    stn_jax.normalized_to_pixel(np.zeros((5, 2)), (2, 4, 6))


# ------------------------------------------------------------------ algebra


def _random_affine(rng):
  return (IDENTITY + 0.3 * rng.normal(size=(2, 3))).astype(np.float32)


def _apply_affine(theta, points):
  return points @ np.asarray(theta, np.float64)[:, :2].T + np.asarray(
      theta, np.float64)[:, 2]


def test_compose_with_inverse_is_identity():
  rng = np.random.default_rng(3)
  for _ in range(3):
    a = _random_affine(rng)
    inv = stn_jax.invert_affine(a)
    np.testing.assert_allclose(stn_jax.compose_affine(a, inv), IDENTITY,
                               atol=1e-5)
    np.testing.assert_allclose(stn_jax.compose_affine(inv, a), IDENTITY,
                               atol=1e-5)


def test_compose_affine_is_apply_b_then_a():
  rng = np.random.default_rng(4)
  a, b = _random_affine(rng), _random_affine(rng)
  ab = stn_jax.compose_affine(a, b)
  points = rng.normal(size=(10, 2))
  np.testing.assert_allclose(_apply_affine(ab, points),
                             _apply_affine(a, _apply_affine(b, points)),
                             atol=1e-5)
  # On grids: the composed grid is `a` applied to the points of b's grid.
  for align_corners in ALIGN:
    grid_b = np.asarray(stn_jax.affine_grid(b, (4, 5),
                                            align_corners=align_corners))
    np.testing.assert_allclose(
        stn_jax.affine_grid(ab, (4, 5), align_corners=align_corners),
        _apply_affine(a, grid_b), atol=1e-5)


@pytest.mark.parametrize("method", ["bilinear", "nearest", "bicubic"])
def test_sampling_in_sequence_equals_sampling_the_composition(method):
  """Output p reads the intermediate at a(p), which read the input at
  b(a(p)): sample(sample(img, grid(b)), grid(a)) = sample(img,
  grid(compose_affine(b, a))). Rotations and flips move pixel centres onto
  pixel centres, so resampling twice is exact."""
  rng = np.random.default_rng(5)
  image = rng.uniform(size=(5, 5, 2)).astype(np.float32)
  rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
  flip = np.array([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32)
  fn = jax.jit(functools.partial(stn_jax.sample, method=method,
                                 align_corners=True))
  grid = functools.partial(stn_jax.affine_grid, shape=(5, 5),
                           align_corners=True)
  twice = fn(fn(image, grid(flip)), grid(rot))
  once = fn(image, grid(stn_jax.compose_affine(flip, rot)))
  np.testing.assert_allclose(twice, once, atol=1e-6)
  np.testing.assert_allclose(once, np.rot90(image[:, ::-1], axes=(0, 1)),
                             atol=1e-6)


def _random_homography(rng):
  h = np.eye(3) + 0.15 * rng.normal(size=(3, 3))
  return (h / h[2, 2]).astype(np.float32)


def test_projective_compose_and_invert():
  rng = np.random.default_rng(6)
  h1, h2 = _random_homography(rng), _random_homography(rng)
  h12 = np.asarray(stn_jax.compose_projective(h1, h2))
  assert h12.shape == (3, 3)
  np.testing.assert_allclose(h12[2, 2], 1.0, atol=1e-6)
  points = rng.uniform(-0.5, 0.5, size=(10, 2))
  np.testing.assert_allclose(ref.apply_homography(h12, points),
                             ref.apply_homography(h1, ref.apply_homography(h2, points)),
                             atol=1e-5)
  # [8] form, h33 = 1.
  np.testing.assert_allclose(
      stn_jax.compose_projective(h1.reshape(-1)[:8], h2.reshape(-1)[:8]), h12,
      atol=1e-6)
  inv = stn_jax.invert_projective(h1)
  np.testing.assert_allclose(np.asarray(inv)[2, 2], 1.0, atol=1e-6)
  np.testing.assert_allclose(stn_jax.compose_projective(h1, inv), np.eye(3),
                             atol=1e-5)
  np.testing.assert_allclose(stn_jax.compose_projective(inv, h1), np.eye(3),
                             atol=1e-5)
  # On grids: the composed grid is h1 applied to the points of h2's grid.
  grid2 = np.asarray(stn_jax.projective_grid(h2, (4, 5))).reshape(-1, 2)
  np.testing.assert_allclose(
      np.asarray(stn_jax.projective_grid(h12, (4, 5))).reshape(-1, 2),
      ref.apply_homography(h1, grid2), atol=1e-5)


def test_projective_from_points():
  rng = np.random.default_rng(7)
  src = np.array([[-1, -1], [1, -1], [-1, 1], [1, 1]], np.float64)
  src = (src + rng.normal(scale=0.1, size=(4, 2))).astype(np.float32)
  dst = (0.8 * src + rng.normal(scale=0.15, size=(4, 2))).astype(np.float32)
  h = np.asarray(stn_jax.projective_from_points(src, dst))
  assert h.shape == (3, 3)
  np.testing.assert_allclose(h[2, 2], 1.0, atol=1e-6)
  np.testing.assert_allclose(ref.apply_homography(h, src), dst, atol=1e-4)
  # The 8x8 direct linear solve in numpy float64 gives the same matrix.
  expected = ref.homography_from_points(src, dst)
  np.testing.assert_allclose(h, expected, atol=1e-4)
  # Round trip: the reverse correspondence is the inverse homography.
  back = stn_jax.projective_from_points(dst, src)
  np.testing.assert_allclose(back, stn_jax.invert_projective(h), atol=1e-4)
  np.testing.assert_allclose(stn_jax.compose_projective(back, h), np.eye(3),
                             atol=1e-4)


def test_algebra_bad_shapes_raise_naming_argument():
  with pytest.raises(ValueError, match=r"\ba\b"):
    stn_jax.compose_affine(np.zeros((3, 3)), IDENTITY)
  with pytest.raises(ValueError, match=r"\bb\b"):
    stn_jax.compose_affine(IDENTITY, np.zeros((2, 2)))
  with pytest.raises(ValueError, match="theta"):
    stn_jax.invert_affine(np.zeros((3, 3)))
  with pytest.raises(ValueError, match="src"):
    stn_jax.projective_from_points(np.zeros((3, 2)), np.zeros((4, 2)))
  with pytest.raises(ValueError, match="dst"):
    stn_jax.projective_from_points(np.zeros((4, 2)), np.zeros((4, 3)))


# ------------------------------------------------ hints for PyTorch habits


@pytest.mark.parametrize("call_with_a_batch,suggested", [
    (lambda b: stn_jax.make_grid("affine", b(np.ravel(IDENTITY)), (5, 6)),
     "jax.vmap(lambda p: stn_jax.make_grid('affine', p, (5, 6)))(params)"),
    (lambda b: stn_jax.make_grid("tps", b(stn_jax.identity_params("tps")),
                                 (5, 6)),
     "jax.vmap(lambda p: stn_jax.make_grid('tps', p, (5, 6)))(params)"),
    (lambda b: stn_jax.compose_affine(b(IDENTITY), IDENTITY),
     "jax.vmap(stn_jax.compose_affine)(a, b)"),
    (lambda b: stn_jax.invert_affine(b(IDENTITY)),
     "jax.vmap(stn_jax.invert_affine)(thetas)"),
    (lambda b: stn_jax.compose_projective(np.eye(3), b(np.eye(3))),
     "jax.vmap(stn_jax.compose_projective)(h1, h2)"),
    (lambda b: stn_jax.invert_projective(b(np.eye(3))),
     "jax.vmap(stn_jax.invert_projective)(hs)"),
    (lambda b: stn_jax.projective_from_points(
        b(np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)),
        np.zeros((4, 2))),
     "jax.vmap(stn_jax.projective_from_points)(src, dst)"),
])
def test_a_batch_gets_the_vmap_call(call_with_a_batch, suggested):
  def batch(x):
    return np.stack([np.asarray(x, np.float32)] * 8)
  with pytest.raises(ValueError, match=r"(?s)got shape \[8, .*ONE example; "
                     r"for a batch, use " + re.escape(suggested) + r"\.$"):
    call_with_a_batch(batch)


def test_suggested_make_grid_call_works():
  params = jnp.stack([stn_jax.identity_params("affine")] * 8)
  grids = eval(  # pylint: disable=eval-used
      "jax.vmap(lambda p: stn_jax.make_grid('affine', p, (5, 6)))(params)",
      {"jax": jax, "stn_jax": stn_jax, "params": params})
  assert grids.shape == (8, 5, 6, 2)
  np.testing.assert_allclose(grids[0], stn_jax.affine_grid(IDENTITY, (5, 6)))
