"""The train-step benchmark's PyTorch models are the JAX models' architecture.

Checked by parameter count (every layer's shape enters it) and by output
shape, for each model family and the readings that change the architecture
(classifier padding, transformer down-sampling).
"""


import numpy as np
import pytest

torch = pytest.importorskip("torch")

from benchmarks import train_step  # pylint: disable=g-import-not-at-top
from configs import distorted_mnist  # pylint: disable=g-import-not-at-top
from stn_jax import models  # pylint: disable=g-import-not-at-top

CASES = [
    ("r", "fcn", None, {}), ("r", "cnn", None, {}),
    ("rts", "cnn", None, {}),
    ("r", "cnn", None, {"classifier.padding": "VALID"}),
    ("rts", "cnn", None, {"classifier.padding": "VALID"}),
    ("r", "st_fcn", "tps", {}), ("rts", "st_fcn", "affine", {}),
    ("rts", "st_fcn", "attention", {}), ("rts", "st_cnn", "attention", {}),
    ("rts", "st_fcn", "affine", {"st_downsample_by": "avg_pool"}),
    ("r", "st_cnn", "projective", {}),
    ("rts", "st_cnn", "affine", {"st_downsample_by": "avg_pool"}),
    ("rts", "st_cnn", "affine", {"st_downsample": 1,
                                 "classifier.padding": "VALID"}),
]


@pytest.mark.parametrize("dist,model,transform,overrides", CASES)
def test_torch_model_matches_jax_model(dist, model, transform, overrides):
  cfg = distorted_mnist.get_config(
      ",".join([dist, model] + ([transform] if transform else []) + ["paper"]))
  for key, value in overrides.items():
    node = cfg.model
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  size = int(cfg.distortion.canvas_size)
  jax_model = models.build_model(cfg.model, canvas_size=size)
  torch_model = train_step.torch_model(cfg, size)
  n_torch = sum(p.numel() for p in torch_model.parameters())
  assert n_torch == models.param_count(jax_model, canvas_size=size)
  out = torch_model(torch.zeros(2, 1, size, size))
  assert tuple(out.shape) == (2, 10)


def test_cases_cover_every_model():
  assert {c[1] for c in CASES} == set(models.MODELS)


@pytest.mark.parametrize("transform", train_step.TorchST.KINDS)
def test_torch_grids_are_the_jax_grids(transform):
  import jax  # pylint: disable=g-import-not-at-top
  import stn_jax  # pylint: disable=g-import-not-at-top
  cfg = distorted_mnist.get_config(f"rts,st_fcn,{transform},paper")
  size = int(cfg.distortion.canvas_size)
  net = train_step.TorchST(cfg.model, size)
  kw = dict(models.transform_kwargs(cfg.model))
  rng = np.random.default_rng(0)
  ident = np.asarray(stn_jax.identity_params(transform, **kw))
  params = (ident + 0.1 * rng.standard_normal((3, ident.size))).astype(
      np.float32)
  got = net.grid(torch.tensor(params)).numpy()
  want = jax.vmap(lambda q: stn_jax.make_grid(
      transform, q, net.out, align_corners=True, **kw))(params)
  np.testing.assert_allclose(got, np.asarray(want), atol=2e-5)


def test_torch_st_refuses_a_family_without_a_torch_grid():
  cfg = distorted_mnist.get_config("rts,st_fcn,affine,paper")
  cfg.model.transform = "shear"  # Not registered here; no torch grid either.
  with pytest.raises(ValueError, match="shear"):
    train_step.TorchST(cfg.model, 42)
