"""Every bilinear/trilinear path of `stn_jax.sample` computes the same thing.

`tests/test_sampler.py` checks the default path against torch; here every
other path (`stn_jax.sampler.LINEAR_PATHS`) must give the same values and the
same gradients (image and grid) as the "gather" path, for every padding mode
and align_corners, in 2D and 3D, with sample points outside the image and
exactly on pixel centres (where the kernel's sub-gradient matters). Also: the
`auto` heuristic picks what the benchmark measured to be fastest.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax
from stn_jax import sampler

PADDINGS = ("zeros", "border", "reflection")
OTHER_PATHS = tuple(p for p in sampler.LINEAR_PATHS if p != "gather")


@functools.lru_cache(maxsize=None)
def _value_and_grads(path, padding_mode, align_corners):
  """Jitted (image, grid, cotangent) -> (out, d image, d grid)."""

  def fn(image, grid, cotangent):
    out, vjp = jax.vjp(
        functools.partial(stn_jax.sample, padding_mode=padding_mode,
                          align_corners=align_corners, path=path),
        image, grid)
    return (out,) + vjp(cotangent)

  return jax.jit(fn)


def _case(ndim, seed=0):
  """Image, grid (some points outside, some exactly on pixel centres) and
  cotangent; the spatial sizes differ per axis so transposed axes show."""
  rng = np.random.default_rng(seed)
  spatial = (5, 7) if ndim == 2 else (4, 5, 6)
  out_spatial = (6, 4) if ndim == 2 else (3, 4, 5)
  image = rng.normal(size=spatial + (3,)).astype(np.float32)
  grid = rng.uniform(-1.4, 1.4, size=out_spatial + (ndim,)).astype(np.float32)
  # -1, 0, +1 land on integer pixel coordinates for many axes: +-1 are the
  # corner centres with align_corners=True, 0 the centre pixel of odd sizes.
  flat = grid.reshape(-1, ndim)
  flat[: flat.shape[0] // 3] = rng.choice([-1.0, 0.0, 1.0],
                                          size=(flat.shape[0] // 3, ndim))
  cotangent = rng.normal(size=out_spatial + (3,)).astype(np.float32)
  return image, flat.reshape(grid.shape), cotangent


@pytest.mark.parametrize(
    "path,ndim,padding_mode,align_corners",
    list(itertools.product(OTHER_PATHS, (2, 3), PADDINGS, (True, False))))
def test_path_matches_gather_values_and_gradients(path, ndim, padding_mode,
                                                  align_corners):
  image, grid, cotangent = _case(ndim)
  want = _value_and_grads("gather", padding_mode, align_corners)(
      image, grid, cotangent)
  got = _value_and_grads(path, padding_mode, align_corners)(
      image, grid, cotangent)
  for name, w, g in zip(("output", "d_image", "d_grid"), want, got):
    np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=2e-5,
                               rtol=1e-5, err_msg=f"{path}: {name}")
  # The case is not degenerate: outputs and both gradients are non-zero.
  assert all(np.abs(np.asarray(w)).max() > 0.1 for w in want)


@pytest.mark.parametrize("path", OTHER_PATHS)
def test_path_under_vmap_and_bfloat16(path):
  image, grid, _ = _case(2, seed=1)
  images = jnp.stack([image, -image]).astype(jnp.bfloat16)
  grids = jnp.stack([grid, grid[::-1]])
  fn = jax.jit(jax.vmap(functools.partial(stn_jax.sample, path=path)))
  ref = jax.jit(jax.vmap(functools.partial(stn_jax.sample, path="gather")))
  got, want = fn(images, grids), ref(images, grids)
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(got, np.float32),
                             np.asarray(want, np.float32), atol=2e-2)
  d_image = jax.grad(lambda i: jnp.sum(
      stn_jax.sample(i, grid, path=path).astype(jnp.float32)))(images[0])
  assert d_image.dtype == jnp.bfloat16


def test_auto_picks_gather_for_the_benchmark_shapes():
  # (sizes in (x, y) order, output points, channels): the benchmark's shapes,
  # where gathering was measured 20x+ faster than the matmul paths.
  assert sampler.choose_linear_path((42, 42), 28 * 28, 1) == "gather"
  assert sampler.choose_linear_path((56, 56), 56 * 56, 64) == "gather"
  assert sampler.choose_linear_path((224, 224), 224 * 224, 3) == "gather"
  assert sampler.choose_linear_path((16, 16, 16), 4096, 1) == "gather"
  # 6x6x1 -> 5x5: measured a tie forward, separable slower with backward.
  assert sampler.choose_linear_path((6, 6), 25, 1) == "gather"


def test_auto_picks_separable_for_tiny_images():
  assert sampler.choose_linear_path((2, 2), 4, 1) == "separable"
  assert sampler.choose_linear_path((2, 2, 2), 8, 1) == "separable"


def test_unknown_path_is_rejected_by_name():
  with pytest.raises(ValueError, match="`path`"):
    stn_jax.sample(jnp.zeros((4, 4, 1)), jnp.zeros((2, 2, 2)), path="fast")


@pytest.mark.parametrize("flat_batched, idx_batched",
                         [(True, True), (True, False), (False, True)])
def test_take_rows_batch_folding_matches_plain_indexing(flat_batched,
                                                        idx_batched):
  """The vmap rule of `take_rows` (batch folded into the row axis) gives the
  values and gradients of plain `flat[idx]`, also under nested vmap."""
  from stn_jax.sampler import take_rows  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  flat = jnp.asarray(rng.standard_normal((2, 3, 11, 4)), jnp.float32)
  idx = jnp.asarray(rng.integers(0, 11, (2, 3, 5, 6)), jnp.int32)
  cot = jnp.asarray(rng.standard_normal((2, 3, 5, 6, 4)), jnp.float32)
  if not flat_batched:
    flat = flat[0, 0]
  if not idx_batched:
    idx = idx[0, 0]
  axes = (0 if flat_batched else None, 0 if idx_batched else None)

  def loss(take):
    def per_example(f, i):
      return take(f, i)
    inner = jax.vmap(per_example, in_axes=axes)
    outer = jax.vmap(inner, in_axes=axes)
    return lambda f: jnp.sum(outer(f, idx) * cot)

  plain = lambda f, i: f[i]
  # The gathered values are equal; the jitted sums may add in another order.
  np.testing.assert_array_equal(
      jax.vmap(jax.vmap(take_rows, in_axes=axes), in_axes=axes)(flat, idx),
      jax.vmap(jax.vmap(plain, in_axes=axes), in_axes=axes)(flat, idx))
  np.testing.assert_allclose(
      jax.jit(loss(take_rows))(flat), jax.jit(loss(plain))(flat), rtol=1e-5)
  np.testing.assert_allclose(
      jax.jit(jax.grad(loss(take_rows)))(flat),
      jax.jit(jax.grad(loss(plain)))(flat), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "nearest", "bicubic"])
def test_forward_mode_matches_reverse_mode_under_vmap(method):
  """jvp w.r.t. image and grid (vmapped, jitted) equals the vjp-based
  directional derivative: <jvp(t), c> == <t, vjp(c)>."""
  rng = np.random.default_rng(3)
  img = jnp.asarray(rng.standard_normal((3, 6, 7, 2)), jnp.float32)
  grid = jnp.asarray(rng.uniform(-1.2, 1.2, (3, 4, 5, 2)), jnp.float32)
  t_img = jnp.asarray(rng.standard_normal(img.shape), jnp.float32)
  t_grid = jnp.asarray(rng.standard_normal(grid.shape), jnp.float32)
  cot = jnp.asarray(rng.standard_normal((3, 4, 5, 2)), jnp.float32)
  fn = jax.vmap(functools.partial(stn_jax.sample, method=method))
  _, tangent_out = jax.jit(lambda a, b, ta, tb: jax.jvp(
      fn, (a, b), (ta, tb)))(img, grid, t_img, t_grid)
  _, vjp = jax.vjp(fn, img, grid)
  g_img, g_grid = vjp(cot)
  lhs = jnp.sum(tangent_out * cot)
  rhs = jnp.sum(g_img * t_img) + jnp.sum(g_grid * t_grid)
  np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)
