"""stn_jax: Spatial Transformer Networks in JAX.

The flat public API: grid generators (output -> input source coordinates,
normalised to [-1, 1]), the differentiable sampler, and the registry of
transform families. See `stn_jax.grids` for the conventions, which follow
`torch.nn.functional.affine_grid` / `grid_sample` (channels-last here).

`stn_jax.warp` resamples a batch of images through a batch of transforms.
The CPU-fast forms of the models' layers are in `stn_jax.cpu`.
`stn_jax.SpatialTransformer` (`stn_jax.layers`) is the transformer as a
drop-in flax layer; it is imported on first use, so that `import stn_jax`
needs only jax (flax is needed for the layer alone).
"""

from stn_jax.grids import affine_grid
from stn_jax.grids import affine_grid_3d
from stn_jax.grids import attention_grid
from stn_jax.grids import base_grid
from stn_jax.grids import PROJECTIVE_OUTSIDE
from stn_jax.grids import projective_grid
from stn_jax.grids import tps_grid
from stn_jax.grids import tps_source_points
from stn_jax.sampler import METHODS
from stn_jax.sampler import PADDING_MODES
from stn_jax.sampler import sample
from stn_jax.transforms import compose_affine
from stn_jax.transforms import compose_projective
from stn_jax.transforms import get_transform
from stn_jax.transforms import identity_params
from stn_jax.transforms import invert_affine
from stn_jax.transforms import invert_projective
from stn_jax.transforms import make_grid
from stn_jax.transforms import normalized_to_pixel
from stn_jax.transforms import num_params
from stn_jax.transforms import pixel_to_normalized
from stn_jax.transforms import projective_from_points
from stn_jax.transforms import register_transform
from stn_jax.transforms import Transform
from stn_jax.transforms import TRANSFORMS
from stn_jax.warping import warp

__version__ = "0.1.0"

_LAZY = {"SpatialTransformer": "stn_jax.layers"}


def __getattr__(name):
  """`stn_jax.SpatialTransformer`: imported (with flax) on first use."""
  if name in _LAZY:
    import importlib  # pylint: disable=g-import-not-at-top
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module 'stn_jax' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_LAZY))
