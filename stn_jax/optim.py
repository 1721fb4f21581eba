"""Optimisers and learning-rate schedules of `config.train`, by name.

`make_optimizer(train_cfg)` -> `(optax transformation, schedule)`. The names
are the keys of `OPTIMIZERS` ("sgd", "adam") and `SCHEDULES` ("step",
"cosine", "constant"); `stn_jax.train.validate_config` checks them.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax


def _step_schedule(t) -> optax.Schedule:
  # The paper: lr divided by 10 every 50k steps.
  boundaries = {int(s): float(t.lr_decay_factor)
                for s in range(t.lr_decay_every, t.num_steps,
                               t.lr_decay_every)}
  return optax.piecewise_constant_schedule(t.learning_rate, boundaries)


def _cosine_schedule(t) -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=t.learning_rate,
      warmup_steps=t.warmup_steps, decay_steps=t.num_steps)


# name -> fn(config.train) -> optax schedule.
SCHEDULES: dict[str, Callable[[Any], optax.Schedule]] = {
    "step": _step_schedule,
    "cosine": _cosine_schedule,
    "constant": lambda t: optax.constant_schedule(t.learning_rate),
}

# name -> fn(schedule, config.train) -> optax transformation.
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    # Plain SGD (momentum 0) is the paper's protocol.
    "sgd": lambda lr, t: optax.sgd(lr, momentum=t.momentum or None),
    "adam": lambda lr, t: optax.adam(lr),
}

# Top-level parameter collections of an ST model that belong to the
# transformer (`stn_jax.models.SpatialTransformerClassifier`).
TRANSFORMER_PARAMS = ("localizer", "theta")


def _transformer_labels(params):
  """"transformer" for the localisation net's leaves, "other" otherwise."""
  return {k: jax.tree.map(
      lambda _, k=k: "transformer" if k in TRANSFORMER_PARAMS else "other", v)
          for k, v in params.items()}


def make_optimizer(train_cfg) -> tuple:
  """`(optax transformation, learning-rate schedule)` of `config.train`.

  `localizer_lr_multiplier` m != 1 scales the updates of the transformer's
  parameters (`TRANSFORMER_PARAMS`) by m: for SGD (with or without
  momentum) that is a learning rate m times the schedule's.
  """
  schedule = SCHEDULES[train_cfg.lr_schedule](train_cfg)
  tx = OPTIMIZERS[train_cfg.optimizer](schedule, train_cfg)
  if train_cfg.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(train_cfg.weight_decay), tx)
  m = float(train_cfg.localizer_lr_multiplier)
  if m != 1.0:
    tx = optax.chain(tx, optax.multi_transform(
        {"transformer": optax.scale(m), "other": optax.identity()},
        _transformer_labels))
  return tx, schedule
