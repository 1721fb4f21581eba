"""Shared set-up of the tests that compare two compilations of one train step.

`sgd_state_and_batch` gives a state under SGD with rate 1 (the parameters
move by minus the gradient) and a random batch; `assert_same_update` checks
that two steps from that state moved the parameters alike.
"""

import jax
import numpy as np
import optax

from configs import distorted_mnist
from stn_jax import models
from stn_jax import train


def sgd_state_and_batch(arg: str, batch_size: int = 16):
  """`(state, (images [B, 28, 28, 1], labels [B]))` of config `arg` (28x28)."""
  cfg = distorted_mnist.get_config(arg)
  model = models.build_model(cfg.model, canvas_size=28)
  state = train.create_train_state(model, optax.sgd(1.0), jax.random.key(0),
                                   canvas_size=28)
  rng = np.random.default_rng(0)
  batch = (rng.random((batch_size, 28, 28, 1), np.float32),
           rng.integers(0, 10, batch_size).astype(np.int32))
  return state, batch


def assert_same_update(state, want, got, *, rtol=1e-4, atol_scale=1e-5):
  """`got`'s parameter update equals `want`'s (both stepped from `state`).

  The tolerance is relative per element plus `atol_scale` times the largest
  update, which must be non-zero (the step did move the parameters).
  """
  moved = lambda s: [np.asarray(b) - np.asarray(a) for a, b in zip(
      jax.tree.leaves(state.params), jax.tree.leaves(s.params))]
  # (An ST model's localiser has no gradient yet: `theta`'s weights are 0.)
  scale = max(np.abs(g).max() for g in moved(want))
  assert scale > 0
  for w, g in zip(moved(want), moved(got)):
    np.testing.assert_allclose(g, w, rtol=rtol, atol=atol_scale * scale)
