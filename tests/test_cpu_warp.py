"""stn_jax.cpu.warp: the fused grid + sampling against the plain path and torch.

`warp` must compute `vmap(sample)(images, vmap(make_grid)(params))`: the same
values and the same gradients w.r.t. images and transform parameters, for
every transform family and both conventions, with sample points inside,
across and entirely outside the image, and at the identity (every point on a
pixel centre, where the bilinear kernel's one-sided derivative matters).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import stn_jax
from stn_jax.cpu import warp as cpu_warp
from stn_jax import sampler

CASES = [("affine", {}), ("attention", {}), ("projective", {}),
         ("tps", {"num_points": 9})]
IN_SHAPE, OUT_SHAPE, CHANNELS, BATCH = (6, 9), (5, 7), 1, 4


def _params(transform, kw, rng, scale):
  n = stn_jax.num_params(transform, **kw)
  ident = np.asarray(stn_jax.identity_params(transform, **kw), np.float32)
  p = ident + scale * rng.standard_normal((BATCH, n)).astype(np.float32)
  if transform in ("affine", "attention"):
    p[-1, -1] += 5.0  # The last example looks entirely outside the image.
  if transform == "projective":
    p[-1, 6] = -3.0  # Part of its grid lies behind the horizon.
  return jnp.asarray(p)


@functools.lru_cache(maxsize=None)
def _value_and_grads(impl, transform, kw_items, align_corners, out_shape):
  """Jitted (images, params, cotangent) -> (out, d images, d params)."""
  warp = {"fast": cpu_warp.warp, "xla": stn_jax.warp}[impl]
  fn = functools.partial(warp, transform=transform,
                         output_size=out_shape, align_corners=align_corners,
                         **dict(kw_items))

  def run(images, params, cotangent):
    out, vjp = jax.vjp(fn, images, params)
    return (out,) + vjp(cotangent)

  return jax.jit(run)


def _both(transform, kw, align_corners, images, params, out_shape=OUT_SHAPE):
  rng = np.random.default_rng(1)
  cot = jnp.asarray(rng.standard_normal(
      (BATCH,) + out_shape + (CHANNELS,)).astype(np.float32))
  key = (transform, tuple(sorted(kw.items())), align_corners, out_shape)
  return [_value_and_grads(impl, *key)(images, params, cot)
          for impl in ("fast", "xla")]


def _images(rng, shape=IN_SHAPE):
  return jnp.asarray(rng.standard_normal(
      (BATCH,) + shape + (CHANNELS,)).astype(np.float32))


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("transform,kw", CASES)
def test_warp_matches_plain_path(transform, kw, align_corners):
  rng = np.random.default_rng(0)
  images = _images(rng)
  params = _params(transform, kw, rng, scale=0.3)
  fast, plain = _both(transform, kw, align_corners, images, params)
  np.testing.assert_allclose(fast[0], plain[0], atol=1e-5)  # values
  np.testing.assert_allclose(fast[1], plain[1], atol=1e-5)  # d images
  scale = float(np.max(np.abs(plain[2])))
  np.testing.assert_allclose(fast[2], plain[2], atol=1e-4 * scale)  # d params
  if transform in ("affine", "attention"):
    # The example looking outside reads zeros and passes no gradient.
    assert np.all(np.asarray(fast[0][-1]) == 0)
    assert np.all(np.asarray(fast[2][-1]) == 0)


@pytest.mark.parametrize("transform", ["affine", "attention", "projective"])
def test_identity_reproduces_the_input_with_the_same_gradients(transform):
  # Every sample point on a pixel centre: the kinks of the bilinear kernel.
  # Sizes with size - 1 a power of two: the centres unnormalise exactly.
  shape = (5, 9)
  rng = np.random.default_rng(2)
  images = _images(rng, shape)
  params = jnp.tile(stn_jax.identity_params(transform)[None], (BATCH, 1))
  fast, plain = _both(transform, {}, True, images, params, out_shape=shape)
  np.testing.assert_array_equal(fast[0], images)
  np.testing.assert_allclose(fast[1], plain[1], atol=1e-6)
  np.testing.assert_allclose(fast[2], plain[2], rtol=1e-5, atol=1e-5)
  assert np.any(np.asarray(fast[2]) != 0)  # The one-sided derivative.


@pytest.mark.parametrize("warp", [cpu_warp.warp, stn_jax.warp],
                         ids=["cpu.warp", "stn_jax.warp"])
@pytest.mark.parametrize("align_corners", [True, False])
def test_affine_warp_matches_torch(warp, align_corners):
  rng = np.random.default_rng(3)
  images = _images(rng)
  theta = _params("affine", {}, rng, scale=0.3)
  cot = rng.standard_normal((BATCH,) + OUT_SHAPE + (CHANNELS,)).astype(
      np.float32)
  out, vjp = jax.vjp(functools.partial(
      warp, transform="affine", output_size=OUT_SHAPE,
      align_corners=align_corners), images, theta)
  d_images, d_theta = vjp(jnp.asarray(cot))

  t_images = torch.tensor(np.moveaxis(np.asarray(images), -1, 1),
                          requires_grad=True)
  t_theta = torch.tensor(np.asarray(theta).reshape(BATCH, 2, 3),
                         requires_grad=True)
  grid = torch.nn.functional.affine_grid(
      t_theta, (BATCH, CHANNELS) + OUT_SHAPE, align_corners=align_corners)
  t_out = torch.nn.functional.grid_sample(
      t_images, grid, mode="bilinear", padding_mode="zeros",
      align_corners=align_corners)
  t_out.backward(torch.tensor(np.moveaxis(cot, -1, 1)))
  np.testing.assert_allclose(out, np.moveaxis(t_out.detach().numpy(), 1, -1),
                             atol=1e-5)
  np.testing.assert_allclose(
      d_images, np.moveaxis(t_images.grad.numpy(), 1, -1), atol=1e-5)
  np.testing.assert_allclose(d_theta, t_theta.grad.numpy().reshape(BATCH, 6),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("method,padding_mode", [("nearest", "zeros"),
                                                 ("bilinear", "border"),
                                                 ("bicubic", "reflection")])
def test_unfused_options_take_the_plain_path(method, padding_mode):
  rng = np.random.default_rng(4)
  images = _images(rng)
  params = _params("affine", {}, rng, scale=0.3)
  kw = dict(transform="affine", output_size=OUT_SHAPE, align_corners=False,
            method=method, padding_mode=padding_mode)
  np.testing.assert_array_equal(cpu_warp.warp(images, params, **kw),
                                stn_jax.warp(images, params, **kw))


def test_bilinear_zeros_keeps_the_image_dtype():
  rng = np.random.default_rng(5)
  images = _images(rng).astype(jnp.bfloat16)
  params = _params("affine", {}, rng, scale=0.3)
  out = cpu_warp.warp(images, params, transform="affine",
                      output_size=OUT_SHAPE)
  assert out.dtype == jnp.bfloat16
  assert out.shape == (BATCH,) + OUT_SHAPE + (CHANNELS,)


def test_bad_inputs_raise_clear_errors():
  images = jnp.zeros((2, 6, 6, 1))
  params = jnp.zeros((2, 6))
  kw = dict(transform="affine", output_size=(4, 4))
  with pytest.raises(ValueError, match="transform"):
    cpu_warp.warp(images, params, **dict(kw, transform="similarity"))
  with pytest.raises(ValueError, match="params"):
    cpu_warp.warp(images, jnp.zeros((2, 5)), **kw)
  with pytest.raises(ValueError, match="params"):
    cpu_warp.warp(images, jnp.zeros((3, 6)), **kw)
  with pytest.raises(ValueError, match="images"):
    cpu_warp.warp(images[0], params, **kw)
  with pytest.raises(ValueError, match="images"):
    cpu_warp.warp(images.astype(jnp.int32), params, **kw)
  with pytest.raises(ValueError, match="output_size"):
    cpu_warp.warp(images, params, **dict(kw, output_size=(4, 0)))
  with pytest.raises(ValueError, match="padding_mode"):
    cpu_warp.warp(images, params, padding_mode="wrap", **kw)
  with pytest.raises(ValueError, match="no keyword options"):
    cpu_warp.warp(images, params, num_points=4, **kw)
  with pytest.raises(ValueError, match="num_points"):
    cpu_warp.warp(images, jnp.zeros((2, 10)), transform="tps",
                  output_size=(4, 4), num_points=5)


def test_kernel_with_several_channels_matches_the_sampler():
  # `warp` fuses single-channel images only; the kernel itself takes any C.
  rng = np.random.default_rng(6)
  images = jnp.asarray(rng.standard_normal((2, 6, 9, 3)).astype(np.float32))
  x, y = (jnp.asarray(rng.uniform(-1.3, 1.3, (2, 11)).astype(np.float32))
          for _ in range(2))
  cot = jnp.asarray(rng.standard_normal((2, 11, 3)).astype(np.float32))

  def plain(images, x, y):
    grid = jnp.stack([x, y], -1)[:, :, None, :]
    return jax.vmap(lambda im, g: stn_jax.sample(im, g, align_corners=True))(
        images, grid)[:, :, 0]

  fused = functools.partial(sampler.bilinear_zeros, align_corners=True)
  out, vjp = jax.vjp(fused, images, x, y)
  ref, ref_vjp = jax.vjp(plain, images, x, y)
  np.testing.assert_allclose(out, ref, atol=1e-6)
  for a, b in zip(vjp(cot), ref_vjp(cot)):
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_differentiated_forward_gives_the_plain_values():
  # Under jax.grad the forward pass reads the corner table; evaluated alone
  # it is the plain sampler. Both give the same values.
  rng = np.random.default_rng(7)
  images = _images(rng)
  params = _params("projective", {}, rng, scale=0.3)
  fn = functools.partial(cpu_warp.warp, transform="projective",
                         output_size=OUT_SHAPE, align_corners=False)
  np.testing.assert_allclose(jax.vjp(fn, images, params)[0],
                             fn(images, params), atol=1e-6)


def test_batches_beyond_int32_indices_raise():
  # Shapes only (eval_shape): nothing of this size is allocated.
  images = jax.ShapeDtypeStruct((70_000, 180, 180, 1), jnp.float32)
  coords = jax.ShapeDtypeStruct((70_000, 4), jnp.float32)
  with pytest.raises(ValueError, match="int32"):
    jax.eval_shape(functools.partial(sampler.bilinear_zeros,
                                     align_corners=True), images, coords,
                   coords)
