r"""Writes a PNG sample sheet of every distortion (one row each) from MNIST.

    STN_JAX_MNIST_DIR=/path/to/mnist python -m experiments.sample_sheet \
        --out docs/distortions.png

The first row shows the undistorted test digits; each further row shows the
same digits under one distortion with its default (paper) numbers. The data
is always real MNIST, loaded with `stn_jax.data.load_mnist` from
`--manual_dir` (default `$STN_JAX_MNIST_DIR`; unset, TFDS downloads it).
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from stn_jax import input_pipeline as data  # pylint: disable=wrong-import-position
from stn_jax import distortions  # pylint: disable=wrong-import-position


# Row titles, one per distortion, from its config values `v`.
_TITLES = {
    "r": lambda v: (f"R: rotation ±{v['max_rotation_deg']:g}°, "
                    f"{v['canvas_size']}x{v['canvas_size']}"),
    "rts": lambda v: (f"RTS: rotation ±{v['max_rotation_deg']:g}°, scale "
                      f"{v['min_scale']:g}-{v['max_scale']:g}, random "
                      f"position, {v['canvas_size']}x{v['canvas_size']}"),
    "p": lambda v: (f"P: scale {v['min_scale']:g}-{v['max_scale']:g}, corners "
                    f"moved N(0, {v['corner_std_px']:g} px) in the "
                    f"{v['corners_moved_in']}, "
                    f"{v['canvas_size']}x{v['canvas_size']}"),
    "e": lambda v: (f"E: scale {v['min_scale']:g}-{v['max_scale']:g}, "
                    f"{v['tps_grid_size']}x{v['tps_grid_size']} TPS points "
                    f"moved N(0, {v['control_std_px']:g} px) in the "
                    f"{v['points_moved_in']}, "
                    f"{v['canvas_size']}x{v['canvas_size']}"),
    "tc": lambda v: (f"TC: random position + {v['num_clutter']} clutter "
                     f"patches {v['clutter_size']}x{v['clutter_size']}, "
                     f"{v['canvas_size']}x{v['canvas_size']}"),
}


def _title(name: str, cfg) -> str:
  values = distortions.config_values(name, cfg)
  return _TITLES[name](values) if name in _TITLES else name


def make_sheet(images, *, out: str, seed: int) -> None:
  """Draws `images` [n, 28, 28] uint8 and their distortions into `out` (PNG).

  Clutter for "tc" is cut from the same images. Rows: original, then one per
  registered distortion; every row uses key `fold_in(key(seed), row)`.
  """
  names = list(distortions.DISTORTIONS)
  n = images.shape[0]
  rows = [("original MNIST test digits, 28x28", images / 255.0)]
  key = jax.random.key(seed)
  for i, name in enumerate(names):
    cfg = distortions.default_distortion_config(name)
    x = distortions.distort(name, jax.random.fold_in(key, i), images, cfg=cfg,
                            clutter_source=images)
    rows.append((_title(name, cfg), x[..., 0]))

  fig = plt.figure(figsize=(1.1 * n, 1.45 * len(rows)))
  # One subfigure per row, so a long row title takes no column's width.
  for subfig, (title, batch) in zip(fig.subfigures(len(rows), 1), rows):
    subfig.suptitle(title, x=0.01, ha="left", fontsize=10)
    axes = subfig.subplots(1, n, squeeze=False)[0]
    subfig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.8,
                           wspace=0.08)
    for c, ax in enumerate(axes):
      ax.imshow(batch[c], cmap="gray", vmin=0.0, vmax=1.0,
                interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out, dpi=100)
  plt.close(fig)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", required=True, help="PNG path to write.")
  parser.add_argument(
      "--manual_dir", default=data.default_manual_dir(),
      help="Folder with the four MNIST IDX .gz files (default: "
      f"${data.MNIST_ENV_VAR}; unset, TFDS downloads MNIST).")
  parser.add_argument("--data_dir", default=None,
                      help="TFDS data folder (default: TFDS's own).")
  parser.add_argument("--num_examples", type=int, default=8)
  parser.add_argument("--first_index", type=int, default=0,
                      help="Index of the first test digit shown.")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.num_examples < 1:
    parser.error(f"--num_examples must be >= 1, got {args.num_examples}")

  mnist = data.load_mnist(manual_dir=args.manual_dir, data_dir=args.data_dir)
  stop = args.first_index + args.num_examples
  if args.first_index < 0 or stop > len(mnist.test_images):
    parser.error(f"--first_index/--num_examples select {args.first_index}.."
                 f"{stop - 1}, outside the {len(mnist.test_images)} test "
                 "digits")
  make_sheet(mnist.test_images[args.first_index:stop], out=args.out,
             seed=args.seed)
  print(f"wrote {args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
