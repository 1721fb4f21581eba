r"""Training throughput of the project's models against PyTorch, same machine.

    python -m benchmarks.train_step --json benchmarks/results/train_step_cpu.json \
        --markdown benchmarks/results/train_step_cpu.md

For each model (the project's own FCN, CNN, ST-FCN and ST-CNN with affine,
projective and TPS transforms, built from `configs/distorted_mnist.py`, on
the 28x28 R canvas and the 42x42 RTS canvas) it times one full training
step (forward, backward, SGD update) at batch 256:

* JAX: the project's jitted `stn_jax.train.train_step` on a `TrainState`,
  with the models' convolution / pooling implementation `--kernels`
  ("fast", the default of `configs/distorted_mnist.py`, or "xla"; see
  `stn_jax.cpu.kernels`) and the config's `train.micro_batch_size` (64
  for the convolutional models: the batch in 4 micro-batches run one after
  another; `--one-pass` runs every model's batch in one pass), compiled
  with the config's `train.xla_options` ("fast": on CPU, dots through
  Eigen rather than YNNPACK; `--xla-options default` for XLA's defaults;
  see `stn_jax.cpu.xla_options`).
* PyTorch: an equivalent model written here with `torch.nn` (same layers,
  widths, transformer and sampler semantics: `affine_grid`/`grid_sample`,
  and the same projective and TPS grids), `torch.optim.SGD`; its step does
  the JAX step's work: the update and the metrics the project's
  `train_step` returns (loss, batch error, global gradient norm). It is
  timed a second time without the error and the norm ("loss-only"), and
  that ratio is reported beside.

Both run on the same random inputs after a warm-up, in alternating blocks
of consecutive steps (`--rounds` blocks each, as in training, each at least
`--reps / --rounds` steps and `--min-block-s` seconds long), so machine
noise hits both; the first step of each block is not timed (torch's OpenMP
workers keep spinning after its calls and would steal the 2 cores from the
next JAX step); it reports medians of examples/s
and the ratio JAX / torch (>= 1 means JAX is faster), the JAX step's compile
time, and its peak memory as XLA's compiled memory analysis reports it
(arguments + outputs + temporaries).
"""

import argparse
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
import optax
import torch

from configs import distorted_mnist
import stn_jax
from stn_jax import models
from stn_jax import train
from stn_jax.cpu import xla_options

# (distortion, model, transform) rows of the benchmark.
ROWS = (
    ("r", "fcn", None), ("r", "cnn", None),
    ("r", "st_fcn", "affine"), ("r", "st_fcn", "projective"),
    ("r", "st_fcn", "tps"),
    ("r", "st_cnn", "affine"), ("r", "st_cnn", "projective"),
    ("r", "st_cnn", "tps"),
    ("rts", "fcn", None), ("rts", "st_fcn", "affine"),
    ("rts", "cnn", None), ("rts", "st_cnn", "affine"),
    # The other families on RTS, for the transform-family page
    # (experiments/compare_transforms.py).
    ("rts", "st_fcn", "attention"), ("rts", "st_fcn", "projective"),
    ("rts", "st_fcn", "tps"), ("rts", "st_cnn", "attention"),
    ("rts", "st_cnn", "projective"), ("rts", "st_cnn", "tps"),
)


def _config(dist, model, transform):
  arg = ",".join([dist, model] + ([transform] if transform else []) +
                 ["paper"])
  return distorted_mnist.get_config(arg)


# ------------------------------------------------------------ torch models


class TorchFCN(torch.nn.Module):
  """flatten -> dense -> relu -> dense -> relu -> dense."""

  def __init__(self, in_features, hidden):
    super().__init__()
    self.net = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(in_features, hidden[0]),
        torch.nn.ReLU(), torch.nn.Linear(hidden[0], hidden[1]),
        torch.nn.ReLU(), torch.nn.Linear(hidden[1], 10))

  def forward(self, x):
    return self.net(x)


class TorchCNN(torch.nn.Module):
  """(conv SAME or VALID -> relu -> maxpool 2) x 2 -> dense."""

  def __init__(self, size, filters, kernel_sizes, padding="SAME"):
    super().__init__()
    f1, f2 = filters
    k1, k2 = kernel_sizes
    same = padding == "SAME"
    out = size
    for k in (k1, k2):  # The pools keep floor(size / 2), as flax's.
      out = (out if same else out - k + 1) // 2
    self.net = torch.nn.Sequential(
        torch.nn.Conv2d(1, f1, k1, padding=k1 // 2 if same else 0),
        torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(f1, f2, k2, padding=k2 // 2 if same else 0),
        torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(f2 * out * out, 10))

  def forward(self, x):
    return self.net(x)


def _torch_localizer(model_cfg, size, num_params):
  loc = model_cfg.localizer
  if model_cfg.name == "st_fcn":
    h1, h2 = loc.hidden
    layers = [torch.nn.Flatten(), torch.nn.Linear(size * size, h1),
              torch.nn.ReLU(), torch.nn.Linear(h1, h2), torch.nn.ReLU()]
    feat = h2
  else:
    d, k = loc.input_downsample, loc.kernel_size
    f1, f2 = loc.filters
    s = size // d
    s = (s - k + 1) // 2 - k + 1
    layers = [torch.nn.AvgPool2d(d), torch.nn.Conv2d(1, f1, k),
              torch.nn.ReLU(), torch.nn.MaxPool2d(2),
              torch.nn.Conv2d(f1, f2, k), torch.nn.ReLU(),
              torch.nn.Flatten(), torch.nn.Linear(f2 * s * s, loc.hidden),
              torch.nn.ReLU()]
    feat = loc.hidden
  theta = torch.nn.Linear(feat, num_params)
  return torch.nn.Sequential(*layers), theta


class TorchST(torch.nn.Module):
  """Localiser -> grid (affine / attention / projective / TPS) -> grid_sample
  -> classifier."""

  KINDS = ("affine", "attention", "projective", "tps")

  def __init__(self, model_cfg, size):
    super().__init__()
    kw = dict(models.transform_kwargs(model_cfg))
    self.kind = model_cfg.transform
    if self.kind not in self.KINDS:
      raise ValueError(f"TorchST: no torch grid for transform "
                       f"{self.kind!r}; expected one of {self.KINDS}.")
    n = stn_jax.num_params(self.kind, **kw)
    self.loc, self.theta = _torch_localizer(model_cfg, size, n)
    with torch.no_grad():
      self.theta.weight.zero_()
      self.theta.bias.copy_(torch.tensor(np.asarray(
          stn_jax.identity_params(self.kind, **kw))))
    # The sampled grid, then (avg_pool) an average pool to the output size.
    self.out, pool = models.st_sampling(model_cfg, size)
    self.pool = torch.nn.AvgPool2d(pool) if pool > 1 else torch.nn.Identity()
    side = self.out[0] // pool
    cls = model_cfg.classifier
    if model_cfg.name == "st_fcn":
      self.classifier = TorchFCN(side * side, cls.hidden)
    else:
      self.classifier = TorchCNN(side, cls.filters, cls.kernel_sizes,
                                 cls.padding)
    base = np.asarray(stn_jax.base_grid(self.out, align_corners=True))
    self.register_buffer("base", torch.tensor(base.reshape(-1, 3)))
    if self.kind == "tps":
      # The same constant [h*w, K] map control points -> grid as stn_jax.
      eye = np.eye(n // 2, dtype=np.float32)
      basis = np.stack([np.asarray(stn_jax.tps_grid(
          np.stack([eye[k], eye[k]], -1), self.out, align_corners=True))[
              ..., 0].ravel() for k in range(n // 2)], axis=1)
      self.register_buffer("tps_basis", torch.tensor(basis))

  def grid(self, p):
    b = p.shape[0]
    h, w = self.out
    if self.kind == "affine":
      return torch.nn.functional.affine_grid(
          p.view(b, 2, 3), (b, 1, h, w), align_corners=True)
    if self.kind == "attention":  # (s, tx, ty): [[s, 0, tx], [0, s, ty]].
      s, tx, ty = p.unbind(1)
      zero = torch.zeros_like(s)
      theta = torch.stack([s, zero, tx, zero, s, ty], 1).view(b, 2, 3)
      return torch.nn.functional.affine_grid(theta, (b, 1, h, w),
                                             align_corners=True)
    if self.kind == "projective":
      m = torch.cat([p, torch.ones(b, 1, dtype=p.dtype)], 1).view(b, 3, 3)
      hom = self.base @ m.transpose(1, 2)  # [B, h*w, 3]
      wz = hom[..., 2:]
      ok = wz > 1e-6
      xy = torch.where(ok, hom[..., :2] / torch.where(ok, wz, 1.0),
                       torch.full_like(hom[..., :2], -4.0))
      return xy.view(b, h, w, 2)
    return (self.tps_basis @ p.view(b, -1, 2)).view(b, h, w, 2)

  def forward(self, x):
    p = self.theta(self.loc(x))
    v = torch.nn.functional.grid_sample(x, self.grid(p), mode="bilinear",
                                        padding_mode="zeros",
                                        align_corners=True)
    return self.classifier(self.pool(v))


def torch_model(cfg, size):
  m = cfg.model
  if m.name == "fcn":
    return TorchFCN(size * size, m.classifier.hidden)
  if m.name == "cnn":
    return TorchCNN(size, m.classifier.filters, m.classifier.kernel_sizes,
                    m.classifier.padding)
  return TorchST(m, size)


# ---------------------------------------------------------------- timing

NOTES_MARKER = "<!-- notes: kept across re-runs -->"


def bench_row(dist, model_name, transform, *, batch, reps, warmup,
              kernels="fast", rounds=3, min_block_s=0.0, one_pass=False,
              options=None):
  cfg = _config(dist, model_name, transform)
  cfg.model.kernels = kernels
  micro = None if one_pass else cfg.train.micro_batch_size
  options = cfg.train.xla_options if options is None else options
  size = int(cfg.distortion.canvas_size)
  rng = np.random.default_rng(0)
  x = rng.random((batch, size, size, 1), np.float32)
  y = rng.integers(0, 10, batch).astype(np.int32)

  model = models.build_model(cfg.model, canvas_size=size)
  tx = optax.sgd(0.01)
  state = train.create_train_state(model, tx, jax.random.key(0),
                                   canvas_size=size)
  step = jax.jit(functools.partial(train.train_step, micro_batch_size=micro),
                 donate_argnums=0,
                 compiler_options=xla_options.compiler_options(options))
  xj, yj = jnp.asarray(x), jnp.asarray(y)
  t0 = time.perf_counter()
  compiled = step.lower(state, (xj, yj)).compile()
  compile_s = time.perf_counter() - t0
  mem = compiled.memory_analysis()
  peak_bytes = None
  if mem is not None:
    peak_bytes = int(mem.argument_size_in_bytes + mem.output_size_in_bytes +
                     mem.temp_size_in_bytes)

  tm = torch_model(cfg, size)
  topt = torch.optim.SGD(tm.parameters(), lr=0.01)
  xt = torch.tensor(x.transpose(0, 3, 1, 2).copy())
  yt = torch.tensor(y.astype(np.int64))

  params = list(tm.parameters())

  def torch_step(metrics: bool = True):
    # The JAX step's work: the update and its metrics (loss, batch error,
    # global gradient norm), which a torch loop that logs them computes too;
    # `metrics=False`: the loss alone.
    topt.zero_grad(set_to_none=True)
    logits = tm(xt)
    loss = torch.nn.functional.cross_entropy(logits, yt)
    loss.backward()
    out = (loss,)
    if metrics:
      out += (100.0 * (logits.argmax(1) != yt).float().mean(),
              torch.linalg.vector_norm(torch.stack(
                  [torch.linalg.vector_norm(p.grad) for p in params])))
    topt.step()
    return out

  torch_loss_only_step = functools.partial(torch_step, metrics=False)

  def jax_step(s):
    s, metrics = compiled(s, (xj, yj))
    jax.block_until_ready(metrics["loss"])
    return s

  for _ in range(warmup):
    state = jax_step(state)
    torch_step()
    torch_loss_only_step()
  jt, tt, lt = [], [], []
  per_round = max(1, -(-reps // rounds))

  def block(step, times):
    # Consecutive steps, as in training: at least `per_round` and at least
    # `min_block_s` seconds of them (millisecond steps in short blocks
    # measure thread-pool wake-ups, not training). The first step is not
    # timed (the other framework's idle workers may still hold the cores).
    step()
    start = time.perf_counter()
    n = 0
    while n < per_round or time.perf_counter() - start < min_block_s:
      t = time.perf_counter()
      step()
      times.append(time.perf_counter() - t)
      n += 1

  def jax_step_inplace():
    nonlocal state
    state = jax_step(state)

  for _ in range(rounds):
    block(jax_step_inplace, jt)
    block(torch_step, tt)
    block(torch_loss_only_step, lt)
  jm, tmed = statistics.median(jt), statistics.median(tt)
  lmed = statistics.median(lt)
  name = model_name + (f"_{transform}" if transform else "")
  return {
      "distortion": dist, "canvas": size, "model": name, "batch": batch,
      "num_params": models.count_params(state.params),
      "jax_examples_per_s": batch / jm, "torch_examples_per_s": batch / tmed,
      "ratio": tmed / jm, "jax_median_ms": 1e3 * jm,
      "torch_loss_only_examples_per_s": batch / lmed,
      "ratio_vs_loss_only": lmed / jm,
      "torch_median_ms": 1e3 * tmed, "jax_min_ms": 1e3 * min(jt),
      "torch_min_ms": 1e3 * min(tt), "compile_s": compile_s,
      "jax_peak_bytes": peak_bytes, "reps": reps, "kernels": kernels,
      "jax_micro_batch_size": micro, "xla_options": options,
      "jax_steps_timed": len(jt), "torch_steps_timed": len(tt),
  }


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def write_markdown(rows, meta, path):
  lines = ["# Train-step throughput: stn_jax (JAX) vs PyTorch", "",
           f"Command: `{meta['command']}`", "",
           f"Device: {meta['device']}; CPU: {meta['cpu']}; "
           f"jax {meta['jax']}, torch {meta['torch']} "
           f"({meta['torch_threads']} threads); {meta['date']}.", "",
           "Medians over alternating blocks of steps after warm-up; ratio = "
           "JAX examples/s / torch examples/s (goal: >= 1.0). Both steps do "
           "the same work: forward, backward, SGD update and the metrics the "
           "project's step returns (loss, batch error, global gradient "
           "norm); torch loss-only is torch's step without the error and "
           "the norm, and its ratio is shown beside. JAX "
           f"conv/pool kernels: `{meta['kernels']}` (`stn_jax.cpu.kernels`).",
           "",
           "| canvas | model | params | JAX micro-batch | JAX XLA options | "
           "JAX img/s | torch img/s | ratio | goal | torch loss-only img/s | "
           "ratio vs loss-only | compile (s) | JAX peak MiB |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    peak = ("" if r["jax_peak_bytes"] is None
            else f"{r['jax_peak_bytes'] / 2**20:.0f}")
    goal = "met" if r["ratio"] >= 1.0 else f"missed ({r['ratio']:.2f}x)"
    lines.append(
        f"| {r['canvas']}x{r['canvas']} | {r['model']} | {r['num_params']} | "
        f"{r['jax_micro_batch_size'] or r['batch']} | {r['xla_options']} | "
        f"{r['jax_examples_per_s']:.0f} | {r['torch_examples_per_s']:.0f} | "
        f"{r['ratio']:.2f} | {goal} | "
        f"{r['torch_loss_only_examples_per_s']:.0f} | "
        f"{r['ratio_vs_loss_only']:.2f} | {r['compile_s']:.1f} | {peak} |")
  # Keep the hand-written analysis below NOTES_MARKER of an existing file.
  notes = ""
  if os.path.exists(path):
    with open(path) as f:
      old = f.read()
    if NOTES_MARKER in old:
      notes = "\n" + old[old.index(NOTES_MARKER):]
  with open(path, "w") as f:
    f.write("\n".join(lines) + "\n" + notes)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--batch", type=int, default=256)
  parser.add_argument("--reps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--rounds", type=int, default=6,
                      help="alternating blocks per framework")
  parser.add_argument("--min-block-s", type=float, default=1.0,
                      help="each block runs at least this long (seconds)")
  parser.add_argument("--kernels", default="fast", choices=("fast", "xla"),
                      help="the models' conv / pool implementation")
  parser.add_argument("--one-pass", action="store_true",
                      help="JAX steps on the whole batch in one pass, not "
                      "in the configs' micro-batches")
  parser.add_argument("--xla-options", default=None,
                      choices=sorted(xla_options.XLA_OPTIONS),
                      help="the JAX step's XLA options set (default: the "
                      "config's train.xla_options)")
  parser.add_argument("--models", default="",
                      help="comma-separated subset, e.g. cnn,st_cnn_affine")
  parser.add_argument("--json", default=None, help="write rows as JSON here")
  parser.add_argument("--markdown", default=None,
                      help="write the results table here")
  args = parser.parse_args()
  wanted = {m for m in args.models.split(",") if m}
  torch.set_num_threads(os.cpu_count() or 1)
  rows = []
  for dist, model_name, transform in ROWS:
    name = model_name + (f"_{transform}" if transform else "")
    if wanted and name not in wanted:
      continue
    row = bench_row(dist, model_name, transform, batch=args.batch,
                    reps=args.reps, warmup=args.warmup,
                    kernels=args.kernels, rounds=args.rounds,
                    min_block_s=args.min_block_s, one_pass=args.one_pass,
                    options=args.xla_options)
    print(f"{dist:>4} {name:<20} JAX {row['jax_examples_per_s']:7.0f} img/s  "
          f"torch {row['torch_examples_per_s']:7.0f} img/s  "
          f"ratio {row['ratio']:.2f}  (loss-only torch "
          f"{row['torch_loss_only_examples_per_s']:7.0f}: "
          f"{row['ratio_vs_loss_only']:.2f})  "
          f"compile {row['compile_s']:.1f} s",
          flush=True)
    rows.append(row)
  meta = {
      "command": "python -m benchmarks.train_step " + " ".join(
          a for a in os.sys.argv[1:]),
      "device": str(jax.devices()[0].device_kind), "cpu": _cpu_model(),
      "jax": jax.__version__, "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(), "kernels": args.kernels,
      "date": datetime.date.today().isoformat(),
  }
  if args.json:  # A list of rows, each carrying the run's metadata.
    with open(args.json, "w") as f:
      json.dump([dict(row, **meta) for row in rows], f, indent=2)
  if args.markdown:
    write_markdown(rows, meta, args.markdown)


if __name__ == "__main__":
  main()
