"""stn_jax.cpu.kernels against the plain XLA ops: values and gradients."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import distorted_mnist
from stn_jax.cpu import kernels as cpu_kernels
from stn_jax import models

NHWC = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x, w, padding):
  return jax.lax.conv_general_dilated(x, w, (1, 1), padding,
                                      dimension_numbers=NHWC)


def _rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))


# (H, W, C, O, kh, kw, padding): the models' layers, even and non-square
# kernels, explicit and asymmetric padding.
CONV_CASES = [
    (14, 14, 8, 16, 7, 7, "SAME"),
    (21, 21, 6, 12, 7, 7, "SAME"),
    (28, 28, 1, 8, 9, 9, "SAME"),
    (14, 14, 1, 5, 5, 5, "VALID"),
    (5, 5, 4, 3, 5, 5, "VALID"),
    (8, 8, 6, 5, 5, 5, "VALID"),  # A localiser's second layer, one strip.
    (9, 10, 3, 4, 4, 4, "SAME"),
    (8, 9, 2, 3, 3, 2, ((2, 0), (1, 1))),
    (7, 6, 3, 2, 3, 3, ((0, 2), (2, 0))),
]


def _conv_inputs(case, seed=0):
  h, w, c, o, kh, kw, padding = case
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal((3, h, w, c)), jnp.float32)
  k = jnp.asarray(rng.standard_normal((kh, kw, c, o)) / (kh * kw),
                  jnp.float32)
  return x, k, padding


@pytest.mark.parametrize("impl", ["dft", "banded"])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_matches_xla_values_and_gradients(impl, case):
  x, w, padding = _conv_inputs(case)
  fast = {"dft": cpu_kernels.dft_conv,
          "banded": cpu_kernels.banded_conv}[impl]
  f_ref = lambda x, w: _xla_conv(x, w, padding)
  f_new = lambda x, w: fast(x, w, padding=padding)
  ref, new = f_ref(x, w), jax.jit(f_new)(x, w)
  assert new.shape == ref.shape
  assert _rel_err(ref, new) < 1e-5
  g = jnp.asarray(np.random.default_rng(1).standard_normal(ref.shape),
                  jnp.float32)
  dref = jax.vjp(f_ref, x, w)[1](g)
  dnew = jax.jit(lambda x, w, g: jax.vjp(f_new, x, w)[1](g))(x, w, g)
  for a, b in zip(dref, dnew):
    assert a.shape == b.shape
    assert _rel_err(a, b) < 1e-5


# The DFT is only as long as the outputs need (fewer frequencies than the
# correlation's full support): paddings that crop (negative), reach past
# the kernel (outputs beyond the support, zero) or are lopsided move which
# aliases the outputs may read.
@pytest.mark.parametrize("padding", [
    ((3, 3), (3, 3)), ((-2, 1), (0, -3)), ((8, 0), (0, 9)), ((6, 6), (1, 7)),
    ((0, 6), (6, 0))], ids=str)
def test_dft_conv_matches_xla_for_any_padding(padding):
  x, w, _ = _conv_inputs((10, 11, 3, 4, 7, 6, None))
  # Padding (or cropping) first, then a VALID convolution: XLA:CPU's own
  # convolution returns garbage for a negative low padding (jax 0.10.2).
  pad = lambda x: jax.lax.pad(x, 0.0, [(0, 0, 0)] + [(lo, hi, 0) for lo, hi
                                                   in padding] + [(0, 0, 0)])
  f_ref = lambda x, w: _xla_conv(pad(x), w, "VALID")
  f_new = lambda x, w: cpu_kernels.dft_conv(x, w, padding=padding)
  ref, new = f_ref(x, w), jax.jit(f_new)(x, w)
  assert new.shape == ref.shape
  assert _rel_err(ref, new) < 1e-5
  g = jnp.asarray(np.random.default_rng(1).standard_normal(ref.shape),
                  jnp.float32)
  for a, b in zip(jax.vjp(f_ref, x, w)[1](g), jax.vjp(f_new, x, w)[1](g)):
    assert _rel_err(a, b) < 1e-5


def test_dft_length_is_the_shortest_without_aliasing():
  # 7x7 SAME on 10x10: outputs read correlation lags -3..6 of support
  # -6..9, so 13 points suffice (the full support needs 16); one-sided
  # along w: 13 // 2 + 1 = 7 columns.
  *_, (nu, nv), (ho, wo) = cpu_kernels._dft_matrices((10, 10), (7, 7),
                                                     ((3, 3), (3, 3)))
  assert (nu, nv, ho, wo) == (13, 7, 10, 10)


@pytest.mark.parametrize("impl, case", [
    ("dft", CONV_CASES[0]), ("banded", CONV_CASES[2])])
def test_conv_second_order_gradient_matches_xla(impl, case):
  x, w, padding = _conv_inputs(case)
  conv = {"dft": cpu_kernels.dft_conv, "banded": cpu_kernels.banded_conv}[impl]

  def hvp(conv):
    loss = lambda w: jnp.sum(jnp.tanh(conv(x, w, padding)))
    return jax.jvp(jax.grad(loss), (w,), (jnp.ones_like(w),))[1]

  ref = hvp(_xla_conv)
  new = hvp(lambda x, w, p: conv(x, w, padding=p))
  assert _rel_err(ref, new) < 1e-4


@pytest.mark.parametrize("tile", [1, 3, 5, 7, 28])
def test_banded_conv_any_tile_matches_xla(tile):
  # Tiles that do not divide the output width (the last strip overhangs).
  x, w, padding = _conv_inputs(CONV_CASES[2])
  got = cpu_kernels.banded_conv(x, w, padding=padding, tile=tile)
  assert _rel_err(_xla_conv(x, w, padding), got) < 1e-5


@pytest.mark.parametrize("args, algo", [
    (((14, 14), (7, 7), (32, 64), "SAME"), "dft"),  # CNN layer 2, 28 px.
    (((21, 21), (7, 7), (24, 48), "SAME"), "dft"),  # CNN layer 2, 42 px.
    (((28, 28), (9, 9), (1, 32), "SAME"), "banded"),  # CNN layer 1.
    (((42, 42), (9, 9), (1, 24), "SAME"), "banded"),  # CNN layer 1, 42 px.
    (((32, 32), (3, 3), (16, 16), "SAME"), "xla"),  # 3x3, many channels.
    (((14, 14), (5, 5), (1, 20), "VALID"), "banded"),  # Localiser.
    # Localiser layer 2: 0.74 of the direct multiply-adds by DFT, but
    # banded was 1.5x faster.
    (((8, 8), (5, 5), (20, 20), "VALID"), "banded"),
])
def test_conv_algorithm_choice(args, algo):
  assert cpu_kernels.conv_algorithm(*args) == algo


@pytest.mark.parametrize("case", [CONV_CASES[0], CONV_CASES[2],
                                  CONV_CASES[3]], ids=str)
def test_flax_conv_with_fast_primitive_matches_default(case):
  x, _, padding = _conv_inputs(case)
  _, _, c, o, kh, kw, _ = case
  plain = nn.Conv(o, (kh, kw), padding=padding)
  fast = nn.Conv(o, (kh, kw), padding=padding,
                 conv_general_dilated=cpu_kernels.conv_general_dilated)
  params = plain.init(jax.random.key(0), x)
  assert _rel_err(plain.apply(params, x), fast.apply(params, x)) < 1e-5
  loss = lambda m: lambda p: jnp.sum(m.apply(p, x) ** 2)
  ga, gb = jax.grad(loss(plain))(params), jax.grad(loss(fast))(params)
  for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb)):
    assert _rel_err(a, b) < 1e-5


def test_conv_general_dilated_falls_back_to_xla_for_strides():
  x, w, _ = _conv_inputs(CONV_CASES[0])
  got = cpu_kernels.conv_general_dilated(x, w, (2, 2), "SAME",
                                         dimension_numbers=NHWC)
  want = jax.lax.conv_general_dilated(x, w, (2, 2), "SAME",
                                      dimension_numbers=NHWC)
  np.testing.assert_array_equal(got, want)


def test_conv_bad_inputs_raise_clear_errors():
  x, w, _ = _conv_inputs(CONV_CASES[0])
  with pytest.raises(ValueError, match="input channels"):
    cpu_kernels.dft_conv(x, w[:, :, :3])
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    cpu_kernels.dft_conv(x[0], w)
  with pytest.raises(ValueError, match="padding"):
    cpu_kernels.dft_conv(x, w, padding="FULL")
  with pytest.raises(ValueError, match="padding"):
    cpu_kernels.banded_conv(x, w, padding=((-1, 0), (0, 0)))
  with pytest.raises(ValueError, match="tile"):
    cpu_kernels.banded_conv(x, w, tile=0)
  with pytest.raises(ValueError, match="no output"):
    cpu_kernels.banded_conv(x[:, :3, :3], w, padding="VALID")


@pytest.mark.parametrize("shape", [(2, 28, 28, 3), (2, 21, 21, 4),
                                   (1, 7, 10, 2), (2, 5, 5, 1)])
def test_max_pool_matches_flax(shape):
  # A random permutation: no ties, so the gradients are unique.
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.permutation(np.prod(shape)).reshape(shape),
                  jnp.float32)
  ref = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(cpu_kernels.max_pool(x, 2), ref(x))
  g = jnp.asarray(rng.standard_normal(ref(x).shape), jnp.float32)
  np.testing.assert_array_equal(
      jax.vjp(lambda x: cpu_kernels.max_pool(x, 2), x)[1](g)[0],
      jax.vjp(ref, x)[1](g)[0])


@pytest.mark.parametrize("window", [2, 3])
def test_max_pool_ties_give_the_gradient_to_the_first_maximum(window):
  # Few distinct values: most windows hold tied maxima.
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.integers(0, 3, (2, 12, 12, 3)), jnp.float32)
  ref = lambda x: nn.max_pool(x, (window, window), strides=(window, window))
  g = jnp.asarray(rng.standard_normal(ref(x).shape), jnp.float32)
  ours = jax.vjp(lambda x: cpu_kernels.max_pool(x, window), x)[1](g)[0]
  np.testing.assert_array_equal(ours, jax.vjp(ref, x)[1](g)[0])
  # A window of four equal values: all of the gradient to its first pixel.
  grad = jax.grad(lambda x: cpu_kernels.max_pool(x, 2).sum())(
      jnp.zeros((1, 2, 2, 1)))
  np.testing.assert_array_equal(grad[0, :, :, 0], [[1, 0], [0, 0]])


def test_max_pool_bad_input():
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    cpu_kernels.max_pool(jnp.zeros((4, 4)), 2)


@pytest.mark.parametrize("arg", ["r,cnn", "rts,cnn", "r,st_cnn,affine",
                                 "rts,st_cnn,tps", "r,st_fcn,projective",
                                 "r,cnn,valid", "rts,st_cnn,affine,valid"])
def test_models_fast_and_xla_kernels_agree(arg):
  arg, valid = arg.removesuffix(",valid"), arg.endswith(",valid")
  cfg = distorted_mnist.get_config(arg + ",smoke")
  if valid:  # No padding; the RTS transformer keeps the full 42x42 canvas.
    cfg.model.classifier.padding = "VALID"
    if "st_" in arg:
      cfg.model.st_downsample = 1
  size = int(cfg.distortion.canvas_size)
  built = {}
  for kernels in ("fast", "xla"):
    cfg.model.kernels = kernels
    built[kernels] = models.build_model(cfg.model, canvas_size=size)
  params = models.init_params(built["xla"], jax.random.key(0),
                              canvas_size=size)
  # A localiser that moves the grid off the pixel centres, so that the
  # sampler's gradient is smooth there (it has kinks at integer points).
  if "theta" in params:
    params["theta"]["kernel"] = 1e-3 * jnp.ones_like(
        params["theta"]["kernel"])
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((4, size, size, 1)), jnp.float32)
  y = jnp.arange(4) % 10

  def loss(model):
    def f(p):
      logits = model.apply({"params": p}, x)
      return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), y])
    return f

  # Jitted, as in training (and one compile instead of an op-by-op run).
  out = {k: jax.jit(m.apply)({"params": params}, x)
         for k, m in built.items()}
  assert _rel_err(out["xla"], out["fast"]) < 1e-4
  grads = {k: jax.jit(jax.grad(loss(m)))(params) for k, m in built.items()}
  for path, a in jax.tree_util.tree_leaves_with_path(grads["xla"]):
    b = dict(jax.tree_util.tree_leaves_with_path(grads["fast"]))[path]
    assert _rel_err(a, b) < 1e-3, jax.tree_util.keystr(path)


def test_model_rejects_unknown_kernels():
  cfg = distorted_mnist.get_config("r,cnn,smoke")
  cfg.model.kernels = "cuda"
  with pytest.raises(ValueError, match="model.kernels"):
    models.build_model(cfg.model, canvas_size=28)


def test_modules_use_the_layers_they_are_given():
  calls = {"conv": 0, "pool": 0}

  def conv_primitive(*args, **kwargs):
    calls["conv"] += 1
    return jax.lax.conv_general_dilated(*args, **kwargs)

  def pool(x, window):
    calls["pool"] += 1
    return models.plain_max_pool(x, window)

  cnn = models.CNN(filters=(4, 8), conv=functools.partial(
      nn.Conv, conv_general_dilated=conv_primitive), max_pool=pool)
  x = jnp.ones((2, 28, 28, 1))
  params = cnn.init(jax.random.key(0), x)
  calls.update(conv=0, pool=0)
  got = cnn.apply(params, x)
  assert calls == {"conv": 2, "pool": 2}
  # The defaults are plain flax: the same parameters give the same logits.
  np.testing.assert_allclose(
      got, models.CNN(filters=(4, 8)).apply(params, x), rtol=1e-6)
  # build_model hands every module the layers of `model.kernels`.
  cfg = distorted_mnist.get_config("r,st_cnn,affine,smoke")
  for name, k in models.KERNELS.items():
    cfg.model.kernels = name
    m = models.build_model(cfg.model, canvas_size=28)
    assert (m.classifier.conv, m.classifier.max_pool) == (k.conv, k.max_pool)
    assert (m.localizer.conv, m.localizer.max_pool) == (k.conv, k.max_pool)
    assert m.warp is k.warp
