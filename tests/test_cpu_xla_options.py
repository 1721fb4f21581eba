"""Tests of stn_jax.cpu.xla_options: the names, and that the options reach XLA
without changing what the train step computes."""

import re

import jax
import numpy as np
import pytest

from configs import distorted_mnist
from stn_jax import train
from stn_jax.cpu import xla_options
from tests import _steps

# A YNNPACK fusion built around a dot (a matmul of the dense layers).
_YNN_DOT = re.compile(r"%ynn_fusion[.\d]* = [^\n]*/dot_general")


def test_compiler_options_by_name_and_platform():
  fast = xla_options.compiler_options("fast", platform="cpu")
  assert fast == {"xla_cpu_experimental_ynn_fusion_type":
                  "LIBRARY_FUSION_TYPE_REDUCE"}
  fast["extra"] = 1  # A copy: the registry is unchanged.
  assert "extra" not in xla_options.XLA_OPTIONS["fast"]["cpu"]
  assert xla_options.compiler_options("fast", platform="gpu") is None
  assert xla_options.compiler_options("default", platform="cpu") is None
  assert xla_options.compiler_options("default") is None


def test_unknown_name_is_rejected():
  with pytest.raises(ValueError, match="'turbo'.*'default', 'fast'"):
    xla_options.compiler_options("turbo")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU options")
@pytest.mark.parametrize("arg", ["r,fcn,smoke", "r,st_cnn,tps,smoke"])
def test_fast_options_move_the_dots_and_keep_the_step(arg):
  state, batch = _steps.sgd_state_and_batch(arg)
  steps = {name: jax.jit(train.train_step,
                         compiler_options=xla_options.compiler_options(name))
           for name in ("default", "fast")}
  hlo = {n: s.lower(state, batch).compile().as_text() for n, s in steps.items()}
  # The option reaches XLA: by default YNNPACK runs the dense layers' dots,
  # with "fast" none of them.
  assert _YNN_DOT.search(hlo["default"])
  assert not _YNN_DOT.search(hlo["fast"])
  (s0, m0), (s1, m1) = (steps[n](state, batch) for n in ("default", "fast"))
  for k in m0:
    np.testing.assert_allclose(m1[k], m0[k], rtol=2e-5, err_msg=k)
  _steps.assert_same_update(state, s0, s1)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="CPU options")
@pytest.mark.parametrize("name,ynn_dots", [("fast", False), ("default", True)])
def test_step_function_compiles_with_the_configs_options(name, ynn_dots):
  cfg = distorted_mnist.get_config("r,fcn,smoke")
  cfg.train.xla_options = name
  state, batch = _steps.sgd_state_and_batch("r,fcn,smoke")
  _, step_fn, _ = train.make_step_functions(
      cfg, None, train.make_mesh(jax.devices()[:1]),
      data_key=jax.random.key(1), distort_key=jax.random.key(2))
  hlo = step_fn.lower(state, batch).compile().as_text()
  assert bool(_YNN_DOT.search(hlo)) == ynn_dots
