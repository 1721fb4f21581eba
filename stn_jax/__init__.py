"""stn_jax: Spatial Transformer Networks in JAX.

The flat public API: grid generators (output -> input source coordinates,
normalised to [-1, 1]), the differentiable sampler, and the registry of
transform families. See `stn_jax.grids` for the conventions, which follow
`torch.nn.functional.affine_grid` / `grid_sample` (channels-last here).
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

__version__ = "0.1.0"
