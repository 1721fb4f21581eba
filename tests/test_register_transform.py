"""A transform family registered at run time works wherever a built-in one does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax
from configs import distorted_mnist
from stn_jax.cpu import warp as cpu_warp
from stn_jax import models
from stn_jax import train


def _shear_grid(params, shape, *, align_corners=False):
  # x_s = x_t + k * y_t, y_s = y_t: one parameter, k.
  base = stn_jax.base_grid(shape, align_corners=align_corners)
  x, y = base[..., 0], base[..., 1]
  return jnp.stack([x + params[0] * y, y], axis=-1)


@pytest.fixture
def shear():
  entry = stn_jax.register_transform(
      "shear", num_params=1, identity=lambda: jnp.zeros(1),
      grid=_shear_grid)
  yield entry
  del stn_jax.TRANSFORMS["shear"]


def test_registered_family_in_the_library(shear):
  assert stn_jax.num_params("shear") == 1
  np.testing.assert_array_equal(stn_jax.identity_params("shear"), [0.0])
  grid = stn_jax.make_grid("shear", jnp.array([0.5]), (4, 4),
                           align_corners=True)
  np.testing.assert_allclose(grid[..., 0] - grid[..., 1] * 0.5,
                             stn_jax.base_grid((4, 4), align_corners=True)[
                                 ..., 0], atol=1e-6)
  # The models' fused warp falls back to make_grid + sample (no batch path).
  images = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
  params = jnp.array([[0.0], [0.3], [-0.2]])
  got = cpu_warp.warp(images, params, transform="shear", output_size=(8, 8),
                      align_corners=True)
  want = stn_jax.warp(images, params, transform="shear",
                      output_size=(8, 8), align_corners=True)
  np.testing.assert_allclose(got, want, atol=1e-6)
  np.testing.assert_allclose(got[0], images[0], atol=1e-5)  # identity
  with pytest.raises(ValueError, match="params"):
    stn_jax.make_grid("shear", jnp.zeros(2), (4, 4))
  with pytest.raises(ValueError, match="no keyword options"):
    stn_jax.num_params("shear", num_points=4)


def test_registered_family_in_configs_models_and_training(shear):
  cfg = distorted_mnist.get_config("r,st_fcn,shear,smoke")
  assert cfg.model.transform == "shear"
  train.validate_config(cfg)
  model = models.build_model(cfg.model, canvas_size=28)
  tx, _ = train.make_optimizer(cfg.train)
  state = train.create_train_state(model, tx, jax.random.key(0),
                                   canvas_size=28)
  np.testing.assert_array_equal(state.params["theta"]["bias"], [0.0])
  rng = np.random.default_rng(0)
  batch = (rng.random((16, 28, 28, 1), np.float32),
           rng.integers(0, 10, 16).astype(np.int32))
  new, metrics = jax.jit(train.train_step)(state, batch)
  assert np.isfinite(metrics["loss"])
  assert np.abs(new.params["theta"]["kernel"]).max() > 0  # it learns


def test_register_transform_rejects_bad_entries(shear):
  with pytest.raises(ValueError, match="already"):
    stn_jax.register_transform("affine", num_params=6,
                               identity=lambda: jnp.zeros(6), grid=_shear_grid)
  with pytest.raises(ValueError, match="num_params"):
    stn_jax.register_transform("bad", num_params=0,
                               identity=lambda: jnp.zeros(1), grid=_shear_grid)
  with pytest.raises(ValueError, match="grid"):
    stn_jax.register_transform("bad", num_params=1,
                               identity=lambda: jnp.zeros(1), grid=None)
  stn_jax.register_transform("bad_identity", num_params=2,
                             identity=lambda: jnp.zeros(3), grid=_shear_grid)
  try:
    with pytest.raises(ValueError, match="identity"):
      stn_jax.identity_params("bad_identity")
  finally:
    del stn_jax.TRANSFORMS["bad_identity"]
  with pytest.raises(ValueError, match="distortion.*'zz'|unexpected item"):
    distorted_mnist.get_config("r,st_fcn,zz")
