"""Tests of stn_jax.SpatialTransformer, the drop-in flax layer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax


class Localizer(nn.Module):
  """A small localiser: [B, H, W, C] -> [B, 16]."""

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    return nn.tanh(nn.Dense(16)(x))


class Net(nn.Module):
  """A user's network: a transformer in front of a small classifier."""

  @nn.compact
  def __call__(self, x):
    x = stn_jax.SpatialTransformer(Localizer(), transform="affine",
                                   output_size=(14, 14))(x)
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(10)(nn.relu(nn.Dense(32)(x)))


def _images(shape=(3, 20, 24, 2), seed=0):
  return jax.random.uniform(jax.random.key(seed), shape)


def test_exported_from_the_package_root():
  from stn_jax import SpatialTransformer  # pylint: disable=g-import-not-at-top
  from stn_jax import layers  # pylint: disable=g-import-not-at-top
  assert SpatialTransformer is layers.SpatialTransformer
  assert "SpatialTransformer" in dir(stn_jax)


@pytest.mark.parametrize("transform, kwargs", [
    ("affine", ()), ("attention", ()), ("projective", ()),
    ("tps", (("num_points", 9),))])
@pytest.mark.parametrize("align_corners", [True, False])
def test_identity_at_init(transform, kwargs, align_corners):
  x = _images()
  st = stn_jax.SpatialTransformer(Localizer(), transform=transform,
                                  transform_kwargs=kwargs,
                                  align_corners=align_corners)
  variables = st.init(jax.random.key(1), x)
  theta = variables["params"]["theta"]
  np.testing.assert_array_equal(theta["kernel"], 0.0)
  np.testing.assert_allclose(
      theta["bias"], stn_jax.identity_params(transform, **dict(kwargs)))
  out = st.apply(variables, x)
  assert out.shape == x.shape and out.dtype == x.dtype
  np.testing.assert_allclose(out, x, atol=1e-5)


def test_output_size_and_what_transform_input_returns():
  x = _images((2, 28, 28, 1))
  st = stn_jax.SpatialTransformer(Localizer(), transform="tps",
                                  transform_kwargs={"num_points": 16},
                                  output_size=(10, 12))
  variables = st.init(jax.random.key(0), x)
  out, state = st.apply(variables, x, mutable=["intermediates"])
  assert out.shape == (2, 10, 12, 1)
  assert state["intermediates"]["theta"][0].shape == (2, 32)
  out2, grid, theta = st.apply(variables, x, method=st.transform_input)
  np.testing.assert_array_equal(out2, out)
  assert grid.shape == (2, 10, 12, 2) and theta.shape == (2, 32)
  # The grid is the public make_grid of theta; the output its sample.
  want = jax.vmap(lambda p: stn_jax.make_grid(
      "tps", p, (10, 12), num_points=16))(theta)
  np.testing.assert_allclose(grid, want, atol=1e-6)
  np.testing.assert_allclose(
      out, jax.vmap(stn_jax.sample)(x, grid), atol=1e-6)


def test_gradients_reach_the_localizer():
  x = _images((4, 16, 16, 1))
  labels = jnp.arange(4) % 10
  net = Net()
  params = jax.jit(net.init)(jax.random.key(0), x)["params"]

  def loss(params):
    logits = net.apply({"params": params}, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

  # Jitted: op by op, each primitive compiles on its own (slow on CPU).
  grads = jax.jit(jax.grad(loss))(params)
  st = grads["SpatialTransformer_0"]
  # theta's kernel sees the localiser's features; a zero kernel at init
  # passes no gradient further down, so check with a small kernel too.
  assert np.abs(st["theta"]["kernel"]).max() > 0
  assert np.abs(st["theta"]["bias"]).max() > 0
  assert all(np.abs(g).max() == 0 for g in jax.tree.leaves(
      grads["Localizer_0"]))
  kernel = params["SpatialTransformer_0"]["theta"]["kernel"]
  moved = jax.tree.map(lambda p: p, params)
  moved["SpatialTransformer_0"]["theta"]["kernel"] = 0.01 * jax.random.normal(
      jax.random.key(1), kernel.shape)
  grads = jax.jit(jax.grad(loss))(moved)
  # Built inside Net's compact method, the localiser is Net's child (flax).
  loc = grads["Localizer_0"]
  assert all(np.abs(g).max() > 0 for g in jax.tree.leaves(loc))


def test_standalone_layer_owns_its_localizer_and_trains_it():
  x = _images((4, 12, 12, 1))
  target = jnp.roll(x, 2, axis=2)  # Learn a shift.
  st = stn_jax.SpatialTransformer(Localizer(), align_corners=True)
  params = st.init(jax.random.key(0), x)["params"]
  assert set(params) == {"localizer", "theta"}
  loss = lambda p: jnp.mean((st.apply({"params": p}, x) - target) ** 2)
  grads = jax.jit(jax.grad(loss))(params)
  assert np.abs(grads["theta"]["kernel"]).max() > 0
  moved = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
  grads = jax.jit(jax.grad(loss))(moved)
  assert all(np.abs(g).max() > 0 for g in jax.tree.leaves(grads["localizer"]))


def test_composes_inside_a_users_module_under_jit():
  x = _images((5, 16, 16, 1))
  net = Net()
  params = net.init(jax.random.key(0), x)["params"]
  assert set(params) == {"SpatialTransformer_0", "Localizer_0", "Dense_0",
                         "Dense_1"}
  logits = jax.jit(net.apply)({"params": params}, x)
  assert logits.shape == (5, 10)
  # At init the transformer is the identity resampling onto 14 x 14: the
  # classifier sees the input through the identity grid.
  st = stn_jax.SpatialTransformer(Localizer(), output_size=(14, 14))
  seen = st.apply({"params": {**params["SpatialTransformer_0"],
                              "localizer": params["Localizer_0"]}}, x)
  grid = stn_jax.affine_grid(jnp.eye(2, 3), (14, 14))
  np.testing.assert_allclose(
      seen, jax.vmap(lambda im: stn_jax.sample(im, grid))(x), atol=1e-6)


@pytest.mark.parametrize("build, x, match", [
    (dict(), np.zeros((16, 16, 1), np.float32), r"\[B, H, W, C\].*x\[None\]"),
    (dict(), np.zeros((2, 16, 16), np.float32), r"\[B, H, W, C\]"),
    (dict(), np.zeros((2, 16, 16, 1), np.uint8), "floating"),
    (dict(transform="similarity"), np.zeros((2, 16, 16, 1), np.float32),
     "affine"),
    (dict(output_size=(0, 4)), np.zeros((2, 16, 16, 1), np.float32),
     "output_size"),
    (dict(output_size=5), np.zeros((2, 16, 16, 1), np.float32),
     "output_size"),
])
def test_bad_input_gets_a_clear_error(build, x, match):
  st = stn_jax.SpatialTransformer(Localizer(), **build)
  with pytest.raises(ValueError, match=match):
    st.init(jax.random.key(0), x)


def test_a_localizer_that_drops_the_batch_is_named():

  class Bad(nn.Module):

    @nn.compact
    def __call__(self, x):
      return nn.Dense(4)(x.reshape(-1))

  st = stn_jax.SpatialTransformer(Bad())
  with pytest.raises(ValueError, match="localizer"):
    st.init(jax.random.key(0), np.zeros((2, 8, 8, 1), np.float32))
