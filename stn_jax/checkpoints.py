"""Orbax checkpoints of training runs: one manager per seed's workdir.

A run saves its `TrainState` to `<workdir>/checkpoints/<step>`; the seeds
of one process resume together from the latest step that all of them saved.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(workdir: str) -> str:
  """The absolute checkpoint folder of `workdir`."""
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


def make_managers(workdirs: Sequence[str], *,
                  max_to_keep: int) -> list[ocp.CheckpointManager]:
  """One `CheckpointManager` per workdir (folders created if missing)."""
  return [ocp.CheckpointManager(
      checkpoint_dir(d), options=ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True)) for d in workdirs]


def common_step(managers, workdirs: Sequence[str]) -> int:
  """The step every manager can restore (0: none has a checkpoint).

  The seeds resume from the smallest of their latest steps (a kill between
  two seeds' saves leaves one a checkpoint ahead); raises ValueError if
  some seed no longer holds that step.
  """
  step = min(m.latest_step() or 0 for m in managers)
  if step:
    for m, d in zip(managers, workdirs):
      if step not in m.all_steps():
        raise ValueError(
            f"config `workdirs` must have checkpoints of every seed at a "
            f"common step; {checkpoint_dir(d)} has {sorted(m.all_steps())}, "
            f"others reach {step}.")
  return step


def restore(manager: ocp.CheckpointManager, step: int, like):
  """The pytree saved at `step`, with the structure and dtypes of `like`."""
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  return manager.restore(step, args=ocp.args.StandardRestore(abstract))


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
  """Saves `state` at `step` (asynchronously; `wait_until_finished` waits)."""
  manager.save(step, args=ocp.args.StandardSave(state))


def restore_latest(workdir: str, like) -> tuple:
  """`(state, step)` of the latest checkpoint in `workdir`.

  Raises FileNotFoundError when the workdir holds no checkpoint.
  """
  manager = ocp.CheckpointManager(checkpoint_dir(workdir))
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{workdir} has no checkpoint")
  return restore(manager, step, like), step
