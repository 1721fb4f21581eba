r"""Seeds of one Table-1 cell trained in one vmapped step vs one at a time.

    python -m benchmarks.vmapped_seeds --seeds 3 \
        --json benchmarks/results/vmapped_seeds_cpu.json \
        --markdown benchmarks/results/vmapped_seeds_cpu.md

For each model (quick protocol: batch 128, Adam), it builds `--seeds`
train states from different seeds and times, interleaved after warm-up:

* sequential: the jitted `stn_jax.train.train_step` called once per seed;
* vmapped: one jitted `jax.vmap(train_step)` over the stacked states and a
  `[seeds, B, ...]` batch (each seed its own images).

It reports examples/s per model (seeds x batch / time, medians) for both
and the ratio vmapped / sequential (> 1: vmapping the seeds pays), and
checks that the vmapped step computes the same losses as the sequential one.
"""

import argparse
import datetime
import functools
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import distorted_mnist
from stn_jax import models
from stn_jax import train
from stn_jax.cpu import xla_options

# (distortion, model, transform) rows.
ROWS = (
    ("r", "fcn", None), ("r", "st_fcn", "affine"), ("r", "cnn", None),
    ("r", "st_cnn", "affine"), ("rts", "st_fcn", "affine"),
)


def bench_row(dist, model_name, transform, *, seeds, reps, warmup):
  arg = ",".join([dist, model_name] + ([transform] if transform else []) +
                 ["quick"])
  cfg = distorted_mnist.get_config(arg)
  size = int(cfg.distortion.canvas_size)
  batch = int(cfg.train.batch_size)
  model = models.build_model(cfg.model, canvas_size=size)
  tx, _ = train.make_optimizer(cfg.train)
  states = [train.create_train_state(model, tx, jax.random.key(s),
                                     canvas_size=size) for s in range(seeds)]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.random((seeds, batch, size, size, 1), np.float32))
  y = jnp.asarray(rng.integers(0, 10, (seeds, batch)).astype(np.int32))

  # The step as training runs it (the config's micro-batches and XLA
  # options).
  step = functools.partial(train.train_step,
                           micro_batch_size=cfg.train.micro_batch_size)
  options = xla_options.compiler_options(cfg.train.xla_options)
  seq = jax.jit(step, compiler_options=options)
  vm = jax.jit(jax.vmap(step), compiler_options=options)
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)

  # Same function: one step from the same states gives the same losses.
  want = [float(seq(states[s], (x[s], y[s]))[1]["loss"])
          for s in range(seeds)]
  got = np.asarray(vm(stacked, (x, y))[1]["loss"])
  np.testing.assert_allclose(got, want, rtol=1e-4)

  def run_seq(sts):
    out = [seq(sts[s], (x[s], y[s])) for s in range(seeds)]
    jax.block_until_ready([m["loss"] for _, m in out])
    return [s for s, _ in out]

  def run_vm(st):
    st, m = vm(st, (x, y))
    jax.block_until_ready(m["loss"])
    return st

  for _ in range(warmup):
    states, stacked = run_seq(states), run_vm(stacked)
  ts, tv = [], []
  for _ in range(reps):
    t = time.perf_counter()
    states = run_seq(states)
    ts.append(time.perf_counter() - t)
    t = time.perf_counter()
    stacked = run_vm(stacked)
    tv.append(time.perf_counter() - t)
  ms, mv = statistics.median(ts), statistics.median(tv)
  name = model_name + (f"_{transform}" if transform else "")
  return {
      "distortion": dist, "canvas": size, "model": name, "seeds": seeds,
      "batch": batch, "sequential_examples_per_s": seeds * batch / ms,
      "vmapped_examples_per_s": seeds * batch / mv, "ratio": ms / mv,
      "sequential_median_ms": 1e3 * ms, "vmapped_median_ms": 1e3 * mv,
      "reps": reps,
  }


def write_markdown(rows, meta, path):
  lines = ["# Seeds in one vmapped step vs one at a time", "",
           f"Command: `{meta['command']}`", "",
           f"Device: {meta['device']}; jax {meta['jax']}; {meta['date']}. "
           f"{meta['note']}", "",
           "Quick protocol (batch 128, Adam); examples/s counts every seed's "
           "examples; ratio = vmapped / sequential (> 1: vmapping pays).", "",
           "| canvas | model | seeds | sequential img/s | vmapped img/s | "
           "ratio |", "|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['canvas']}x{r['canvas']} | {r['model']} | {r['seeds']} | "
        f"{r['sequential_examples_per_s']:.0f} | "
        f"{r['vmapped_examples_per_s']:.0f} | {r['ratio']:.2f} |")
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--reps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--models", default="",
                      help="comma-separated subset, e.g. fcn,st_fcn_affine")
  parser.add_argument("--note", default="",
                      help="a remark on the machine's state for the table")
  parser.add_argument("--json", default=None)
  parser.add_argument("--markdown", default=None)
  args = parser.parse_args()
  if args.seeds < 1:
    parser.error(f"--seeds must be >= 1, got {args.seeds}")
  wanted = {m for m in args.models.split(",") if m}
  rows = []
  for dist, model_name, transform in ROWS:
    name = model_name + (f"_{transform}" if transform else "")
    if wanted and name not in wanted:
      continue
    row = bench_row(dist, model_name, transform, seeds=args.seeds,
                    reps=args.reps, warmup=args.warmup)
    print(f"{dist:>4} {name:<16} sequential "
          f"{row['sequential_examples_per_s']:8.0f} img/s  vmapped "
          f"{row['vmapped_examples_per_s']:8.0f} img/s  ratio "
          f"{row['ratio']:.2f}", flush=True)
    rows.append(row)
  meta = {
      "command": "python -m benchmarks.vmapped_seeds " + " ".join(
          os.sys.argv[1:]),
      "device": str(jax.devices()[0].device_kind), "jax": jax.__version__,
      "date": datetime.date.today().isoformat(), "note": args.note,
  }
  if args.json:
    with open(args.json, "w") as f:
      json.dump([dict(row, **meta) for row in rows], f, indent=2)
  if args.markdown:
    write_markdown(rows, meta, args.markdown)


if __name__ == "__main__":
  main()
