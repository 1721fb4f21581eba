"""Tests of configs/distorted_mnist.py and stn_jax.train.validate_config."""

import os

from absl import flags
import jax
from ml_collections import config_flags
import numpy as np
import pytest

from configs import distorted_mnist
from stn_jax import distortions
from stn_jax import models
from stn_jax import train

CONFIG_FILE = os.path.join(os.path.dirname(__file__), os.pardir, "configs",
                           "distorted_mnist.py")


def _table1_and_tc_args():
  args = []
  for dist in ("r", "rts", "p", "e"):
    args += [f"{dist},fcn", f"{dist},cnn"]
    args += [f"{dist},{m},{t}" for m in ("st_fcn", "st_cnn")
             for t in ("affine", "projective", "tps")]
  args += ["tc,fcn", "tc,cnn", "tc,st_fcn", "tc,st_cnn"]
  return args


def test_every_table1_cell_and_tc_is_reachable():
  args = _table1_and_tc_args()
  assert len(args) == 36
  seen = set()
  for arg in args:
    for protocol in distorted_mnist.PROTOCOLS:
      cfg = distorted_mnist.get_config(f"{arg},{protocol}")
      train.validate_config(cfg)
      dist, model, *rest = arg.split(",")
      assert cfg.distortion_name == dist
      assert cfg.model.name == model
      assert cfg.protocol == protocol
      want = rest[0] if rest else ("affine" if model.startswith("st_")
                                   else None)
      assert cfg.model.transform == want
      assert cfg.distortion.to_dict() == (
          distortions.default_distortion_config(dist).to_dict())
      seen.add((dist, model, cfg.model.transform))
  assert len(seen) == 36


def test_defaults_and_parsing():
  cfg = distorted_mnist.get_config("rts,st_cnn,tps,quick")
  assert (cfg.distortion_name, cfg.model.name, cfg.model.transform,
          cfg.protocol) == ("rts", "st_cnn", "tps", "quick")
  assert cfg.model.tps_num_points == 16
  assert cfg.model.st_downsample == 2  # 42x42 -> 21x21 before the classifier
  assert distorted_mnist.get_config("tc,st_fcn").model.st_downsample == 2
  assert distorted_mnist.get_config("r,st_fcn").model.st_downsample == 1
  # Protocol defaults to the paper's; transform to affine for ST models.
  cfg = distorted_mnist.get_config("e,st_fcn")
  assert cfg.protocol == "paper" and cfg.model.transform == "affine"
  assert distorted_mnist.get_config("p,cnn,smoke").model.transform is None
  # The keys a user reaches for exist under these names.
  for key in ("seed", "train.num_steps", "train.batch_size",
              "train.learning_rate", "train.checkpoint_every",
              "train.eval_every", "data.manual_dir"):
    node = cfg
    for part in key.split("."):
      assert part in node, key
      node = node[part]


def test_micro_batches_of_the_convolutional_models():
  # 64 where the batch is larger (256 in every protocol but smoke); the
  # dense models and the smoke batches of 16 run in one pass.
  get = lambda arg: distorted_mnist.get_config(arg).train.micro_batch_size
  assert get("r,cnn,paper") == get("rts,st_cnn,tps,quick") == 64
  assert get("r,fcn,paper") is get("e,st_fcn,affine,quick") is None
  assert get("r,cnn,smoke") is None
  cfg = distorted_mnist.get_config("r,cnn,paper")
  cfg.train.micro_batch_size = 32  # A command-line override.
  train.validate_config(cfg)


def test_paper_protocol():
  t = distorted_mnist.get_config("r,cnn,paper").train
  # Momentum 0.9 is the reproduction's reading (docs/reproduction.md).
  assert (t.optimizer, t.momentum, t.learning_rate, t.num_steps,
          t.batch_size, t.weight_decay) == ("sgd", 0.9, 0.01, 150_000, 256,
                                            0.0)
  _, schedule = train.make_optimizer(t)
  lrs = [float(schedule(s)) for s in (0, 49_999, 50_000, 99_999, 100_000,
                                      149_999)]
  np.testing.assert_allclose(lrs, [1e-2, 1e-2, 1e-3, 1e-3, 1e-4, 1e-4],
                             rtol=1e-6)


def test_manual_dir_defaults_to_env(monkeypatch):
  monkeypatch.setenv("STN_JAX_MNIST_DIR", "/some/mnist")
  assert distorted_mnist.get_config("r,cnn").data.manual_dir == "/some/mnist"
  monkeypatch.delenv("STN_JAX_MNIST_DIR")
  assert distorted_mnist.get_config("r,cnn").data.manual_dir is None


@pytest.mark.parametrize("arg,match", [
    ("", "expected"),
    ("rts", "expected"),
    ("xx,cnn", "distortion 'xx'"),
    ("rts,resnet", "model 'resnet'"),
    ("rts,cnn,tps", "no spatial transformer"),
    ("rts,st_cnn,foo", "'foo'"),
    ("rts,st_cnn,quick,tps", "'tps'"),
    ("rts,st_cnn,tps,quick,paper", "'paper'"),
])
def test_bad_config_args(arg, match):
  with pytest.raises(ValueError, match=match):
    distorted_mnist.get_config(arg)


def test_config_is_locked():
  cfg = distorted_mnist.get_config("rts,cnn,smoke")
  with pytest.raises(AttributeError, match="num_stepz"):
    cfg.train.num_stepz = 3
  with pytest.raises(TypeError):
    cfg.train.batch_size = "many"


def _set(cfg, key: str, value):
  """Sets the dotted `key` of a locked config."""
  *parents, leaf = key.split(".")
  node = cfg
  for part in parents:
    node = node[part]
  node[leaf] = value


@pytest.mark.parametrize("key,value,match", [
    ("train.batch_size", 0, "train.batch_size"),
    ("train.num_steps", -5, "train.num_steps"),
    ("train.optimizer", "rmsprop", "train.optimizer"),
    ("train.lr_schedule", "exp", "train.lr_schedule"),
    ("train.learning_rate", 0.0, "train.learning_rate"),
    ("train.learning_rate", float("nan"), "train.learning_rate"),
    ("train.momentum", 1.5, "train.momentum"),
    ("train.micro_batch_size", 5, "train.micro_batch_size"),  # batch 16
    ("train.micro_batch_size", 0, "train.micro_batch_size"),
    ("train.xla_options", "turbo", "train.xla_options"),
    ("seed", -1, "seed"),
    ("model.name", "resnet", "model.name"),
    ("model.transform", "spline", "model.transform"),
    ("model.tps_num_points", 15, "model.tps_num_points"),
    ("model.tps_regularization", -0.1, "model.tps_regularization"),
    ("model.st_downsample", 4, "model.st_downsample"),
    ("model.sampling_method", "lanczos", "model.sampling_method"),
    ("model.classifier.filters", (32,), "model.classifier.filters"),
    ("model.classifier.padding", "FULL", "model.classifier.padding"),
    ("model.st_downsample_by", "max_pool", "model.st_downsample_by"),
    ("train.localizer_lr_multiplier", 0.0, "train.localizer_lr_multiplier"),
    ("distortion.max_rotation_deg", -1.0, "max_rotation_deg"),
    ("distortion_name", "r", "distortion"),  # rts numbers do not fit "r"
    ("data.num_test_examples", 0, "data.num_test_examples"),
    ("protocol", "turbo", "protocol"),
])
def test_validate_config_rejects(key, value, match):
  # tps is the transform here, so 15 points (not a square) is invalid.
  cfg = distorted_mnist.get_config("rts,st_cnn,tps,smoke")
  _set(cfg, key, value)
  with pytest.raises(ValueError, match=match):
    train.validate_config(cfg)


def test_tps_regularization_reaches_the_transform_options():
  cfg = distorted_mnist.get_config("rts,st_cnn,tps,smoke")
  cfg.model.tps_regularization = 0.5
  assert dict(models.transform_kwargs(cfg.model)) == {
      "num_points": 16, "regularization": 0.5}


@pytest.mark.parametrize("kernels", ["fast", "xla"])
def test_tps_models_build_and_smooth_with_regularization(kernels):
  # The models run with the option, and a nonzero lambda changes the
  # output of a transformer that is not at the identity.
  outputs = []
  for reg in (0.0, 0.5):
    cfg = distorted_mnist.get_config("r,st_fcn,tps,smoke")
    cfg.model.tps_regularization = reg
    cfg.model.kernels = kernels
    model = models.build_model(cfg.model, canvas_size=28)
    params = models.init_params(model, jax.random.PRNGKey(0), canvas_size=28)
    # Move the control points off the identity (the regression bias).
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x + 0.1 * jax.random.normal(
            jax.random.PRNGKey(len(path)), x.shape), params)
    x = jax.random.uniform(jax.random.PRNGKey(1), (2, 28, 28, 1))
    out = jax.jit(model.apply)({"params": params}, x)
    assert out.shape == (2, 10) and np.all(np.isfinite(out))
    outputs.append(np.asarray(out))
  assert np.abs(outputs[0] - outputs[1]).max() > 1e-4


def test_validate_config_rejects_localizer_lr_on_plain_model():
  cfg = distorted_mnist.get_config("rts,cnn,smoke")
  cfg.train.localizer_lr_multiplier = 0.1
  with pytest.raises(ValueError, match="train.localizer_lr_multiplier"):
    train.validate_config(cfg)


def test_validate_config_rejects_transform_on_plain_model():
  cfg = distorted_mnist.get_config("rts,cnn,smoke")
  cfg.model.transform = "affine"
  with pytest.raises(ValueError, match="model.transform"):
    train.validate_config(cfg)


def _parse_flags(*overrides):
  argv = ["prog", f"--config={CONFIG_FILE}:rts,st_cnn,tps,smoke", *overrides]
  fv = flags.FlagValues()
  # sys_argv: the override flags (--config.x=...) are found in this argv.
  config_flags.DEFINE_config_file("config", None, "", flag_values=fv,
                                  lock_config=True, sys_argv=argv)
  fv(argv)
  return fv.config


def test_command_line_overrides():
  cfg = _parse_flags("--config.seed=3", "--config.train.num_steps=7",
                     "--config.train.learning_rate=0.05",
                     "--config.data.manual_dir=/data/mnist")
  assert (cfg.seed, cfg.train.num_steps, cfg.train.learning_rate,
          cfg.data.manual_dir) == (3, 7, 0.05, "/data/mnist")
  train.validate_config(cfg)


def test_command_line_unknown_key_fails():
  with pytest.raises((flags.Error, AttributeError, KeyError), match="num_stepz"):
    _parse_flags("--config.train.num_stepz=7")


def test_command_line_bad_value_fails_validation():
  cfg = _parse_flags("--config.train.batch_size=0")
  with pytest.raises(ValueError, match="train.batch_size"):
    train.validate_config(cfg)


def _leaves(node, prefix=""):
  for key, value in node.items():
    if hasattr(value, "items"):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", value


def _bad_values(value):
  """Values that no field of that type accepts (bools have none)."""
  if isinstance(value, bool):
    return []
  if isinstance(value, int) or value is None:
    return [-7]
  if isinstance(value, float):
    return [float("nan"), -1.0]
  if isinstance(value, str):
    return ["nonsense"]
  if isinstance(value, tuple):
    return [()]
  return []


_ARG = "rts,st_cnn,tps,smoke"
_FIELDS = [(key, bad)
           for key, value in _leaves(distorted_mnist.get_config(_ARG))
           for bad in _bad_values(value)
           # Folder paths: any string is a path; a non-string cannot be set.
           if key not in ("data.manual_dir", "data.data_dir",
                          "data.test_cache_dir")]


@pytest.mark.parametrize("key,bad", _FIELDS,
                         ids=[f"{k}={b!r}" for k, b in _FIELDS])
def test_every_config_field_rejects_a_bad_value_by_name(key, bad):
  cfg = distorted_mnist.get_config(_ARG)
  _set(cfg, key, bad)
  with pytest.raises(ValueError, match=key.rsplit(".", 1)[-1]):
    train.validate_config(cfg)


def test_every_config_field_is_covered():
  # The enumeration above reaches the fields of every section.
  covered = {key.split(".")[0] for key, _ in _FIELDS}
  assert {"seed", "protocol", "distortion_name", "distortion", "model",
          "train", "data", "num_transform_examples"} <= covered
