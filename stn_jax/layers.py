"""A spatial transformer as a drop-in `flax.linen` layer for your own model.

    import flax.linen as nn
    import stn_jax

    class Localizer(nn.Module):           # any [B, H, W, C] -> [B, F] network
      @nn.compact
      def __call__(self, x):
        x = x.reshape(x.shape[0], -1)
        return nn.relu(nn.Dense(32)(x))

    class Net(nn.Module):
      @nn.compact
      def __call__(self, x):              # x: [B, 28, 28, 1]
        x = stn_jax.SpatialTransformer(Localizer(), transform="affine")(x)
        x = x.reshape(x.shape[0], -1)
        return nn.Dense(10)(nn.relu(nn.Dense(128)(x)))

`SpatialTransformer` regresses the flat parameters of a transform family of
the registry (`stn_jax.TRANSFORMS`) from the localiser's features with a
dense layer named "theta" that starts at zero weights and the identity
bias (`stn_jax.identity_params`), so at initialisation the layer resamples
its input through the identity grid (output == input when `output_size` is
the input's size). The grid and the sampling are the public
`stn_jax.make_grid` and `stn_jax.sample`, vmapped over the batch.
`stn_jax.models.SpatialTransformerClassifier` is the same transformer fused
with the paper's classifiers (and fused CPU kernels).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from stn_jax import transforms as transforms_lib
from stn_jax.sampler import sample


class SpatialTransformer(nn.Module):
  """Localiser -> transform parameters -> grid -> sampled input.

  Attributes:
    localizer: a flax module mapping `[B, H, W, C]` to features `[B, ...]`
      (flattened to `[B, F]` before the regression layer).
    transform: a family of `stn_jax.TRANSFORMS` ("affine", "attention",
      "projective", "tps").
    output_size: `(h, w)` of the output; None keeps the input's `(H, W)`.
    transform_kwargs: family options as `((name, value), ...)` or a dict,
      e.g. `(("num_points", 16),)` for "tps".
    align_corners: grid convention (see `stn_jax.grids`): False, the default,
      as torch's `affine_grid`; True, the paper's.
    method: sampler kernel: "bilinear", "nearest" or "bicubic".
    padding_mode: what positions outside the input read: "zeros", "border"
      or "reflection".

  Calling it on `x [B, H, W, C]` (floating) returns `[B, h, w, C]`.
  `transform_input(x)` returns `(output, grid [B, h, w, 2], theta [B, P])`;
  `__call__` also stores theta as `intermediates/theta` (`sow`), read with
  `model.apply(..., mutable=["intermediates"])`.
  """
  localizer: nn.Module
  transform: str = "affine"
  output_size: Optional[Sequence[int]] = None
  transform_kwargs: Union[tuple, Mapping[str, Any]] = ()
  align_corners: bool = False
  method: str = "bilinear"
  padding_mode: str = "zeros"

  def _output_size(self, x) -> tuple:
    if self.output_size is None:
      return (int(x.shape[1]), int(x.shape[2]))
    try:
      size = tuple(int(s) for s in self.output_size)
    except (TypeError, ValueError):
      size = ()
    if len(size) != 2 or min(size) < 1:
      raise ValueError(f"SpatialTransformer: `output_size` must be None or "
                       f"(h, w) of positive ints, got {self.output_size!r}.")
    return size

  @nn.compact
  def transform_input(self, x):
    """`x [B, H, W, C]` -> `(output [B, h, w, C], grid [B, h, w, 2], theta)`."""
    x = jnp.asarray(x)
    if x.ndim != 4:
      hint = (" (one image: add the batch axis, x[None])" if x.ndim == 3
              else "")
      raise ValueError(
          f"SpatialTransformer: `x` must be a batch of channels-last images "
          f"[B, H, W, C], got shape {list(x.shape)}{hint}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
      raise ValueError(f"SpatialTransformer: `x` must be floating (scale "
                       f"integer images to float first), got {x.dtype}.")
    kw = dict(self.transform_kwargs)
    shape = self._output_size(x)
    # Raises a ValueError naming the families for an unknown `transform`.
    count = transforms_lib.num_params(self.transform, **kw)
    with jax.ensure_compile_time_eval():  # Concrete inside init's trace.
      identity = np.asarray(transforms_lib.identity_params(self.transform,
                                                           **kw))
    features = self.localizer(x)
    if features.ndim < 1 or features.shape[0] != x.shape[0]:
      raise ValueError(
          f"SpatialTransformer: the localizer must map [B, H, W, C] to "
          f"features [B, ...] with the same B ({x.shape[0]}), got shape "
          f"{list(features.shape)}.")
    features = features.reshape(features.shape[0], -1)
    theta = nn.Dense(count, kernel_init=nn.initializers.zeros,
                     bias_init=lambda *_: jnp.asarray(identity),
                     name="theta")(features)
    grids = jax.vmap(lambda p: transforms_lib.make_grid(
        self.transform, p, shape, align_corners=self.align_corners, **kw))(
            theta)
    out = jax.vmap(lambda image, grid: sample(
        image, grid, method=self.method, padding_mode=self.padding_mode,
        align_corners=self.align_corners))(x, grids)
    return out, grids, theta

  def __call__(self, x):
    """`x [B, H, W, C]` float -> the transformed images `[B, h, w, C]`."""
    out, _, theta = self.transform_input(x)
    self.sow("intermediates", "theta", theta)
    return out
