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

The modules take their layers as arguments (the flax examples' style):
`conv` (an `nn.Conv`-like module class), `max_pool(x, window)` and, for the
transformer, `warp(images, params, *, transform, output_size, ...)`; the
defaults are plain flax / JAX (`nn.Conv`, `plain_max_pool`,
`stn_jax.warp`: the vmapped `make_grid` + `sample`). `build_model`
picks them once from the config's `model.kernels` through `KERNELS`: "fast"
(the default; `stn_jax.cpu.kernels`' DFT or banded-matmul convolutions and
pairwise max-pool, several times faster to train on CPU, and
`stn_jax.cpu.warp.warp`, grid generation and bilinear sampling fused over
the batch) or "xla" (the plain defaults). Both compute the same function with
the same parameters, so checkpoints are interchangeable.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import stn_jax
from stn_jax import config_checks as checks
from stn_jax import warping
from stn_jax.cpu import kernels as cpu_kernels
from stn_jax.cpu import warp as cpu_warp

NUM_CLASSES = 10
# A module class or factory, e.g. `nn.Conv` or a `functools.partial` of it.
ModuleDef = Any
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


def plain_max_pool(x, window: int = 2):
  """Non-overlapping `window x window` max-pooling of `[B, H, W, C]` (flax's)."""
  return nn.max_pool(x, (window, window), strides=(window, window))


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
    padding: "SAME" (the output of each convolution keeps its input's size)
      or "VALID" (no padding: Torch7's and Caffe's default).
    conv: the convolution module class (`nn.Conv`-like: features, kernel
      size, `padding=`, `name=`).
    max_pool: `(x [B, H, W, C], window) -> [B, H // window, W // window, C]`.
  """
  filters: Sequence[int]
  kernel_sizes: Sequence[int] = (9, 7)
  num_classes: int = NUM_CLASSES
  padding: str = "SAME"
  conv: ModuleDef = nn.Conv
  max_pool: Callable = plain_max_pool

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
    for i, (f, k) in enumerate(zip(self.filters, self.kernel_sizes)):
      if self.padding == "VALID" and min(x.shape[1:3]) < k + 1:
        raise ValueError(
            f"CNN: convolution {i} ({k}x{k}, VALID, then a 2x2 max-pool) "
            f"needs a map of at least {k + 1}x{k + 1} pixels, got "
            f"{x.shape[1]}x{x.shape[2]}; use \"SAME\" padding or a larger "
            f"input.")
      x = self.conv(f, (k, k), padding=self.padding, name=f"conv{i}")(x)
      # pool(relu(x)) == relu(pool(x)) (ReLU is monotonic), values and
      # gradients; the ReLU on the pooled map touches 4x less memory.
      x = nn.relu(self.max_pool(x, 2))
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
    conv: the convolution module class, as in `CNN`.
    max_pool: the max-pooling function, as in `CNN`.
  """
  filters: Sequence[int] = (20, 20)
  kernel_size: int = 5
  hidden: int = 20
  input_downsample: int = 2
  conv: ModuleDef = nn.Conv
  max_pool: Callable = plain_max_pool

  @nn.compact
  def __call__(self, x):
    """`[B, H, W, C]` -> features `[B, hidden]`."""
    d = self.input_downsample
    if d > 1:
      x = nn.avg_pool(x, (d, d), strides=(d, d))
    k = (self.kernel_size, self.kernel_size)
    x = self.conv(self.filters[0], k, padding="VALID", name="conv0")(x)
    x = nn.relu(self.max_pool(x, 2))  # == pool(relu(x)), as in `CNN`.
    x = nn.relu(self.conv(self.filters[1], k, padding="VALID",
                          name="conv1")(x))
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
    warp: `(images [B, H, W, C], params [B, n], *, transform, output_size,
      align_corners, method, padding_mode, **transform_kwargs) -> [B, h, w,
      C]`, the batched grid + sampling (`cpu_warp.warp` fuses them; the
      default `stn_jax.warp` is the vmapped `make_grid` + `sample`).
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
  warp: Callable = warping.warp
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
    out = self.warp(
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


# ------------------------------------------------------------ the registry


@dataclasses.dataclass(frozen=True)
class Kernels:
  """The layer arguments of the modules for one `model.kernels` choice.

  Attributes:
    conv: the convolution module class (`CNN.conv`, `CNNLocalizer.conv`).
    max_pool: the max-pooling function (`CNN.max_pool`, ...).
    warp: the transformer's batched grid + sampling
      (`SpatialTransformerClassifier.warp`).
  """
  conv: ModuleDef
  max_pool: Callable
  warp: Callable


# `model.kernels` -> the layers `build_model` gives the modules; built once
# here so that every model of a choice holds the same (equal) layer objects.
KERNELS: dict[str, Kernels] = {
    "xla": Kernels(conv=nn.Conv, max_pool=plain_max_pool,
                   warp=warping.warp),
    "fast": Kernels(
        conv=functools.partial(
            nn.Conv, conv_general_dilated=cpu_kernels.conv_general_dilated),
        max_pool=cpu_kernels.max_pool, warp=cpu_warp.warp),
}


@dataclasses.dataclass(frozen=True)
class Part:
  """A classifier or localiser family that owns its config fields.

  Attributes:
    fields: the names of its config fields (`model.classifier.*` or
      `model.localizer.*`).
    default_config: `(**kw) -> ConfigDict` of those fields, every field
      commented (classifiers take `width`).
    check: `(cfg, key)` raises ValueError naming `key.<field>` for a bad
      value (`cfg` holds exactly `fields`).
    build: `(model_cfg, kernels) -> nn.Module` from the model config,
      already validated by `validate_model_config`, with the layers
      `kernels` (a `Kernels`).
  """
  fields: tuple
  default_config: Callable[..., ml_collections.ConfigDict]
  check: Callable[[ml_collections.ConfigDict, str], None]
  build: Callable[[ml_collections.ConfigDict, Kernels], nn.Module]


def _fcn_fields(width: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      hidden=(width, width),  # Units of the 2 hidden dense layers.
  ))


def _check_fcn(cfg, key: str) -> None:
  checks.check_ints(f"{key}.hidden", cfg.hidden)


def _cnn_fields(width: int) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      filters=(width, 2 * width),  # Channels of the 2 convolutions.
      kernel_sizes=(9, 7),  # Square kernel sizes (the paper's 9x9, 7x7).
      # "SAME" | "VALID" (no padding: Torch7's default, docs/reproduction.md).
      padding="SAME",
  ))


def _check_cnn(cfg, key: str) -> None:
  checks.check_ints(f"{key}.filters", cfg.filters, 2)
  checks.check_ints(f"{key}.kernel_sizes", cfg.kernel_sizes, 2)
  checks.check_choice(f"{key}.padding", cfg.padding, CONV_PADDINGS)


def _fcn_localizer_fields() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      hidden=(32, 32),  # 2 hidden dense layers; theta is the 3rd layer.
  ))


def _cnn_localizer_fields() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      input_downsample=2,  # Average-pool factor on the input first.
      filters=(20, 20),  # Channels of the 2 VALID 5x5 convolutions.
      kernel_size=5,  # Square kernel size.
      hidden=20,  # Units of the dense layer before theta.
  ))


def _check_cnn_localizer(cfg, key: str) -> None:
  checks.check_ints(f"{key}.filters", cfg.filters, 2)
  checks.check_int(f"{key}.kernel_size", cfg.kernel_size)
  checks.check_int(f"{key}.hidden", cfg.hidden)
  checks.check_int(f"{key}.input_downsample", cfg.input_downsample)


# Classifier families (`model.classifier`).
CLASSIFIERS: dict[str, Part] = {
    "fcn": Part(
        fields=("hidden",), default_config=_fcn_fields, check=_check_fcn,
        build=lambda m, k: FCN(hidden=tuple(m.classifier.hidden))),
    "cnn": Part(
        fields=("filters", "kernel_sizes", "padding"),
        default_config=_cnn_fields, check=_check_cnn,
        build=lambda m, k: CNN(
            filters=tuple(m.classifier.filters),
            kernel_sizes=tuple(m.classifier.kernel_sizes),
            padding=m.classifier.padding, conv=k.conv, max_pool=k.max_pool)),
}

# Localisation-net families (`model.localizer`), the transformer's trunk.
LOCALIZERS: dict[str, Part] = {
    "fcn": Part(
        fields=("hidden",), default_config=_fcn_localizer_fields,
        check=_check_fcn,
        build=lambda m, k: FCNLocalizer(hidden=tuple(m.localizer.hidden))),
    "cnn": Part(
        fields=("input_downsample", "filters", "kernel_size", "hidden"),
        default_config=_cnn_localizer_fields, check=_check_cnn_localizer,
        build=lambda m, k: CNNLocalizer(
            filters=tuple(m.localizer.filters),
            kernel_size=int(m.localizer.kernel_size),
            hidden=int(m.localizer.hidden),
            input_downsample=int(m.localizer.input_downsample),
            conv=k.conv, max_pool=k.max_pool)),
}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A model of the registry: a classifier, optionally behind a transformer.

  Attributes:
    classifier: a key of `CLASSIFIERS`.
    localizer: a key of `LOCALIZERS` for a spatial-transformer model (which
      then takes `model.transform` and the transformer's fields), or None.
  """
  classifier: str
  localizer: Optional[str] = None

  @property
  def has_transformer(self) -> bool:
    return self.localizer is not None


# name -> spec. A new model is one entry here (and its width in the
# configs); the config fields, their checks and the builder come from it.
MODELS: dict[str, ModelSpec] = {
    "fcn": ModelSpec("fcn"),
    "cnn": ModelSpec("cnn"),
    "st_fcn": ModelSpec("fcn", localizer="fcn"),
    "st_cnn": ModelSpec("cnn", localizer="cnn"),
}

# Models with a spatial transformer (they take `model.transform`).
ST_MODELS = tuple(n for n, spec in MODELS.items() if spec.has_transformer)


def get_model_spec(name: str) -> ModelSpec:
  """`MODELS[name]`, or a ValueError naming `model.name` and the choices."""
  checks.check_choice("model.name", name, MODELS)
  return MODELS[name]


def classifier_config(name: str, *, width: int) -> ml_collections.ConfigDict:
  """The `model.classifier` fields of model `name` at `width`."""
  return CLASSIFIERS[get_model_spec(name).classifier].default_config(width)


def localizer_config(name: str):
  """The `model.localizer` fields of model `name` (None without one)."""
  spec = get_model_spec(name)
  return (LOCALIZERS[spec.localizer].default_config()
          if spec.has_transformer else None)


def transform_kwargs(model_cfg) -> tuple:
  """The transform family options of a model config, as a hashable tuple."""
  if model_cfg.transform == "tps":
    return (("num_points", int(model_cfg.tps_num_points)),
            ("regularization", float(model_cfg.tps_regularization)))
  return ()


def st_output_size(model_cfg, canvas_size: int) -> tuple:
  """`(h, w)` of the transformer's output: the canvas / `st_downsample`."""
  d = model_cfg.st_downsample
  checks.check_int("model.st_downsample", d)
  if canvas_size % d:
    checks.fail("model.st_downsample", d,
                f"a positive divisor of the canvas size {canvas_size}")
  return (canvas_size // d, canvas_size // d)


def st_sampling(model_cfg, canvas_size: int) -> tuple:
  """`(sampled grid (h, w), average-pool factor)` of a transformer.

  "grid" samples the `st_output_size` grid directly; "avg_pool" samples the
  full canvas and average-pools it by `st_downsample`. Both give the
  classifier an image of `st_output_size`.
  """
  out = st_output_size(model_cfg, canvas_size)
  checks.check_choice("model.st_downsample_by", model_cfg.st_downsample_by,
                      ST_DOWNSAMPLE_BY)
  if model_cfg.st_downsample_by == "grid":
    return out, 1
  return (canvas_size, canvas_size), int(model_cfg.st_downsample)


def validate_model_config(model_cfg, *, canvas_size: int) -> None:
  """Raises ValueError naming the first invalid `model.*` key.

  The fields of `model.classifier` / `model.localizer` are the registry
  parts' (`CLASSIFIERS`, `LOCALIZERS`), checked by them; a model without a
  transformer must have `transform` None and `localizer` None.
  """
  m = model_cfg
  spec = get_model_spec(m.name)
  classifier = CLASSIFIERS[spec.classifier]
  checks.check_keys("model.classifier", m.classifier, classifier.fields)
  classifier.check(m.classifier, "model.classifier")
  checks.check_choice("model.kernels", m.kernels, KERNELS)
  if not spec.has_transformer:
    if m.transform is not None:
      checks.fail("model.transform", m.transform,
                  f"None for model {m.name!r} (it has no spatial transformer)")
    checks.check_keys("model.localizer", m.localizer, ())
    return
  localizer = LOCALIZERS[spec.localizer]
  checks.check_choice("model.transform", m.transform, stn_jax.TRANSFORMS)
  checks.check_keys("model.localizer", m.localizer, localizer.fields)
  localizer.check(m.localizer, "model.localizer")
  checks.check_int("model.tps_num_points", m.tps_num_points, 4)
  if m.transform == "tps" and math.isqrt(m.tps_num_points) ** 2 != (
      m.tps_num_points):
    checks.fail("model.tps_num_points", m.tps_num_points, "a perfect square")
  reg = m.tps_regularization
  if isinstance(reg, bool) or not isinstance(reg, (int, float)) or not (
      0.0 <= reg < float("inf")):
    checks.fail("model.tps_regularization", reg, "a finite float >= 0")
  st_sampling(m, canvas_size)
  checks.check_choice("model.sampling_method", m.sampling_method,
                      stn_jax.METHODS)
  checks.check_choice("model.padding_mode", m.padding_mode,
                      stn_jax.PADDING_MODES)
  if not isinstance(m.align_corners, bool):
    checks.fail("model.align_corners", m.align_corners, "a bool")


def build_model(model_cfg, *, canvas_size: int) -> nn.Module:
  """The model `model_cfg.name` of `MODELS` for square `canvas_size` inputs.

  `model_cfg` is the `model` field of `configs/distorted_mnist.py`; it is
  validated first (`validate_model_config`). Its `kernels` ("fast" / "xla")
  chooses the modules' layers here, once (`KERNELS`).
  """
  validate_model_config(model_cfg, canvas_size=canvas_size)
  spec = MODELS[model_cfg.name]
  kernels = KERNELS[model_cfg.kernels]
  classifier = CLASSIFIERS[spec.classifier].build(model_cfg, kernels)
  if not spec.has_transformer:
    return classifier
  sampled, pool = st_sampling(model_cfg, canvas_size)
  return SpatialTransformerClassifier(
      localizer=LOCALIZERS[spec.localizer].build(model_cfg, kernels),
      classifier=classifier, transform=model_cfg.transform,
      output_size=sampled, output_pool=pool,
      transform_kwargs=transform_kwargs(model_cfg),
      align_corners=bool(model_cfg.align_corners),
      method=model_cfg.sampling_method, padding_mode=model_cfg.padding_mode,
      warp=kernels.warp)


# Jitted, the model a static argument: flax's eager `init` compiles each op of
# the forward pass on its own (~150 XLA compiles, 20-40 s of a run's start).
@functools.partial(jax.jit, static_argnums=0)
def _init(model: nn.Module, key, x):
  return model.init(key, x)["params"]


def init_params(model: nn.Module, key, *, canvas_size: int, channels: int = 1):
  """Initial parameters for `[B, canvas_size, canvas_size, channels]` inputs.

  Compiled once per model and input shape (the model must be hashable, as
  flax modules with tuple fields are); the same values as `model.init`.
  """
  x = jnp.zeros((1, canvas_size, canvas_size, channels), jnp.float32)
  return _init(model, key, x)


@functools.partial(jax.jit, static_argnums=0)
def transform_input(model: nn.Module, params, images):
  """An ST model's transformer on `images`, compiled once per model and shape.

  Args:
    model: an ST model (`SpatialTransformerClassifier`; hashable, static).
    params: its parameters (one seed's pytree).
    images: `[B, S, S, C]` float inputs in [0, 1].

  Returns:
    `(output [B, h, w, C], grid [B, h, w, 2], theta [B, P])`, as
    `model.apply({"params": params}, images, method=model.transform_input)`.
  """
  return model.apply({"params": params}, images,
                     method=model.transform_input)


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
