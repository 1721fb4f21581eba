"""Benchmark: `stn_jax.sample(., affine_grid(.))` against torch's grid_sample.

Times, on this machine's CPU, the forward pass and forward+backward (gradient
of sum(output * fixed random cotangent) w.r.t. image and theta; with
`--passes`, also w.r.t. theta alone, as a transformer trains on data) of

* JAX: `jax.jit(jax.vmap(...))` of `affine_grid` + `sample` (channels-last);
* torch: `F.affine_grid` + `F.grid_sample` (NCHW), same values,

for three shapes, in one process. After a warm-up, JAX and torch repetitions
are interleaved (J T J T ...) so that load from other processes hits both
alike; the table reports medians (and minima) and the JAX / torch ratio of
the medians. Grid generation is included in both.

  python -m benchmarks.sampler --json benchmarks/results/sampler_cpu.json \\
      --markdown benchmarks/results/sampler_cpu.md

`--path` forces one of the sampler's bilinear paths (`stn_jax.sampler.PATHS`)
to measure it; `--fused` times `stn_jax.cpu.warp.warp` (grid generation and
sampling fused over the batch, the models' default) instead; `--shapes`
picks a subset of shapes.
"""

import argparse
import dataclasses
import datetime
import functools
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

import stn_jax
from stn_jax.cpu import warp as cpu_warp
from stn_jax import sampler as sampler_lib

# name -> (batch, input (H, W, C), output (h, w)); the three shapes.
SHAPES = {
    "mnist_256x42x42x1_to_28x28": (256, (42, 42, 1), (28, 28)),
    "feat_32x56x56x64_to_56x56": (32, (56, 56, 64), (56, 56)),
    "image_8x224x224x3_to_224x224": (8, (224, 224, 3), (224, 224)),
}
# "forward+backward": gradients w.r.t. image and theta; "forward+theta_grad":
# w.r.t. theta only, as when training a spatial transformer on data images.
PASSES = ("forward", "forward+backward", "forward+theta_grad")
DEFAULT_PASSES = PASSES[:2]
# Text below this line of an existing --markdown file survives a re-run.
NOTES_MARKER = "<!-- notes: kept across re-runs -->"


@dataclasses.dataclass
class Row:
  shape: str
  pass_: str
  path: str
  jax_median_ms: float
  torch_median_ms: float
  jax_min_ms: float
  torch_min_ms: float
  ratio: float
  goal_met: bool


def _inputs(batch, in_shape, out_hw, seed=0):
  """Image [B, H, W, C], near-identity theta [B, 2, 3], cotangent [B, h, w, C]."""
  rng = np.random.default_rng(seed)
  image = rng.normal(size=(batch,) + in_shape).astype(np.float32)
  theta = (np.eye(2, 3)[None] +
           0.1 * rng.normal(size=(batch, 2, 3))).astype(np.float32)
  cot = rng.normal(size=(batch,) + out_hw + (in_shape[-1],)).astype(np.float32)
  return image, theta, cot


def _jax_fns(out_hw, method, padding_mode, path, fused=False):
  """Jitted forward and forward+backward of vmap(sample(., affine_grid(.))),
  or with `fused` of `stn_jax.cpu.warp.warp` (the same function)."""

  def one(image, theta):
    grid = stn_jax.affine_grid(theta, out_hw, align_corners=False)
    return stn_jax.sample(image, grid, method=method,
                          padding_mode=padding_mode, align_corners=False,
                          path=path)

  def warp(image, theta):
    return cpu_warp.warp(image, theta.reshape(theta.shape[0], 6),
                         transform="affine", output_size=out_hw,
                         align_corners=False, method=method,
                         padding_mode=padding_mode)

  forward = warp if fused else jax.vmap(one)

  def loss(image, theta, cot):
    return jnp.sum(forward(image, theta) * cot)

  return (jax.jit(forward), jax.jit(jax.grad(loss, argnums=(0, 1))),
          jax.jit(jax.grad(loss, argnums=1)))


def _torch_fns(batch, channels, out_hw, method, padding_mode):
  """torch forward and forward+backward on NCHW tensors."""
  f = torch.nn.functional
  size = (batch, channels) + tuple(out_hw)

  def forward(image, theta):
    grid = f.affine_grid(theta, size, align_corners=False)
    return f.grid_sample(image, grid, mode=method, padding_mode=padding_mode,
                         align_corners=False)

  def forward_backward(image, theta, cot):
    image = image.detach().requires_grad_(True)
    theta = theta.detach().requires_grad_(True)
    (forward(image, theta) * cot).sum().backward()
    return image.grad, theta.grad

  def forward_theta_grad(image, theta, cot):
    theta = theta.detach().requires_grad_(True)
    (forward(image, theta) * cot).sum().backward()
    return theta.grad

  return forward, forward_backward, forward_theta_grad


def _time_interleaved(jax_call, torch_call, reps, warmup):
  for _ in range(warmup):
    jax_call()
    torch_call()
  jax_times, torch_times = [], []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax_call()
    jax_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    torch_call()
    torch_times.append(time.perf_counter() - t0)
  return jax_times, torch_times


def bench_shape(name, *, reps, warmup, method, padding_mode, path,
                passes=DEFAULT_PASSES, fused=False):
  """Rows (one per pass in `passes`) for one shape."""
  batch, in_shape, out_hw = SHAPES[name]
  image, theta, cot = _inputs(batch, in_shape, out_hw)
  jax_fwd, jax_grad, jax_theta_grad = _jax_fns(out_hw, method, padding_mode,
                                               path, fused)
  torch_fwd, torch_grad, torch_theta_grad = _torch_fns(
      batch, in_shape[-1], out_hw, method, padding_mode)
  j_image, j_theta, j_cot = map(jnp.asarray, (image, theta, cot))
  t_image = torch.from_numpy(np.ascontiguousarray(image.transpose(0, 3, 1, 2)))
  t_theta = torch.from_numpy(theta)
  t_cot = torch.from_numpy(np.ascontiguousarray(cot.transpose(0, 3, 1, 2)))

  calls = {
      "forward": (
          lambda: jax.block_until_ready(jax_fwd(j_image, j_theta)),
          lambda: torch_fwd(t_image, t_theta)),
      "forward+backward": (
          lambda: jax.block_until_ready(jax_grad(j_image, j_theta, j_cot)),
          lambda: torch_grad(t_image, t_theta, t_cot)),
      "forward+theta_grad": (
          lambda: jax.block_until_ready(jax_theta_grad(j_image, j_theta,
                                                       j_cot)),
          lambda: torch_theta_grad(t_image, t_theta, t_cot)),
  }
  rows = []
  for pass_ in passes:
    jax_times, torch_times = _time_interleaved(*calls[pass_], reps=reps,
                                               warmup=warmup)
    jm, tm = statistics.median(jax_times), statistics.median(torch_times)
    if fused:
      shown_path = "cpu.warp"
    elif path == "auto":
      shown_path = "auto:" + sampler_lib.choose_linear_path(
          in_shape[1::-1], out_hw[0] * out_hw[1], in_shape[-1])
    else:
      shown_path = path
    rows.append(Row(
        shape=name, pass_=pass_, path=shown_path,
        jax_median_ms=1e3 * jm, torch_median_ms=1e3 * tm,
        jax_min_ms=1e3 * min(jax_times), torch_min_ms=1e3 * min(torch_times),
        ratio=jm / tm, goal_met=jm <= tm))
  return rows


def environment():
  """What the numbers depend on: versions, threads, CPU, date."""
  cpu = "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {
      "date": datetime.datetime.now().isoformat(timespec="seconds"),
      "cpu": cpu,
      "cpu_count": os.cpu_count(),
      "jax": jax.__version__,
      "jax_backend": jax.default_backend(),
      "jax_threads": "XLA:CPU default (one intra-op pool over all cores)",
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
      "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(),
      # torch's OpenMP workers spin after each call unless PASSIVE; in an
      # interleaved run that spinning takes cores from the next JAX call.
      "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"),
      "python": platform.python_version(),
      "load_average_at_start": os.getloadavg(),
  }


def markdown(rows, env, command):
  lines = [
      "# Sampler benchmark: stn_jax vs torch grid_sample (CPU)", "",
      f"Command: `{command}`", "",
      "Environment: " + ", ".join(f"{k}={v}" for k, v in env.items()), "",
      "| shape | pass | path | jax median ms | torch median ms | ratio "
      "(jax/torch) | goal met (<= 1.0)? | jax min ms | torch min ms |",
      "|---|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r.shape} | {r.pass_} | {r.path} | {r.jax_median_ms:.2f} | "
        f"{r.torch_median_ms:.2f} | {r.ratio:.2f} | "
        f"{'yes' if r.goal_met else f'no ({r.ratio:.2f}x)'} | "
        f"{r.jax_min_ms:.2f} | {r.torch_min_ms:.2f} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--reps", type=int, default=15)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--threads", type=int, default=os.cpu_count(),
                      help="torch.set_num_threads (default: number of cores)")
  parser.add_argument("--method", default="bilinear",
                      choices=("bilinear", "nearest", "bicubic"))
  parser.add_argument("--padding", default="zeros",
                      choices=sampler_lib.PADDING_MODES)
  parser.add_argument("--path", default="auto", choices=sampler_lib.PATHS)
  parser.add_argument("--shapes", nargs="+", default=list(SHAPES),
                      choices=list(SHAPES))
  parser.add_argument("--passes", nargs="+", default=list(DEFAULT_PASSES),
                      choices=PASSES)
  parser.add_argument("--fused", action="store_true",
                      help="time stn_jax.cpu.warp.warp (grid + sampling "
                      "fused over the batch, what the ST models run) instead "
                      "of vmap(sample(affine_grid))")
  parser.add_argument("--json", help="write the rows and environment here")
  parser.add_argument("--markdown", help="write the results table here")
  args = parser.parse_args(argv)
  torch.set_num_threads(args.threads)
  env = environment()
  rows = []
  for name in args.shapes:
    for row in bench_shape(name, reps=args.reps, warmup=args.warmup,
                           method=args.method, padding_mode=args.padding,
                           path=args.path, passes=args.passes,
                           fused=args.fused):
      rows.append(row)
      print(f"{row.shape:30s} {row.pass_:18s} {row.path:18s} "
            f"jax {row.jax_median_ms:8.2f} ms  torch {row.torch_median_ms:8.2f}"
            f" ms  ratio {row.ratio:5.2f}  (min {row.jax_min_ms:.2f} / "
            f"{row.torch_min_ms:.2f})", flush=True)
  command = "python -m benchmarks.sampler " + " ".join(argv or os.sys.argv[1:])
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"command": command, "environment": env,
                 "rows": [dataclasses.asdict(r) for r in rows]}, f, indent=1)
  if args.markdown:
    # Keep the hand-written analysis below NOTES_MARKER of an existing file.
    notes = ""
    if os.path.exists(args.markdown):
      with open(args.markdown) as f:
        old = f.read()
      if NOTES_MARKER in old:
        notes = "\n" + old[old.index(NOTES_MARKER):]
    with open(args.markdown, "w") as f:
      f.write(markdown(rows, env, command) + notes)
  return rows


if __name__ == "__main__":
  main()
