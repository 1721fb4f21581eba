"""The paper's distorted-MNIST models in `flax.linen`: FCN, CNN, ST-FCN, ST-CNN.

Every classifier has 3 weight layers and ReLUs (Jaderberg et al. 2015, Sec. 4.1):

* `FCN`: flatten -> dense(h1) -> dense(h2) -> dense(num_classes).
* `CNN`: conv k1 x k1 (f1) -> max-pool 2x2/2 -> conv k2 x k2 (f2) ->
  max-pool 2x2/2 -> dense(num_classes); "SAME" padding so that the same
  classifier runs on 28, 21, 30, 42 or 60 pixel inputs.

An ST model puts a spatial transformer at the input of its classifier:
a localisation net (`FCNLocalizer`: dense layers of 32 units; `CNNLocalizer`:
input down-sampled by 2, conv 5x5 x20, max-pool 2x2, conv 5x5 x20, dense 20)
followed by the regression layer `theta` that outputs the FLAT parameters of a
transform family of the core registry (`stn_jax.TRANSFORMS`: "affine",
"attention", "projective", "tps"). `theta` starts at zero weights and the
identity bias (`stn_jax.identity_params`), so an untrained ST model computes
exactly its classifier on the input resampled through the identity grid.
The transformer's output grid may be smaller than the input
(`output_size`; the larger canvases sample onto a half-size grid).

Images are channels-last, float, batched: `[B, H, W, C]`; logits are
`[B, num_classes]`. Models are built from a config by name through `MODELS`.

The models compute their convolutions, max-pools and the transformer's grid
+ sampling with the implementations named by `kernels`: "fast" (the default;
`stn_jax.fast_layers`: DFT or banded-matmul convolutions and a pairwise
max-pool, several times faster to train on CPU; `stn_jax.fast_warp`: grid
generation and bilinear sampling fused over the batch) or "xla" (XLA's own
convolution and pooling, the vmapped `make_grid` + `sample`). Both compute the
same function with the same parameters, so checkpoints are interchangeable.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import stn_jax
from stn_jax import fast_layers
from stn_jax import fast_warp

NUM_CLASSES = 10
# Padding of the classifier CNN's convolutions.
CONV_PADDINGS = ("SAME", "VALID")
# How a transformer makes an output smaller than its input
# (`model.st_downsample_by`): "grid" samples onto the smaller grid directly;
# "avg_pool" samples the full-size grid, then average-pools (less aliasing).
ST_DOWNSAMPLE_BY = ("grid", "avg_pool")


def _check_images(x) -> None:
  if x.ndim != 4:
    raise ValueError(
        f"`x` must be a batch of channels-last images [B, H, W, C], got shape "
        f"{list(x.shape)}.")


def _impl(registry: dict, name: str):
  """`registry[name]`, or a ValueError naming the `kernels` choices."""
  if name not in registry:
    raise ValueError(f"`kernels` must be one of {sorted(registry)}, got "
                     f"{name!r}.")
  return registry[name]


def _kernels(name: str):
  """(conv_general_dilated, max_pool) of implementation `name`."""
  return (_impl(fast_layers.CONV_IMPLS, name),
          _impl(fast_layers.POOL_IMPLS, name))


def _warp_impl(name: str):
  """The transformer's grid + sampling implementation `name`."""
  return _impl(fast_warp.WARP_IMPLS, name)


class FCN(nn.Module):
  """Fully connected classifier: 2 hidden ReLU layers + the class layer.

  Attributes:
    hidden: widths `(h1, h2)` of the two hidden layers.
    num_classes: number of outputs.
  """
  hidden: Sequence[int]
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x):
    """`[B, H, W, C]` float -> logits `[B, num_classes]`."""
    _check_images(x)
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"hidden{i}")(x))
    return nn.Dense(self.num_classes, name="logits")(x)


class CNN(nn.Module):
  """Convolutional classifier: (conv -> ReLU -> max-pool 2x2/2) x 2 + dense.

  Attributes:
    filters: `(f1, f2)` output channels of the two convolutions.
    kernel_sizes: `(k1, k2)` square kernel sizes (the paper's 9 and 7).
    num_classes: number of outputs.
    kernels: convolution / pooling implementation ("fast" or "xla").
    padding: "SAME" (the output of each convolution keeps its input's size)
      or "VALID" (no padding: Torch7's and Caffe's default).
  """
  filters: Sequence[int]
  kernel_sizes: Sequence[int] = (9, 7)
  num_classes: int = NUM_CLASSES
  kernels: str = "fast"
  padding: str = "SAME"

  @nn.compact
  def __call__(self, x):
    """`[B, H, W, C]` float -> logits `[B, num_classes]`."""
    _check_images(x)
    if len(self.filters) != len(self.kernel_sizes):
      raise ValueError(
          f"`filters` {tuple(self.filters)} and `kernel_sizes` "
          f"{tuple(self.kernel_sizes)} must have the same length.")
    if self.padding not in CONV_PADDINGS:
      raise ValueError(f"`padding` must be one of {list(CONV_PADDINGS)}, got "
                       f"{self.padding!r}.")
    conv, pool = _kernels(self.kernels)
    for i, (f, k) in enumerate(zip(self.filters, self.kernel_sizes)):
      if self.padding == "VALID" and min(x.shape[1:3]) < k + 1:
        raise ValueError(
            f"CNN: convolution {i} ({k}x{k}, VALID, then a 2x2 max-pool) "
            f"needs a map of at least {k + 1}x{k + 1} pixels, got "
            f"{x.shape[1]}x{x.shape[2]}; use \"SAME\" padding or a larger "
            f"input.")
      x = nn.Conv(f, (k, k), padding=self.padding, name=f"conv{i}",
                  conv_general_dilated=conv)(x)
      # pool(relu(x)) == relu(pool(x)) (ReLU is monotonic), values and
      # gradients; the ReLU on the pooled map touches 4x less memory.
      x = nn.relu(pool(x, 2))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(self.num_classes, name="logits")(x)


class FCNLocalizer(nn.Module):
  """ST-FCN localisation trunk: ReLU dense layers (the paper's 32, 32).

  The regression layer (the third of the paper's "3 layers of 32 units")
  belongs to `SpatialTransformerClassifier` (`theta`), which owns the
  identity initialisation.

  Attributes:
    hidden: widths of the hidden dense layers.
  """
  hidden: Sequence[int] = (32, 32)

  @nn.compact
  def __call__(self, x):
    """`[B, H, W, C]` -> features `[B, hidden[-1]]`."""
    x = x.reshape(x.shape[0], -1)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"hidden{i}")(x))
    return x


class CNNLocalizer(nn.Module):
  """ST-CNN localisation trunk: down-sample, 2 convs with a max-pool, dense.

  Input average-pooled by `input_downsample`, conv k x k (f1) -> ReLU ->
  max-pool 2x2/2 -> conv k x k (f2) -> ReLU -> dense(hidden) -> ReLU. The
  convolutions use "VALID" padding (no padding, as in Caffe), which keeps the
  dense layer small on the 42 and 60 pixel canvases.

  Attributes:
    filters: `(f1, f2)` (the paper's 20, 20).
    kernel_size: square kernel size (5).
    hidden: width of the dense layer (20).
    input_downsample: average-pool factor applied to the input first (2).
    kernels: convolution / pooling implementation ("fast" or "xla").
  """
  filters: Sequence[int] = (20, 20)
  kernel_size: int = 5
  hidden: int = 20
  input_downsample: int = 2
  kernels: str = "fast"

  @nn.compact
  def __call__(self, x):
    """`[B, H, W, C]` -> features `[B, hidden]`."""
    d = self.input_downsample
    if d > 1:
      x = nn.avg_pool(x, (d, d), strides=(d, d))
    k = (self.kernel_size, self.kernel_size)
    conv, pool = _kernels(self.kernels)
    x = nn.Conv(self.filters[0], k, padding="VALID", name="conv0",
                conv_general_dilated=conv)(x)
    x = nn.relu(pool(x, 2))  # == pool(relu(x)), as in `CNN`.
    x = nn.relu(nn.Conv(self.filters[1], k, padding="VALID", name="conv1",
                        conv_general_dilated=conv)(x))
    x = x.reshape(x.shape[0], -1)
    return nn.relu(nn.Dense(self.hidden, name="hidden")(x))


def _constant_init(value) -> Callable:
  """A flax initializer returning the fixed vector `value` (shape-checked)."""
  value = np.asarray(value, np.float32)

  def init(key, shape, dtype=jnp.float32):
    del key
    if tuple(shape) != value.shape:
      raise ValueError(f"identity bias has shape {value.shape}, the layer "
                       f"asks for {tuple(shape)}.")
    return jnp.asarray(value, dtype)

  return init


class SpatialTransformerClassifier(nn.Module):
  """A spatial transformer at the input of a classifier (ST-FCN / ST-CNN).

  theta = Dense(localizer(x)) (zero weights, identity bias at init); the grid
  `stn_jax.make_grid(transform, theta, output_size)` maps each output pixel to
  its source position in `x`; the classifier sees
  `stn_jax.sample(x, grid)` of shape `[B, *output_size, C]`.

  Attributes:
    localizer: the localisation trunk (`[B, H, W, C]` -> `[B, F]`).
    classifier: the classifier (`[B, h, w, C]` -> `[B, num_classes]`).
    transform: transform family name in `stn_jax.TRANSFORMS`.
    output_size: `(h, w)` of the transformer's output grid.
    transform_kwargs: family options as `((name, value), ...)` (hashable),
      e.g. `(("num_points", 16),)` for "tps".
    align_corners: normalisation convention of the grid (the paper's: True).
    method: sampler kernel ("bilinear" in the paper).
    padding_mode: what the sampler reads outside the input ("zeros").
    kernels: "fast" computes grid and sampling as one fused batch operation
      (`stn_jax.fast_warp.warp`), "xla" as the vmapped `make_grid` and
      `sample`; same function.
    output_pool: the sampled `output_size` image is average-pooled by this
      factor (non-overlapping windows) before the classifier; 1: no pooling.
  """
  localizer: nn.Module
  classifier: nn.Module
  transform: str
  output_size: Sequence[int]
  transform_kwargs: tuple = ()
  align_corners: bool = True
  method: str = "bilinear"
  padding_mode: str = "zeros"
  kernels: str = "fast"
  output_pool: int = 1

  def setup(self):
    kw = dict(self.transform_kwargs)
    # Concrete even inside a trace (init under jit/eval_shape).
    with jax.ensure_compile_time_eval():
      identity = np.asarray(stn_jax.identity_params(self.transform, **kw))
    self.theta = nn.Dense(
        stn_jax.num_params(self.transform, **kw),
        kernel_init=nn.initializers.zeros,
        bias_init=_constant_init(identity), name="theta")

  def transform_input(self, x):
    """Runs the transformer alone.

    Args:
      x: `[B, H, W, C]` float images.

    Returns:
      `(output, grid, theta)`: the resampled images `[B, h / p, w / p, C]`
      (`(h, w) = output_size`, p = `output_pool`), the grids `[B, h, w, 2]`
      (normalised source (x, y) of every sampled pixel) and the flat
      transform parameters `[B, num_params]`.
    """
    _check_images(x)
    theta = self.theta(self.localizer(x))
    kw = dict(self.transform_kwargs)
    shape = tuple(int(s) for s in self.output_size)
    # The grid is returned for inspection; `__call__` drops it (and XLA the
    # work) when the warp below does not need it.
    grid = jax.vmap(lambda p: stn_jax.make_grid(
        self.transform, p, shape, align_corners=self.align_corners, **kw))(
            theta)
    out = _warp_impl(self.kernels)(
        x, theta, transform=self.transform, output_size=shape,
        align_corners=self.align_corners, method=self.method,
        padding_mode=self.padding_mode, **kw)
    p = int(self.output_pool)
    if p > 1:
      if shape[0] % p or shape[1] % p:
        raise ValueError(f"`output_pool` {p} must divide `output_size` "
                         f"{shape}.")
      out = nn.avg_pool(out, (p, p), strides=(p, p))
    return out, grid, theta

  def __call__(self, x):
    """`[B, H, W, C]` float -> logits `[B, num_classes]`."""
    out, _, _ = self.transform_input(x)
    return self.classifier(out)


def _tuple(name: str, value, length: Optional[int] = None) -> tuple:
  """`value` as a tuple of positive ints (optionally of `length`), or raises."""
  try:
    out = tuple(int(v) for v in value)
  except TypeError as e:
    raise ValueError(f"`{name}` must be a sequence of positive ints, got "
                     f"{value!r}.") from e
  if any(v < 1 for v in out) or (length is not None and len(out) != length):
    what = f"{length} " if length is not None else ""
    raise ValueError(f"`{name}` must be a sequence of {what}positive ints, got "
                     f"{value!r}.")
  return out


def _fcn_classifier(cfg) -> nn.Module:
  return FCN(hidden=_tuple("model.classifier.hidden", cfg.classifier.hidden, 2))


def _kernels_name(cfg) -> str:
  name = cfg.kernels
  if name not in fast_layers.CONV_IMPLS:
    raise ValueError(f"`model.kernels` must be one of "
                     f"{sorted(fast_layers.CONV_IMPLS)}, got {name!r}.")
  return name


def _cnn_classifier(cfg) -> nn.Module:
  padding = cfg.classifier.padding
  if padding not in CONV_PADDINGS:
    raise ValueError(f"`model.classifier.padding` must be one of "
                     f"{list(CONV_PADDINGS)}, got {padding!r}.")
  return CNN(
      filters=_tuple("model.classifier.filters", cfg.classifier.filters, 2),
      kernel_sizes=_tuple("model.classifier.kernel_sizes",
                          cfg.classifier.kernel_sizes, 2),
      kernels=_kernels_name(cfg), padding=padding)


def _fcn_localizer(cfg) -> nn.Module:
  return FCNLocalizer(
      hidden=_tuple("model.localizer.hidden", cfg.localizer.hidden))


def _cnn_localizer(cfg) -> nn.Module:
  loc = cfg.localizer
  return CNNLocalizer(
      filters=_tuple("model.localizer.filters", loc.filters, 2),
      kernel_size=int(loc.kernel_size), hidden=int(loc.hidden),
      input_downsample=int(loc.input_downsample),
      kernels=_kernels_name(cfg))


def transform_kwargs(model_cfg) -> tuple:
  """The transform family options of a model config, as a hashable tuple."""
  if model_cfg.transform == "tps":
    return (("num_points", int(model_cfg.tps_num_points)),)
  return ()


def st_output_size(model_cfg, canvas_size: int) -> tuple:
  """`(h, w)` of the transformer's output: the canvas / `st_downsample`."""
  d = int(model_cfg.st_downsample)
  if d < 1 or canvas_size % d:
    raise ValueError(
        f"`model.st_downsample` must be a positive divisor of the canvas size "
        f"{canvas_size}, got {model_cfg.st_downsample!r}.")
  return (canvas_size // d, canvas_size // d)


def st_sampling(model_cfg, canvas_size: int) -> tuple:
  """`(sampled grid (h, w), average-pool factor)` of a transformer.

  "grid" samples the `st_output_size` grid directly; "avg_pool" samples the
  full canvas and average-pools it by `st_downsample`. Both give the
  classifier an image of `st_output_size`.
  """
  out = st_output_size(model_cfg, canvas_size)
  by = model_cfg.st_downsample_by
  if by not in ST_DOWNSAMPLE_BY:
    raise ValueError(f"`model.st_downsample_by` must be one of "
                     f"{list(ST_DOWNSAMPLE_BY)}, got {by!r}.")
  if by == "grid":
    return out, 1
  return (canvas_size, canvas_size), int(model_cfg.st_downsample)


def _plain(classifier_fn) -> Callable:
  def build(model_cfg, *, canvas_size: int) -> nn.Module:
    del canvas_size  # A plain classifier sees the whole canvas.
    return classifier_fn(model_cfg)
  return build


def _st(localizer_fn, classifier_fn) -> Callable:
  def build(model_cfg, *, canvas_size: int) -> nn.Module:
    sampled, pool = st_sampling(model_cfg, canvas_size)
    return SpatialTransformerClassifier(
        localizer=localizer_fn(model_cfg), classifier=classifier_fn(model_cfg),
        transform=model_cfg.transform, output_size=sampled, output_pool=pool,
        transform_kwargs=transform_kwargs(model_cfg),
        align_corners=bool(model_cfg.align_corners),
        method=model_cfg.sampling_method, padding_mode=model_cfg.padding_mode,
        kernels=_kernels_name(model_cfg))
  return build


# name -> builder(model_cfg, *, canvas_size) -> nn.Module. `model_cfg` is the
# `model` field of `configs/distorted_mnist.py`: `classifier` (FCN: `hidden`;
# CNN: `filters`, `kernel_sizes`, `padding`), `kernels` (CNN / ST-CNN), for ST models `localizer` (FCN: `hidden`;
# CNN: `filters`, `kernel_size`, `hidden`, `input_downsample`), `transform`,
# `tps_num_points`, `st_downsample`, `st_downsample_by`, `align_corners`, `sampling_method`,
# `padding_mode`.
MODELS: dict[str, Callable[..., nn.Module]] = {
    "fcn": _plain(_fcn_classifier),
    "cnn": _plain(_cnn_classifier),
    "st_fcn": _st(_fcn_localizer, _fcn_classifier),
    "st_cnn": _st(_cnn_localizer, _cnn_classifier),
}

# Models with a spatial transformer (they take `model.transform`).
ST_MODELS = ("st_fcn", "st_cnn")


def build_model(model_cfg, *, canvas_size: int) -> nn.Module:
  """Builds `MODELS[model_cfg.name]` for square inputs of `canvas_size` pixels."""
  if model_cfg.name not in MODELS:
    raise ValueError(f"`model.name` must be one of {sorted(MODELS)}, got "
                     f"{model_cfg.name!r}.")
  return MODELS[model_cfg.name](model_cfg, canvas_size=canvas_size)


def init_params(model: nn.Module, key, *, canvas_size: int, channels: int = 1):
  """Initial parameters for `[B, canvas_size, canvas_size, channels]` inputs."""
  x = jnp.zeros((1, canvas_size, canvas_size, channels), jnp.float32)
  return model.init(key, x)["params"]


def count_params(params) -> int:
  """Total number of scalars in a parameter pytree."""
  return int(sum(np.prod(np.shape(p)) for p in jax.tree.leaves(params)))


def param_count(model: nn.Module, *, canvas_size: int,
                channels: int = 1) -> int:
  """Parameter count of `model` without computing anything (`eval_shape`)."""
  shapes = jax.eval_shape(
      lambda: init_params(model, jax.random.key(0), canvas_size=canvas_size,
                          channels=channels))
  return count_params(shapes)
