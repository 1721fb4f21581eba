"""Independent references for the tests (torch, numpy float64), and the
tests' shared helpers.

Nothing here imports `stn_jax`: these are the yardsticks the library is
measured against.

* `torch_grid_sample` / `torch_affine_grid`: PyTorch's `grid_sample` and
  `affine_grid` (NCHW there, channels-last here), values and autograd
  gradients for a given output cotangent.
* `unnormalize` / `normalize`: torch's normalised <-> pixel formulas written
  out in float64.
* `paper_sample`: the paper's sampler written literally,
  V = sum_nm U_nm k(x - m) k(y - n) over ALL pixels (zero padding), float64.
* `random_grid_2d` / `random_grid_3d`: random grids that mix generic points
  (some outside the image) with points that land EXACTLY on integer pixel
  positions under the chosen convention.
* `pixel_centres`: the normalised (x, y) of every pixel centre.
* `apply_homography` / `homography_from_points`: a 3x3 homography applied to
  points, and the 8x8 direct linear solve for one, in numpy float64.
* `write_mock_mnist_metadata`: TFDS `mnist` metadata with known split sizes,
  which `tfds.testing.mock_data` needs.
"""

import numpy as np
import torch
import torch.nn.functional as F

# Image sizes for which the normalised <-> pixel maps are exact in float32
# (size - 1 a power of two for align_corners=True, size a power of two for
# False): a grid point built from an integer pixel position then unnormalises
# to exactly that integer on both sides, so floor() agrees.
EXACT_SIZES_2D = {True: (5, 9), False: (4, 8)}  # (H, W)
EXACT_SIZES_3D = {True: (3, 5, 9), False: (2, 4, 8)}  # (D, H, W)


def unnormalize(coord, size, align_corners):
  """torch's `grid_sampler_unnormalize`: normalised -> pixel index, float64."""
  coord = np.asarray(coord, np.float64)
  if align_corners:
    return (coord + 1.0) / 2.0 * (size - 1)
  return ((coord + 1.0) * size - 1.0) / 2.0


def normalize(pix, size, align_corners):
  """Inverse of `unnormalize`: pixel index -> normalised, float64."""
  pix = np.asarray(pix, np.float64)
  if align_corners:
    return 2.0 * pix / (size - 1) - 1.0
  return (2.0 * pix + 1.0) / size - 1.0


def _pixel_coords(rng, n, size, *, avoid_half, avoid_integer):
  """`n` random pixel coordinates in [-2, size + 1), optionally away from
  ties of rounding (x.5) or from kinks of the bilinear kernel (integers)."""
  pix = rng.uniform(-2.0, size + 1.0, size=n)
  frac = pix - np.floor(pix)
  if avoid_half:
    pix = np.where(np.abs(frac - 0.5) < 0.05, pix + 0.15, pix)
  if avoid_integer:
    pix = np.floor(pix) + 0.1 + 0.8 * frac
  return pix


def random_grid(rng, out_shape, image_spatial, align_corners, *,
                integer_fraction=0.35, avoid_half=True, avoid_integer=False):
  """A float32 grid `[*out_shape, ndim]` of (x, y[, z]) normalised points.

  Args:
    rng: numpy Generator.
    out_shape: spatial shape of the grid, e.g. (h, w) or (d, h, w).
    image_spatial: the image's spatial shape (H, W) or (D, H, W).
    align_corners: convention used to place the integer points.
    integer_fraction: share of points placed exactly on integer pixel
      positions in [-1, size] (inside, on the edge pixels and one beyond).
    avoid_half: keep generic points away from x.5 (rounding ties of nearest).
    avoid_integer: keep generic points away from integers (bilinear kinks).
  """
  sizes = tuple(image_spatial)[::-1]  # (x, y[, z]) order
  n = int(np.prod(out_shape))
  is_int = rng.uniform(size=n) < integer_fraction
  cols = []
  for size in sizes:
    pix = _pixel_coords(rng, n, size, avoid_half=avoid_half,
                        avoid_integer=avoid_integer)
    ints = rng.integers(-1, size + 1, size=n).astype(np.float64)
    pix = np.where(is_int, ints, pix)
    cols.append(normalize(pix, size, align_corners))
  grid = np.stack(cols, axis=-1).astype(np.float32)
  return grid.reshape(tuple(out_shape) + (len(sizes),))


def _to_torch_image(image, dtype):
  # [..., C] -> [1, C, ...]
  return torch.tensor(np.moveaxis(np.asarray(image), -1, 0)[None], dtype=dtype)


def torch_grid_sample(image, grid, cotangent=None, *, method, padding_mode,
                      align_corners, dtype=torch.float32):
  """torch.nn.functional.grid_sample on ONE channels-last example.

  Args:
    image: `[H, W, C]` or `[D, H, W, C]` numpy array.
    grid: `[h, w, 2]` or `[d, h, w, 3]` numpy array.
    cotangent: optional `[h, w, C]` / `[d, h, w, C]` output cotangent.
    method, padding_mode, align_corners: as torch's `mode`, `padding_mode`,
      `align_corners` ("bilinear" is trilinear for volumes).
    dtype: torch dtype of the computation.

  Returns:
    The output `[..., C]` (numpy), or with a cotangent the triple
    (output, d image, d grid) from torch autograd.
  """
  img = _to_torch_image(image, dtype).requires_grad_(True)
  g = torch.tensor(np.asarray(grid)[None], dtype=dtype).requires_grad_(True)
  out = F.grid_sample(img, g, mode=method, padding_mode=padding_mode,
                      align_corners=align_corners)
  out_np = np.moveaxis(out[0].detach().numpy(), 0, -1)
  if cotangent is None:
    return out_np
  out.backward(_to_torch_image(cotangent, dtype))
  return (out_np, np.moveaxis(img.grad[0].numpy(), 0, -1),
          g.grad[0].numpy())


def torch_affine_grid(theta, shape, *, align_corners):
  """torch.nn.functional.affine_grid for one `[2, 3]` / `[3, 4]` theta.

  `shape` is (h, w) or (d, h, w); returns `[h, w, 2]` / `[d, h, w, 3]`.
  """
  t = torch.tensor(np.asarray(theta, np.float32)[None])
  size = (1, 1) + tuple(shape)
  return F.affine_grid(t, size, align_corners=align_corners)[0].numpy()


def bilinear_kernel(t):
  """The paper's k(t) = max(0, 1 - |t|)."""
  return np.maximum(0.0, 1.0 - np.abs(t))


def nearest_kernel(t):
  """The paper's integer kernel delta(floor(t + 0.5)) (ties round up)."""
  return (np.floor(t + 0.5) == 0).astype(np.float64)


def paper_sample(image, grid, *, kernel, align_corners):
  """The paper's sampler, literally: V_i = sum_nm U_nm k(x_i - m) k(y_i - n).

  Zero padding (the sum only runs over pixels that exist). float64 numpy.

  Args:
    image: `[H, W, C]`.
    grid: `[h, w, 2]` normalised (x, y).
    kernel: `bilinear_kernel` or `nearest_kernel`.
    align_corners: convention.

  Returns:
    `[h, w, C]` float64.
  """
  image = np.asarray(image, np.float64)
  height, width, _ = image.shape
  x = unnormalize(grid[..., 0], width, align_corners)[..., None]  # [h, w, 1]
  y = unnormalize(grid[..., 1], height, align_corners)[..., None]
  kx = kernel(x - np.arange(width))  # [h, w, W]
  ky = kernel(y - np.arange(height))  # [h, w, H]
  return np.einsum("hwn,hwm,nmc->hwc", ky, kx, image)


def pixel_centres(shape, align_corners):
  """`[h, w, 2]` normalised (x, y) of every pixel centre, float64 numpy."""
  height, width = shape
  ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  x = normalize(xs, width, align_corners) if width > 1 else 0.0 * xs
  y = normalize(ys, height, align_corners) if height > 1 else 0.0 * ys
  return np.stack([x, y], axis=-1)


def apply_homography(h, points):
  """`[..., 2]` points mapped by the 3x3 `h` (float64; w = 0 gives inf)."""
  points = np.asarray(points, np.float64)
  hom = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1) @ (
      np.asarray(h, np.float64).T)
  with np.errstate(divide="ignore", invalid="ignore"):
    return hom[..., :2] / hom[..., 2:]


def homography_from_points(src, dst):
  """The 8x8 direct linear solve for H (h33 = 1) with H src ~ dst, float64."""
  rows, rhs = [], []
  for (x, y), (u, v) in zip(np.asarray(src, np.float64),
                            np.asarray(dst, np.float64)):
    rows.append([x, y, 1, 0, 0, 0, -x * u, -y * u])
    rows.append([0, 0, 0, x, y, 1, -x * v, -y * v])
    rhs += [u, v]
  return np.append(np.linalg.solve(np.array(rows), np.array(rhs)),
                   1.0).reshape(3, 3)


def write_mock_mnist_metadata(data_dir, *, train: int, test: int) -> str:
  """Writes TFDS `mnist` metadata with `train` / `test` examples; returns
  `data_dir`.

  `tfds.testing.mock_data` reads the split sizes from it: without them,
  `batch_size=-1` asks TF for a batch of sys.maxsize examples and aborts.
  """
  import os  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder("mnist", data_dir=str(data_dir))
  builder.info.set_splits(tfds.core.SplitDict([
      tfds.core.SplitInfo(name=name, shard_lengths=[n], num_bytes=0)
      for name, n in (("train", train), ("test", test))]))
  os.makedirs(builder.data_dir, exist_ok=True)
  builder.info.write_to_directory(builder.data_dir)
  return str(data_dir)
