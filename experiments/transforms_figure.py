r"""The transform families side by side: `results/transforms.png`.

    STN_JAX_MNIST_DIR=../shared/data/mnist python -m experiments.transforms_figure \
        --workdirs workdirs/table1 --protocol quick --seed 0 \
        --out results/transforms.png

For each distortion (R, RTS, P, E, TC) it takes the same first
`--num_digits` test digits of that distortion's fixed test set and shows
them as the ST-CNN affine, projective and TPS runs of the sweep rectify
them (the transformer's output, restored from each run's latest checkpoint
in `<workdirs>/<dist>-st_cnn-<transform>-<protocol>-s<seed>`). A run that is
missing or unfinished (no `results.json`) is drawn as an empty row that says
so; nothing is substituted.
"""

import argparse
import json
import os

import jax.numpy as jnp
import numpy as np
from configs import distorted_mnist
from stn_jax import input_pipeline as data_lib
from stn_jax import distortions
from stn_jax import models
from stn_jax import train

DISTORTIONS = ("r", "rts", "p", "e", "tc")
TRANSFORMS = ("affine", "projective", "tps")


def run_name(dist: str, transform: str, protocol: str, seed: int) -> str:
  """The sweep's workdir name of an ST-CNN run (`configs/table1.py`)."""
  return f"{dist}-st_cnn-{transform}-{protocol}-s{seed}"


def restore_params(workdir: str, config):
  """`(model, params, step)` of the finished run in `workdir`."""
  if not os.path.exists(os.path.join(workdir, "results.json")):
    raise FileNotFoundError(f"{workdir} has no results.json (run missing or "
                            f"unfinished)")
  return train.restore_latest_params(config, workdir)


def rectify(model, params, images) -> np.ndarray:
  """The transformer's outputs `[n, h, w, 1]` for `images [n, S, S, 1]`."""
  out, _, _ = models.transform_input(model, params, jnp.asarray(images))
  return np.asarray(out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdirs", default="workdirs/table1")
  parser.add_argument("--protocol", default="quick")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num_digits", type=int, default=8)
  parser.add_argument("--out", default="results/transforms.png")
  args = parser.parse_args()
  if args.num_digits < 1:
    parser.error(f"--num_digits must be >= 1, got {args.num_digits}")

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  n = args.num_digits
  rows = []  # (label, images or None, note)
  status = {}
  mnist = None
  for dist in DISTORTIONS:
    base = distorted_mnist.get_config(f"{dist},st_cnn,affine,{args.protocol}")
    if mnist is None:
      mnist = data_lib.load_mnist(manual_dir=base.data.manual_dir,
                                  data_dir=base.data.data_dir)
    x_test, _ = distortions.make_test_set(
        dist, base.distortion, mnist.test_images, mnist.test_labels,
        seed=int(base.data.test_seed), cache_dir=base.data.test_cache_dir)
    inputs = np.asarray(x_test[:n])
    rows.append((f"{dist.upper()} input", inputs, ""))
    for tr in TRANSFORMS:
      cfg = distorted_mnist.get_config(f"{dist},st_cnn,{tr},{args.protocol}")
      cfg.seed = args.seed
      name = run_name(dist, tr, args.protocol, args.seed)
      try:
        model, params, step = restore_params(
            os.path.join(args.workdirs, name), cfg)
      except FileNotFoundError as e:
        rows.append((f"{dist.upper()} {tr}", None, f"missing: {e}"))
        status[name] = "missing"
        continue
      rows.append((f"{dist.upper()} {tr}", rectify(model, params, inputs),
                   ""))
      status[name] = f"step {step}"
    print(dist, {k: v for k, v in status.items() if k.startswith(dist + "-")},
          flush=True)

  fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n + 1.2,
                                                  1.1 * len(rows)),
                           squeeze=False)
  for r, (label, images, note) in enumerate(rows):
    for i in range(n):
      ax = axes[r, i]
      ax.set_xticks([])
      ax.set_yticks([])
      if images is not None:
        ax.imshow(images[i, ..., 0], cmap="gray", vmin=0, vmax=1)
      else:
        ax.set_facecolor("#eeeeee")
        if i == 0:
          ax.text(0.05, 0.5, "run missing", transform=ax.transAxes,
                  fontsize=7, color="red")
    axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center",
                          fontsize=8)
  fig.suptitle(f"ST-CNN outputs on the same test digits, by transform family "
               f"({args.protocol} protocol, seed {args.seed})", fontsize=9)
  fig.tight_layout(rect=(0, 0, 1, 0.985))
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  fig.savefig(args.out, dpi=90)
  plt.close(fig)
  with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
    json.dump({"command": "python -m experiments.transforms_figure " +
                          " ".join(os.sys.argv[1:]), "runs": status}, f,
              indent=2)
  print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
