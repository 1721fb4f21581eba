"""The seed axis: S >= 1 runs of one config trained together in one process.

With S = 1 the train state, batches and metrics carry no seed axis (the
plain, unvmapped step); with S > 1 every per-seed array has a leading axis
of size S and the step is `jax.vmap`ped over it. `SeedAxis` is the one place
where the two differ: the training loop stacks, slices and reads per-seed
values only through it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class SeedAxis:
  """The seeds `(s_0, ..., s_{S-1})` of one process, in increasing order."""
  seeds: tuple

  def __post_init__(self):
    seeds = tuple(int(s) for s in self.seeds)
    if not seeds or list(seeds) != sorted(set(seeds)) or seeds[0] < 0:
      raise ValueError(f"`seeds` must be distinct non-negative ints in "
                       f"increasing order, got {self.seeds!r}.")
    object.__setattr__(self, "seeds", seeds)

  @property
  def size(self) -> int:
    return len(self.seeds)

  @property
  def stacked(self) -> bool:
    """Whether per-seed arrays carry a leading seed axis (S > 1)."""
    return self.size > 1

  def stack(self, trees: Sequence):
    """One pytree per seed -> the axis' form (stacked along axis 0 if S > 1)."""
    if len(trees) != self.size:
      raise ValueError(f"expected {self.size} pytrees (one per seed), got "
                       f"{len(trees)}.")
    if not self.stacked:
      return trees[0]
    return jax.tree.map(lambda *a: jnp.stack(a), *trees)

  def take(self, tree, i: int):
    """Seed number `i`'s (0-based position, not the seed) part of `tree`."""
    return jax.tree.map(lambda a: a[i], tree) if self.stacked else tree

  def value(self, array, i: int) -> float:
    """Seed number `i`'s entry of a per-seed scalar (`[S]` or `[]`) as float."""
    values = np.asarray(array)
    return float(values[i] if self.stacked else values)

  def vmap(self, fn: Callable, in_axes=0) -> Callable:
    """`fn` vmapped over the seed axis when S > 1, else `fn` itself."""
    return jax.vmap(fn, in_axes=in_axes) if self.stacked else fn
