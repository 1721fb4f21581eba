"""Pictures of a trained spatial transformer (matplotlib, written to PNG)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

import stn_jax
from stn_jax import models


def save_transforms_png(path: str, model, params, images, *,
                        align_corners: bool) -> None:
  """The paper's Figure-3 view: test inputs beside the transformer outputs.

  Args:
    path: the PNG file to write.
    model: an ST model (`stn_jax.models.SpatialTransformerClassifier`).
    params: its parameters (one seed).
    images: `[n, S, S, 1]` float inputs in [0, 1].
    align_corners: the model's grid convention (to draw the sampled region).

  Row 1: the inputs with the outline of the region the transformer samples
  (its grid's border, in input pixels). Row 2: the transformer's outputs.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  out, grid, _ = models.transform_input(model, params, jnp.asarray(images))
  out, grid = np.asarray(out), np.asarray(grid)
  n, size = len(images), images.shape[1]
  fig, axes = plt.subplots(2, n, figsize=(1.3 * n, 2.9), squeeze=False)
  for i in range(n):
    g = grid[i]
    border = np.concatenate([g[0, :], g[1:, -1], g[-1, -2::-1], g[-2::-1, 0]])
    px = np.asarray(stn_jax.normalized_to_pixel(
        border, (size, size), align_corners=align_corners))
    axes[0, i].imshow(images[i, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[0, i].plot(px[:, 0], px[:, 1], "r-", linewidth=0.8)
    axes[0, i].set_xlim(-0.5, size - 0.5)
    axes[0, i].set_ylim(size - 0.5, -0.5)
    axes[1, i].imshow(out[i, ..., 0], cmap="gray", vmin=0, vmax=1)
    for ax in axes[:, i]:
      ax.set_xticks([])
      ax.set_yticks([])
  axes[0, 0].set_ylabel("input")
  axes[1, 0].set_ylabel("ST output")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
