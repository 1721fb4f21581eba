r"""Distorted MNIST (Jaderberg et al. 2015, Table 1 and the cluttered TC set).

Run one cell of Table 1 (here RTS, ST-CNN with a thin-plate spline, the CPU
budget protocol):

    python -m stn_jax.main \
        --config=configs/distorted_mnist.py:rts,st_cnn,tps,quick \
        --workdir=/tmp/stn/rts_st_cnn_tps_quick

Overrides: `--config.seed=1 --config.train.num_steps=2000
--config.data.manual_dir=/path/to/mnist` (unknown keys and bad values fail
before any work, in one line). Re-running with the same workdir resumes an
interrupted run from its latest checkpoint; a finished run says so. The run
writes `metrics.jsonl`, TensorBoard events, `checkpoints/`, `results.json`
and, for ST models, `transforms.png`.

`get_config(arg)`: arg = "<distortion>,<model>[,<transform>][,<protocol>]"
  distortion  "r" | "rts" | "p" | "e" | "tc"
  model       "fcn" | "cnn" | "st_fcn" | "st_cnn" (stn_jax.models.MODELS)
  transform   "affine" | "attention" | "projective" | "tps", or a family
              registered with stn_jax.register_transform (ST models only;
              default "affine")
  protocol    "paper" (default) | "fast" | "quick" | "smoke"

Protocols:
  paper  the paper's schedule: SGD, lr 0.01 divided by 10 every 50k steps,
         150k steps, batch 256, cross-entropy, no weight decay; momentum 0.9
         is a reading (the paper says "SGD" only; without momentum the
         FCN-family models underfit: docs/reproduction.md). Measured: results/ablations.md
         (and results/table1.md once the Table-1 sweep has run at `paper`).
  fast   a fifth of the paper's compute: Adam (lr 1e-3, 500 warm-up steps,
         cosine decay), 30k steps of batch 256; meant to reach the paper
         protocol's numbers (learning curves side by side:
         `python -m experiments.learning_curves`).
  quick  a CPU budget of about 10 minutes for the RTS ST-CNN on 2 cores:
         Adam (lr 1e-3, 200 warm-up steps, cosine decay), 6,000 steps of
         batch 256 (~26 epochs of fresh distortions). Measured: the `quick`
         tables of results/table1.md (`python -m experiments.sweep
         --sweep=configs/table1.py:quick`).
  smoke  a few steps on small batches, for tests (seconds).

Widths (`_WIDTH`): the paper gives every model of a column about the same
parameter count. The FCN family (FCN, ST-FCN-*) is sized at ~400k
parameters per model (one account of the appendix; the ablations in
docs/reproduction.md show the narrower ~100k-160k models underfit); the CNN
family (CNN, ST-CNN-*) keeps ~105k-167k until its own ablations run.
tests/test_models.py checks each family's counts are within 10% of each
other; the run prints and records the count. For the large canvases (RTS
42x42, TC 60x60) the transformer's output is half the canvas
(`model.st_downsample = 2`) before the classifier.
"""

import os

import ml_collections
from ml_collections import config_dict

import stn_jax
from stn_jax import distortions
from stn_jax import models

# The choices come from the registries (transform families are read from
# `stn_jax.TRANSFORMS` when parsing, so that a family registered with
# `stn_jax.register_transform`, e.g. in a user's own config file, counts).
DISTORTIONS = tuple(distortions.DISTORTIONS)
MODELS = tuple(models.MODELS)
PROTOCOLS = ("paper", "fast", "quick", "smoke")

# Micro-batch of the train step: the convolutional models' CPU steps are
# faster in micro-batches of 64, the dense models' in one pass
# (benchmarks/results/train_step_cpu.md).
_MICRO_BATCH_SIZE = {"fcn": None, "cnn": 64, "st_fcn": None, "st_cnn": 64}

# Transformer output down-sampling per distortion: the 42 and 60 pixel
# canvases give the classifier a half-size image (reproductions' reading).
_ST_DOWNSAMPLE = {"r": 1, "rts": 2, "p": 1, "e": 1, "tc": 2}

# Classifier widths per canvas: FCN hidden units (h, h) or CNN filters
# (f, 2f), solved (with models.param_count) so that the models of a family
# have about the same parameter count: FCN family ~400k, CNN family 28 px
# ~134k, RTS ~106k, TC ~167k (see the module docstring).
_WIDTH = {
    28: {"fcn": 349, "cnn": 32, "st_fcn": 331, "st_cnn": 30},
    42: {"fcn": 202, "cnn": 24, "st_fcn": 401, "st_cnn": 27},
    60: {"fcn": 108, "cnn": 24, "st_fcn": 245, "st_cnn": 30},
}


def _protocol(name: str) -> ml_collections.ConfigDict:
  """The optimisation settings of protocol `name`."""
  train = ml_collections.ConfigDict(dict(
      num_steps=150_000,  # Training steps (one batch each).
      batch_size=256,  # Global batch, split over all devices.
      # Examples per forward/backward pass: the step's gradient is the mean
      # over batch_size / micro_batch_size micro-batches run one after
      # another (the same gradient up to float rounding); None = one pass.
      # Set by get_config (_MICRO_BATCH_SIZE).
      micro_batch_size=config_dict.placeholder(int),
      # XLA compiler options of the train step (stn_jax.cpu.xla_options):
      # "fast" (on CPU: dots through Eigen, not YNNPACK) | "default".
      xla_options="fast",
      optimizer="sgd",  # "sgd" | "adam".
      # SGD momentum: a reading (the paper does not say; docs/reproduction.md).
      momentum=0.9,
      learning_rate=0.01,  # Peak / initial learning rate.
      lr_schedule="step",  # "step" | "cosine" | "constant".
      lr_decay_every=50_000,  # "step": multiply the lr every this many steps
      lr_decay_factor=0.1,  # ... by this factor.
      warmup_steps=0,  # Linear warm-up steps ("cosine" only).
      weight_decay=0.0,  # Decoupled weight decay (the paper: none).
      # Learning-rate multiplier of the transformer's localisation net and
      # regression layer (ST models; 1.0: the same rate as the classifier).
      localizer_lr_multiplier=1.0,
      checkpoint_every=5_000,  # Checkpoint every this many steps (and at end).
      max_checkpoints_to_keep=2,  # Older checkpoints are deleted.
      eval_every=10_000,  # Evaluate on the test set every this many steps.
      log_every=500,  # Training metrics / progress line every this many.
      eval_batch_size=1000,  # Global evaluation batch.
  ))
  if name == "fast":
    train.update(dict(
        num_steps=30_000, optimizer="adam", learning_rate=1e-3,
        lr_schedule="cosine", warmup_steps=500, checkpoint_every=2_500,
        eval_every=2_500, log_every=250))
  elif name == "quick":
    train.update(dict(
        num_steps=6_000, optimizer="adam", learning_rate=1e-3,
        lr_schedule="cosine", warmup_steps=200, checkpoint_every=1_000,
        eval_every=2_000, log_every=250))
  elif name == "smoke":
    train.update(dict(
        num_steps=4, batch_size=16, optimizer="adam", learning_rate=1e-3,
        lr_schedule="constant", checkpoint_every=2, eval_every=4,
        log_every=1, eval_batch_size=64))
  return train


def parse_arg(arg: str) -> tuple:
  """"dist,model[,transform][,protocol]" -> (dist, model, transform, protocol).

  `transform` is None for "fcn"/"cnn" and defaults to "affine" for ST models;
  `protocol` defaults to "paper". Raises ValueError naming a bad item.
  """
  items = [s.strip() for s in (arg or "").split(",") if s.strip()]
  transforms = tuple(stn_jax.TRANSFORMS)  # Registered ones included.
  usage = ("expected '<distortion>,<model>[,<transform>][,<protocol>]' with "
           f"distortion in {list(DISTORTIONS)}, model in {list(MODELS)}, "
           f"transform in {list(transforms)}, protocol in {list(PROTOCOLS)}")
  if len(items) < 2:
    raise ValueError(f"config argument {arg!r}: {usage}.")
  dist, model, rest = items[0], items[1], items[2:]
  if dist not in DISTORTIONS:
    raise ValueError(f"config argument {arg!r}: unknown distortion {dist!r}; "
                     f"{usage}.")
  if model not in MODELS:
    raise ValueError(f"config argument {arg!r}: unknown model {model!r}; "
                     f"{usage}.")
  transform = protocol = None
  for item in rest:
    if item in transforms and transform is None and protocol is None:
      transform = item
    elif item in PROTOCOLS and protocol is None:
      protocol = item
    else:
      raise ValueError(f"config argument {arg!r}: unexpected item {item!r}; "
                       f"{usage}.")
  is_st = models.MODELS[model].has_transformer
  if transform is not None and not is_st:
    raise ValueError(f"config argument {arg!r}: model {model!r} has no "
                     f"spatial transformer, so it takes no transform "
                     f"(got {transform!r}).")
  if is_st and transform is None:
    transform = "affine"
  return dist, model, transform, protocol or "paper"


def get_config(arg: str = "rts,st_cnn,affine,quick") -> ml_collections.ConfigDict:
  """The locked config of one run; see the module docstring for `arg`."""
  dist, model, transform, protocol = parse_arg(arg)
  dcfg = distortions.default_distortion_config(dist)
  canvas = int(dcfg.canvas_size)
  cfg = ml_collections.ConfigDict()
  cfg.seed = 0  # Seeds the init, the data order and the training warps.
  cfg.protocol = protocol  # "paper" | "fast" | "quick" | "smoke" (recorded).
  cfg.distortion_name = dist  # "r" | "rts" | "p" | "e" | "tc".
  # The distortion's numbers (stn_jax.distortions.default_distortion_config).
  cfg.distortion = dcfg
  cfg.model = ml_collections.ConfigDict(dict(
      name=model,  # "fcn" | "cnn" | "st_fcn" | "st_cnn" (stn_jax.models).
      # Transform family of ST models (stn_jax.TRANSFORMS); None otherwise.
      transform=transform if transform else config_dict.placeholder(str),
      tps_num_points=16,  # TPS control points (a perfect square).
      # TPS smoothing: lambda added to the kernel matrix's diagonal (0: the
      # spline interpolates its control points exactly, as in the paper).
      tps_regularization=0.0,
      st_downsample=_ST_DOWNSAMPLE[dist],  # Output size = canvas / this.
      # How the output is made smaller (stn_jax.models.ST_DOWNSAMPLE_BY):
      # "grid" samples onto the small grid; "avg_pool" samples the full
      # canvas and average-pools by st_downsample (less aliasing).
      st_downsample_by="grid",
      align_corners=True,  # The paper's grid convention (linspace(-1, 1)).
      sampling_method="bilinear",  # Sampler kernel of the transformer.
      padding_mode="zeros",  # What the transformer reads outside the input.
      # Conv / max-pool / transformer implementation: "fast"
      # (stn_jax.cpu.kernels' DFT and banded convolutions, pairwise max-pool;
      # stn_jax.cpu.warp's fused grid + sampling) or "xla"; same function.
      kernels="fast",
      # Classifier fields (stn_jax.models.CLASSIFIERS; widths: _WIDTH).
      classifier=models.classifier_config(model, width=_WIDTH[canvas][model]),
      # Localisation net fields (stn_jax.models.LOCALIZERS); None for
      # models without a transformer.
      localizer=models.localizer_config(model),
  ))
  cfg.train = _protocol(protocol)
  micro = _MICRO_BATCH_SIZE[model]
  if micro is not None and cfg.train.batch_size > micro:
    cfg.train.micro_batch_size = micro
  cfg.data = ml_collections.ConfigDict(dict(
      # Folder with the 4 MNIST IDX .gz files (TFDS manual download folder);
      # defaults to $STN_JAX_MNIST_DIR; None lets TFDS download.
      manual_dir=(os.environ.get("STN_JAX_MNIST_DIR")
                  or config_dict.placeholder(str)),
      data_dir=config_dict.placeholder(str),  # TFDS data dir (None: default).
      test_seed=0,  # Seed of the fixed distorted test set (same for all runs).
      # Cache folder for the distorted test set (None: rebuilt every run).
      test_cache_dir=config_dict.placeholder(str),
      # Evaluate on the first N test examples only (None: the whole set).
      num_test_examples=config_dict.placeholder(int),
  ))
  cfg.num_transform_examples = 12  # Test inputs shown in transforms.png.
  cfg.distributed = False  # Call jax.distributed.initialize() (multi-host).
  if protocol == "smoke":
    cfg.data.num_test_examples = 64
    cfg.num_transform_examples = 4
  cfg.lock()
  return cfg
