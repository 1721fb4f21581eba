"""Tests of stn_jax.models: shapes, parameter budgets, identity initialisation."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import stn_jax
from configs import distorted_mnist
from stn_jax import models

ST_TRANSFORMS = ("affine", "attention", "projective", "tps")


def _init(model, canvas):
  return models.init_params(model, jax.random.key(0), canvas_size=canvas)


def _model(arg):
  cfg = distorted_mnist.get_config(arg)
  canvas = cfg.distortion.canvas_size
  return models.build_model(cfg.model, canvas_size=canvas), cfg, canvas


@pytest.mark.parametrize("dist,name", list(itertools.product(
    ("r", "rts", "tc"), ("fcn", "cnn", "st_fcn", "st_cnn"))))
def test_output_shapes(dist, name):
  model, cfg, canvas = _model(f"{dist},{name}")
  x = jax.ShapeDtypeStruct((3, canvas, canvas, 1), jnp.float32)
  params = jax.eval_shape(
      lambda: models.init_params(model, jax.random.key(0), canvas_size=canvas))
  logits = jax.eval_shape(lambda p, x: model.apply({"params": p}, x), params, x)
  assert logits.shape == (3, models.NUM_CLASSES)
  assert logits.dtype == jnp.float32
  if name in models.ST_MODELS:
    out, grid, theta = jax.eval_shape(
        lambda p, x: model.apply({"params": p}, x,
                                 method=model.transform_input), params, x)
    side = canvas // cfg.model.st_downsample
    assert out.shape == (3, side, side, 1)
    assert grid.shape == (3, side, side, 2)
    assert theta.shape == (3, stn_jax.num_params("affine"))
    # The larger canvases are down-sampled by 2 before the classifier.
    assert side == (canvas // 2 if dist in ("rts", "tc") else canvas)


@pytest.mark.parametrize("dist", distorted_mnist.DISTORTIONS)
def test_param_counts_match_within_10_percent_per_family(dist):
  # Each family of a column (FCN / ST-FCN-*, CNN / ST-CNN-*) has about one
  # parameter count; the FCN family is sized at ~400k (configs' docstring).
  for family, budget in (("fcn", (360_000, 440_000)),
                         ("cnn", (90_000, 200_000))):
    counts = {}
    for name in (family, f"st_{family}"):
      transforms = ST_TRANSFORMS if name in models.ST_MODELS else (None,)
      for transform in transforms:
        arg = f"{dist},{name}" + (f",{transform}" if transform else "")
        model, _, canvas = _model(arg)
        counts[arg] = models.param_count(model, canvas_size=canvas)
    low, high = min(counts.values()), max(counts.values())
    assert high <= 1.1 * low, counts
    assert budget[0] <= low and high <= budget[1], counts


def test_init_params_equals_flax_eager_init():
  model, _, canvas = _model("r,fcn")  # Few ops: the eager reference is cheap.
  key = jax.random.key(7)
  params = models.init_params(model, key, canvas_size=canvas)
  expected = model.init(key, jnp.zeros((1, canvas, canvas, 1)))["params"]
  assert jax.tree.structure(params) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected)):
    np.testing.assert_array_equal(got, want)


def test_transform_input_is_the_models_transformer():
  model, _, canvas = _model("rts,st_fcn,projective")
  params = _init(model, canvas)
  # Away from the identity, so that the grid depends on the parameters.
  params = jax.tree.map(lambda p: p + 0.01, params)
  x = jax.random.uniform(jax.random.key(1), (2, canvas, canvas, 1))
  got = models.transform_input(model, params, x)
  want = jax.jit(lambda p, x: model.apply(
      {"params": p}, x, method=model.transform_input))(params, x)
  half = canvas // 2
  assert [g.shape for g in got] == [(2, half, half, 1), (2, half, half, 2),
                                    (2, 8)]
  for g, w in zip(got, want):
    np.testing.assert_array_equal(g, w)


def test_count_params_matches_init():
  model, _, canvas = _model("r,cnn")
  params = _init(model, canvas)
  # CNN(32, 64) on 28x28: conv 9x9x1x32, conv 7x7x32x64, dense 7*7*64 -> 10.
  expected = (81 * 32 + 32) + (49 * 32 * 64 + 64) + (7 * 7 * 64 * 10 + 10)
  assert models.count_params(params) == expected
  assert models.param_count(model, canvas_size=canvas) == expected


@pytest.mark.parametrize("name,transform,dist", [
    ("st_cnn", "affine", "rts"), ("st_fcn", "tps", "r"),
])
def test_identity_init_is_classifier_on_resampled_input(name, transform, dist):
  model, cfg, canvas = _model(f"{dist},{name},{transform}")
  x = jax.random.uniform(jax.random.key(1), (2, canvas, canvas, 1))
  params = _init(model, canvas)
  kw = dict(models.transform_kwargs(cfg.model))
  identity = stn_jax.identity_params(transform, **kw)
  # The regression layer starts at zero weights and the identity bias.
  np.testing.assert_array_equal(params["theta"]["kernel"], 0.0)
  np.testing.assert_array_equal(params["theta"]["bias"], identity)

  side = canvas // cfg.model.st_downsample
  grid = stn_jax.make_grid(transform, identity, (side, side),
                           align_corners=True, **kw)
  resampled = jax.jit(jax.vmap(lambda im: stn_jax.sample(
      im, grid, align_corners=True)))(x)
  expected = jax.jit(model.classifier.apply)(
      {"params": params["classifier"]}, resampled)
  logits, out = jax.jit(lambda p, x: (
      model.apply({"params": p}, x),
      model.apply({"params": p}, x, method=model.transform_input)[0]))(
          params, x)
  np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
  # The model builds its grid inside another XLA program (the TPS solve
  # fused differently), so float32 rounding of a few 1e-6 is expected.
  np.testing.assert_allclose(out, resampled, atol=1e-5)
  if side == canvas:  # Same size: the identity transformer is a no-op.
    np.testing.assert_allclose(out, x, atol=1e-5)


def test_valid_padding_cnn_shapes_and_counts():
  cfg = distorted_mnist.get_config("r,cnn")
  cfg.model.classifier.padding = "VALID"
  model = models.build_model(cfg.model, canvas_size=28)
  # 28 -> conv 9x9 -> 20 -> pool -> 10 -> conv 7x7 -> 4 -> pool -> 2.
  expected = (81 * 32 + 32) + (49 * 32 * 64 + 64) + (2 * 2 * 64 * 10 + 10)
  assert models.param_count(model, canvas_size=28) == expected
  # RTS's 21x21 transformer output is too small for two VALID convolutions.
  cfg = distorted_mnist.get_config("rts,st_cnn")
  cfg.model.classifier.padding = "VALID"
  model = models.build_model(cfg.model, canvas_size=42)
  with pytest.raises(ValueError, match="convolution 1.*VALID.*6x6"):
    models.param_count(model, canvas_size=42)


@pytest.mark.parametrize("name", ["st_fcn", "st_cnn"])
def test_avg_pool_downsampling_at_identity_is_the_pooled_input(name):
  cfg = distorted_mnist.get_config(f"rts,{name},affine")
  cfg.model.st_downsample_by = "avg_pool"
  model = models.build_model(cfg.model, canvas_size=42)
  x = jax.random.uniform(jax.random.key(2), (2, 42, 42, 1))
  params = _init(model, 42)
  out, grid, _ = models.transform_input(model, params, x)
  # The identity grid at full size (align_corners) reads every pixel; the
  # classifier then sees the mean of each 2x2 block.
  assert grid.shape == (2, 42, 42, 2)
  expected = np.asarray(x).reshape(2, 21, 2, 21, 2, 1).mean(axis=(2, 4))
  np.testing.assert_allclose(out, expected, atol=1e-5)
  grid_model = models.build_model(
      distorted_mnist.get_config(f"rts,{name},affine").model, canvas_size=42)
  assert models.param_count(model, canvas_size=42) == models.param_count(
      grid_model, canvas_size=42)


def test_localizer_gets_gradient_at_identity():
  # At the identity the sampling points sit on pixel centres; the sampler's
  # sub-gradient there must not vanish, or the transformer never moves.
  model, _, canvas = _model("r,st_cnn,affine")
  x = jax.random.uniform(jax.random.key(1), (2, canvas, canvas, 1))
  params = _init(model, canvas)

  def loss(p):
    return jnp.sum(model.apply({"params": p}, x) ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  assert float(jnp.abs(grads["theta"]["kernel"]).max()) > 0
  assert float(jnp.abs(grads["theta"]["bias"]).max()) > 0


def test_bad_inputs_raise():
  model, _, _ = _model("r,fcn")
  with pytest.raises(ValueError, match="B, H, W, C"):
    model.init(jax.random.key(0), jnp.zeros((28, 28, 1)))
  cfg = distorted_mnist.get_config("r,cnn")
  cfg.model.name = "resnet"
  with pytest.raises(ValueError, match="model.name.*resnet"):
    models.build_model(cfg.model, canvas_size=28)
  cfg = distorted_mnist.get_config("rts,st_cnn")
  cfg.model.st_downsample = 4
  with pytest.raises(ValueError, match="st_downsample"):
    models.build_model(cfg.model, canvas_size=42)
  assert set(models.MODELS) == {"fcn", "cnn", "st_fcn", "st_cnn"}


def test_registry_parts_own_their_fields():
  # Every model's config fields come from its registry parts.
  for name, spec in models.MODELS.items():
    cfg = distorted_mnist.get_config(f"r,{name}").model
    assert tuple(cfg.classifier.keys()) == tuple(
        sorted(models.CLASSIFIERS[spec.classifier].fields))
    if spec.has_transformer:
      assert name in models.ST_MODELS
      assert set(cfg.localizer.keys()) == set(
          models.LOCALIZERS[spec.localizer].fields)
    else:
      assert cfg.localizer is None and name not in models.ST_MODELS


@pytest.mark.parametrize("key,value,match", [
    ("classifier.hidden", (0, 3), "model.classifier.hidden"),
    ("localizer.hidden", (32, 0), "model.localizer.hidden"),
    ("kernels", "cuda", "model.kernels"),
    ("st_downsample_by", "max", "model.st_downsample_by"),
    ("padding_mode", "wrap", "model.padding_mode"),
])
def test_validate_model_config_names_the_key(key, value, match):
  cfg = distorted_mnist.get_config("rts,st_fcn,affine").model
  node = cfg
  *parents, leaf = key.split(".")
  for p in parents:
    node = node[p]
  with cfg.unlocked():
    node[leaf] = value
  with pytest.raises(ValueError, match=match):
    models.build_model(cfg, canvas_size=42)


def test_a_new_model_is_one_registry_entry(monkeypatch):
  # An ST model with a CNN localiser and an FCN classifier: no other edit.
  monkeypatch.setitem(models.MODELS, "st_mixed",
                      models.ModelSpec("fcn", localizer="cnn"))
  cfg = distorted_mnist.get_config("r,st_fcn,affine").model
  with cfg.unlocked():
    cfg.name = "st_mixed"
    cfg.localizer = models.localizer_config("st_mixed")
  model = models.build_model(cfg, canvas_size=28)
  assert isinstance(model.localizer, models.CNNLocalizer)
  assert isinstance(model.classifier, models.FCN)
  assert models.param_count(model, canvas_size=28) > 0
