r"""Warps one test image with each transform family and writes a picture.

    python -m experiments.warp_demo --out docs/warp_demo.png

The image is drawn here (a checkerboard with a disc and a bar), so the demo
needs no data set. Each panel is `stn_jax.sample(image, make_grid(kind, p))`
for one transform family; the last panel is a 3D affine transform of a volume,
projected back to 2D by a max over depth.
"""

import argparse

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

import stn_jax  # pylint: disable=g-import-not-at-top


def test_image(size: int = 96) -> np.ndarray:
  """A `[size, size, 3]` float32 RGB picture with straight lines and a disc."""
  yy, xx = np.mgrid[0:size, 0:size] / size
  checker = ((np.floor(xx * 8) + np.floor(yy * 8)) % 2).astype(np.float32)
  image = np.stack([0.25 + 0.5 * checker] * 3, axis=-1)
  disc = (xx - 0.35) ** 2 + (yy - 0.4) ** 2 < 0.15 ** 2
  image[disc] = (0.9, 0.2, 0.2)
  bar = (np.abs(yy - 0.75) < 0.05) & (xx > 0.2) & (xx < 0.85)
  image[bar] = (0.2, 0.3, 0.9)
  return image.astype(np.float32)


def demo_params() -> dict:
  """One example parameter vector per transform family (flat, registry layout)."""
  angle = np.deg2rad(25.0)
  c, s = np.cos(angle), np.sin(angle)
  rng = np.random.default_rng(0)
  tps = stn_jax.tps_source_points(16) + 0.12 * rng.standard_normal((16, 2))
  return {
      "affine": np.array([c * 0.9, -s * 0.9 + 0.2, 0.1, s * 0.9, c * 0.9, 0.0]),
      "attention": np.array([0.5, -0.3, -0.2]),
      "projective": np.array([0.9, 0.1, 0.0, 0.05, 1.0, 0.0, 0.3, 0.25]),
      "tps": tps.ravel(),
  }


def warp_all(image: np.ndarray) -> dict:
  """Returns {title: [h, w, 3] warped image} for every family plus 3D."""
  shape = image.shape[:2]
  out = {"input": image}
  for kind, params in demo_params().items():
    grid = stn_jax.make_grid(kind, jnp.asarray(params, jnp.float32), shape,
                             align_corners=False)
    out[kind] = np.asarray(jax.jit(stn_jax.sample)(image, grid))
  # 3D: the image as a thin slab in a volume, tilted about the y axis, then
  # projected back to 2D by a sum over depth (the slab appears foreshortened).
  depth = 16
  thickness = 2
  volume = np.zeros((depth,) + image.shape, np.float32)
  volume[depth // 2 - 1:depth // 2 - 1 + thickness] = image
  a = np.deg2rad(50.0)
  theta3 = jnp.array([[np.cos(a), 0, np.sin(a), 0], [0, 1, 0, 0],
                      [-np.sin(a), 0, np.cos(a), 0]], jnp.float32)
  grid3 = stn_jax.affine_grid_3d(theta3, (depth,) + shape)
  out["3d affine (sum over depth)"] = np.asarray(
      stn_jax.sample(volume, grid3).sum(axis=0) * np.cos(a) / thickness)
  return out


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="docs/warp_demo.png",
                      help="where to write the PNG")
  args = parser.parse_args()
  panels = warp_all(test_image())
  fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
  for ax, (title, img) in zip(axes, panels.items()):
    ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(args.out, dpi=100)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
