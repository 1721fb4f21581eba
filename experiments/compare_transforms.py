r"""Transform families compared: `results/transform_families.md` + figures.

    python -m experiments.compare_transforms                       # Table-1 records
    python -m experiments.compare_transforms --protocol=paper
    python -m experiments.compare_transforms --workdir_root=sweeps/families \
        --out=sweeps/families/transform_families.md               # a sweep's runs

For each distortion, ST model and transform family (affine, attention,
projective, tps and every family registered with
`stn_jax.register_transform`), from the run records:

* test error (%) on the distorted test set: mean ± std over seeds (sample
  std, n-1), n;
* parameter count;
* training speed: examples/s over the training steps (the record's
  `examples_per_s`, first step's compilation excluded) and the step time
  it implies (batch size / examples/s), with the device it was measured on;
  and the train step timed alone by `benchmarks/train_step.py` (JAX and
  PyTorch, `--benchmark`, default its committed results), the column to
  compare families' speed by (runs may have shared the machine);
* the same test digits as each family's transformer rectifies them (seed 0,
  else the lowest seed with a checkpoint), restored from the run's latest
  checkpoint (`stn_jax.train.restore_latest_params` through
  `experiments.transforms_figure`) into `<out stem>_digits.png`. Checkpoints
  are not committed: where a run's workdir (`--workdirs/<run name>`) has
  none, the page says so and draws nothing for it.

Records: `--runs_dir` (default `results/runs`, the Table-1 sweep's records,
named `<run name>.json`) filtered by `--protocol`; or, with
`--workdir_root`, the runs of a grid sweep (`<root>/<name>/results.json`,
e.g. a sweep over `--grid=model.transform=affine,projective,tps`), whose
workdirs are under that root. A family with no record is listed as "no run"
(never dropped); the best mean error of each (distortion, model) among the
families trained under one setting (two or more of them) is marked.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

PROG = "experiments.compare_transforms"
DISTORTIONS = ("r", "rts", "p", "e", "tc")
BUILTIN_FAMILIES = ("affine", "attention", "projective", "tps")
ST_MODELS = ("st_cnn", "st_fcn")
MODEL_LABEL = {"st_cnn": "ST-CNN", "st_fcn": "ST-FCN"}


def families() -> tuple:
  """The built-in families, then any other registered one."""
  try:
    import stn_jax  # pylint: disable=g-import-not-at-top
    registered = tuple(stn_jax.TRANSFORMS)
  except ImportError:
    registered = ()
  return BUILTIN_FAMILIES + tuple(f for f in registered
                                  if f not in BUILTIN_FAMILIES)


def load_records(runs_dir=None, workdir_root=None, protocol=None) -> list:
  """[(run name, record)] of ST-model runs, from a records folder (Table 1)
  or a sweep's workdir root; only `protocol`'s when given."""
  out = []
  if workdir_root is not None:
    for name in sorted(os.listdir(workdir_root)):
      path = os.path.join(workdir_root, name, "results.json")
      if os.path.exists(path):
        with open(path) as f:
          out.append((name, json.load(f)))
  else:
    for fname in sorted(os.listdir(runs_dir)):
      if fname.endswith(".json"):
        with open(os.path.join(runs_dir, fname)) as f:
          out.append((fname[:-len(".json")], json.load(f)))
  return [(n, r) for n, r in out
          if r.get("model") in ST_MODELS and r.get("transform")
          and (protocol is None or r.get("protocol") == protocol)]


def _batch_size(record) -> float:
  config = record.get("config") or {}
  batch = (config.get("train") or {}).get("batch_size")
  return float(batch) if batch else math.nan


def training_setting(record) -> str:
  """"<steps>x<batch> <optimizer>" of a record: runs trained differently (a
  retuned protocol's older records) are never averaged together."""
  train = (record.get("config") or {}).get("train") or {}
  steps = record.get("steps", train.get("num_steps", "?"))
  return (f"{steps}x{train.get('batch_size', '?')} "
          f"{train.get('optimizer', '?')}")


def summarize(records: list, fams: tuple) -> dict:
  """{(distortion, model, family, training setting): {"errors", "n", "mean",
  "std", "num_params", "examples_per_s", "step_ms", "devices", "runs",
  "best"}}.

  Every distortion and model with a record gets a row per family (n=0 and
  setting "" when that family has no record); a family with records of
  several training settings (`training_setting`) gets a row per setting.
  """
  cells = {}
  for name, r in records:
    key = (r["distortion"], r["model"], r["transform"], training_setting(r))
    cells.setdefault(key, []).append((name, r))
  present = sorted({(d, m) for d, m, _, _ in cells},
                   key=lambda dm: (DISTORTIONS.index(dm[0])
                                   if dm[0] in DISTORTIONS else 99, dm))
  all_fams = list(fams) + sorted({t for _, _, t, _ in cells} - set(fams))
  out = {}
  for dist, model in present:
    for fam in all_fams:
      settings = sorted(k[3] for k in cells if k[:3] == (dist, model, fam))
      for setting in settings or [""]:
        runs = sorted(cells.get((dist, model, fam, setting), []),
                      key=lambda nr: nr[1].get("seed", 0))
        errors = np.asarray([r["test_error"] for _, r in runs], dtype=float)
        eps = [r["examples_per_s"] for _, r in runs
               if r.get("examples_per_s")]
        step_ms = [1000.0 * _batch_size(r) / r["examples_per_s"]
                   for _, r in runs if r.get("examples_per_s")]
        out[(dist, model, fam, setting)] = {
            "errors": errors.tolist(), "n": len(errors),
            "mean": float(errors.mean()) if len(errors) else math.nan,
            "std": float(errors.std(ddof=1)) if len(errors) > 1 else math.nan,
            "num_params": sorted({r["num_params"] for _, r in runs}),
            "examples_per_s": float(np.mean(eps)) if eps else math.nan,
            "step_ms": float(np.mean(step_ms)) if step_ms else math.nan,
            "devices": sorted({r.get("device", "?") for _, r in runs}),
            "runs": runs, "best": False}
    # Families are compared only under one training setting, and only where
    # at least two of them have runs of it.
    for setting in {k[3] for k, c in out.items()
                    if k[:2] == (dist, model) and c["n"]}:
      means = [(c["mean"], k) for k, c in out.items()
               if k[:2] == (dist, model) and k[3] == setting and c["n"]]
      if len(means) > 1:
        out[min(means)[1]]["best"] = True
  return out


def _fmt(x, spec) -> str:
  return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else (
      format(x, spec))


def load_benchmark(path) -> tuple:
  """({(distortion, model, family): (JAX ms, torch ms)}, description) from
  `benchmarks/train_step.py --json` output; ({}, None) without a file."""
  if not path or not os.path.exists(path):
    return {}, None
  with open(path) as f:
    rows = json.load(f)
  times = {}
  for r in rows:
    for model in ST_MODELS:  # Row names: "<model>_<family>", e.g. st_fcn_tps.
      if r["model"].startswith(model + "_"):
        fam = r["model"][len(model) + 1:]
        times[(r["distortion"], model, fam)] = (r["jax_median_ms"],
                                                r["torch_median_ms"])
  meta = rows[0] if rows else {}
  return times, (f"`{path}` ({meta.get('date', '?')}, "
                 f"{meta.get('cpu', '?')})")


def markdown(summary: dict, *, source: str, protocol, digits_note: str,
             figure: str, digits_figure, bench=None,
             bench_source=None) -> str:
  bench = bench or {}
  lines = [
      "# Transform families compared", "",
      f"Generated by `python -m {PROG}` from the run records in `{source}`"
      + (f" (`{protocol}` protocol)" if protocol else "") + "; do not edit "
      "by hand. Test error (%) on the full distorted test set: mean ± std "
      "over seeds (sample std; – for one seed), n = seeds; **best** marks the "
      "lowest mean of each distortion and model among the families trained "
      "under the same setting (where two or more were); runs of different training "
      "settings (steps x batch, optimiser) are never averaged together. Speed: examples/s over the "
      "training steps (compilation excluded) and the step time it implies "
      "(batch / examples/s), on the device named, as each run measured it "
      "while training, under whatever else the machine ran; runs on other "
      "devices or at other widths are not comparable. Benchmark: the same "
      "model's train step (SGD update, batch 256) timed alone, family after "
      "family, by `python -m benchmarks.train_step`, JAX / PyTorch ms per "
      "step"
      + (f", from {bench_source}" if bench_source else " (no benchmark "
         "file)") + "; compare the families' speed by this column. A family "
      "without a record is listed as *no run*.", "",
      "| distortion | model | family | test error % | n | params | "
      "examples/s | ms/step | benchmark ms/step (JAX / torch) | device | "
      "steps x batch | |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for (dist, model, fam, setting), c in summary.items():
    if c["n"]:
      error = f"{c['mean']:.2f} ± {_fmt(c['std'], '.2f')}"
    else:
      error = "*no run*"
    timed = bench.get((dist, model, fam))
    timed = f"{timed[0]:.1f} / {timed[1]:.1f}" if timed else "–"
    lines.append(
        f"| {dist.upper()} | {MODEL_LABEL.get(model, model)} | {fam} | {error} "
        f"| {c['n']} | {', '.join(str(p) for p in c['num_params']) or '–'} | "
        f"{_fmt(c['examples_per_s'], '.0f')} | {_fmt(c['step_ms'], '.0f')} | "
        f"{timed} | {', '.join(c['devices']) or '–'} | {setting or '–'} | "
        f"{'**best**' if c['best'] else ''} |")
  lines += ["", f"![test error by distortion and family]({figure})", "",
            "## The same test digits, rectified by each family", "",
            digits_note, ""]
  if digits_figure:
    lines += [f"![the same test digits rectified by each family]"
              f"({digits_figure})", ""]
  return "\n".join(lines)


def plot_errors(path: str, summary: dict, title: str) -> None:
  """Grouped bars: test error per distortion, one bar per family, one panel
  per model; error bars of one std over seeds."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  # One bar per family: the most-seeded training setting of each cell.
  cells = {}
  for (d, m, f, _), c in summary.items():
    if (d, m, f) not in cells or c["n"] > cells[(d, m, f)]["n"]:
      cells[(d, m, f)] = c
  models = [m for m in ST_MODELS if any(k[1] == m for k in cells)]
  fams = []
  for _, _, f in cells:
    if f not in fams:
      fams.append(f)
  fig, axes = plt.subplots(1, max(1, len(models)),
                           figsize=(6 * max(1, len(models)), 3.8),
                           squeeze=False)
  for ax, model in zip(axes[0], models):
    dists = [d for d in DISTORTIONS if (d, model, fams[0]) in cells] + [
        d for d, m, _ in cells if m == model and d not in DISTORTIONS]
    dists = list(dict.fromkeys(dists))
    width = 0.8 / max(1, len(fams))
    colors = plt.get_cmap("tab10")
    unmeasured = []
    for j, fam in enumerate(fams):
      xs, ys, es = [], [], []
      for i, d in enumerate(dists):
        c = cells.get((d, model, fam))
        if c and c["n"]:
          xs.append(i + (j - (len(fams) - 1) / 2) * width)
          ys.append(c["mean"])
          es.append(0.0 if math.isnan(c["std"]) else c["std"])
      if xs:
        ax.bar(xs, ys, width, yerr=es, capsize=2, label=fam,
               color=colors(j % 10))
      else:
        unmeasured.append(fam)
    if unmeasured:
      ax.text(0.01, 0.98, f"no run: {', '.join(unmeasured)}",
              transform=ax.transAxes, va="top", fontsize=8, color="gray")
    ax.set_ylim(0, ax.get_ylim()[1] * 1.3)  # Room for the legend.
    ax.set_xticks(range(len(dists)))
    ax.set_xticklabels([d.upper() for d in dists])
    ax.set_ylabel("test error (%)")
    ax.set_title(MODEL_LABEL.get(model, model), fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
  fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _config_for(record: dict):
  """The run's config: configs/distorted_mnist.py's for its cell, with every
  value the record holds (a sweep's overrides included)."""
  from configs import distorted_mnist  # pylint: disable=g-import-not-at-top
  arg = f"{record['distortion']},{record['model']},{record['transform']}," \
        f"{record['protocol']}"
  config = distorted_mnist.get_config(arg)
  recorded = record.get("config") or {}

  def update(node, values):
    for key, value in values.items():
      if key not in node:
        continue
      if isinstance(value, dict):
        update(node[key], value)
      elif key not in ("manual_dir", "data_dir", "test_cache_dir"):
        node[key] = tuple(value) if isinstance(value, list) else value

  update(config, recorded)
  return config


def draw_digits(path: str, summary: dict, workdirs: str, num_digits: int):
  """Draws each (distortion, model, family)'s rectified digits from its
  checkpoint; returns (drawn run names, runs without a checkpoint)."""
  from experiments import transforms_figure  # pylint: disable=g-import-not-at-top

  wanted = {}  # (dist, model) -> [(fam, name, record)]
  missing = []
  for (dist, model, fam, _), c in summary.items():
    with_ckpt = [(n, r) for n, r in c["runs"] if os.path.isdir(
        os.path.join(workdirs, n, "checkpoints"))]
    if with_ckpt:
      name, record = with_ckpt[0]
      wanted.setdefault((dist, model), []).append((fam, name, record))
    else:
      missing.extend(n for n, _ in c["runs"][:1])
  if not wanted:
    return [], missing

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  try:  # MNIST and the fixed test sets (stn_jax.data before its move).
    from stn_jax import input_pipeline as data_lib  # pylint: disable=g-import-not-at-top
    make_test_set = data_lib.make_test_set
  except (ImportError, AttributeError):
    from stn_jax import data as data_lib  # pylint: disable=g-import-not-at-top
    from stn_jax import distortions  # pylint: disable=g-import-not-at-top
    make_test_set = distortions.make_test_set

  rows, drawn, mnist = [], [], None
  for (dist, model), entries in wanted.items():
    first = _config_for(entries[0][2])
    if mnist is None:
      mnist = data_lib.load_mnist(manual_dir=first.data.manual_dir,
                                  data_dir=first.data.data_dir)
    x_test, _ = make_test_set(
        dist, first.distortion, mnist.test_images, mnist.test_labels,
        seed=int(first.data.test_seed), cache_dir=first.data.test_cache_dir)
    inputs = np.asarray(x_test[:num_digits])
    rows.append((f"{dist.upper()} input", inputs))
    for fam, name, record in entries:
      model_obj, params, _ = transforms_figure.restore_params(
          os.path.join(workdirs, name), _config_for(record))
      rows.append((f"{dist.upper()} {MODEL_LABEL.get(model, model)} {fam}",
                   transforms_figure.rectify(model_obj, params, inputs)))
      drawn.append(name)
  fig, axes = plt.subplots(len(rows), num_digits,
                           figsize=(1.1 * num_digits + 1.6, 1.1 * len(rows)),
                           squeeze=False)
  for r, (label, images) in enumerate(rows):
    for i in range(num_digits):
      ax = axes[r, i]
      ax.set_xticks([])
      ax.set_yticks([])
      ax.imshow(images[i, ..., 0], cmap="gray", vmin=0, vmax=1)
    axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center",
                          fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)
  return drawn, missing


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog=f"python -m {PROG}",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--runs_dir", default="results/runs",
                      help="records named <run name>.json (default: "
                      "%(default)s)")
  parser.add_argument("--workdir_root", default=None,
                      help="use the runs of this sweep root instead of "
                      "--runs_dir (records in <root>/<name>/results.json)")
  parser.add_argument("--protocol", default="quick",
                      help="only records of this protocol ('' for all; "
                      "default: %(default)s)")
  parser.add_argument("--workdirs", default=None,
                      help="where the runs' workdirs (checkpoints) are: "
                      "<workdirs>/<run name> (default: the --workdir_root, "
                      "else workdirs/table1)")
  parser.add_argument("--benchmark",
                      default="benchmarks/results/train_step_cpu.json",
                      help="train-step timings of `python -m "
                      "benchmarks.train_step --json` ('' for none; default: "
                      "%(default)s)")
  parser.add_argument("--num_digits", type=int, default=8,
                      help="test digits drawn per family (default: "
                      "%(default)s)")
  parser.add_argument("--out", default="results/transform_families.md",
                      help="the page; figures beside it (<stem>.png, "
                      "<stem>_digits.png) (default: %(default)s)")
  args = parser.parse_args(argv)
  if args.num_digits < 1:
    parser.error(f"--num_digits must be >= 1, got {args.num_digits}")
  source = args.workdir_root or args.runs_dir
  if not os.path.isdir(source):
    print(f"{PROG}: error: no folder {source!r}", file=sys.stderr)
    return 2
  protocol = args.protocol or None
  records = load_records(args.runs_dir if not args.workdir_root else None,
                         args.workdir_root, protocol)
  if not records:
    print(f"{PROG}: error: no ST-model records in {source!r}"
          + (f" at the {protocol!r} protocol" if protocol else ""),
          file=sys.stderr)
    return 2
  summary = summarize(records, families())
  workdirs = args.workdirs or args.workdir_root or "workdirs/table1"
  out_dir = os.path.dirname(os.path.abspath(args.out))
  os.makedirs(out_dir, exist_ok=True)
  stem = os.path.splitext(args.out)[0]
  figure, digits = stem + ".png", stem + "_digits.png"
  plot_errors(figure, summary, f"Test error by transform family ({source}"
              + (f", {protocol} protocol" if protocol else "") + ")")
  drawn, missing = draw_digits(digits, summary, workdirs, args.num_digits)
  if drawn:
    note = (f"Drawn from the checkpoints of {len(drawn)} runs in "
            f"`{workdirs}` (seed 0 or the lowest seed with a checkpoint): "
            "the first row of each distortion is its test inputs (the same "
            "for every family), then each family's transformer output."
            + (f" No checkpoint for: {', '.join(f'`{m}`' for m in missing)}."
               if missing else ""))
  else:
    if os.path.exists(digits):
      os.remove(digits)  # A drawing from checkpoints no longer here.
    note = (f"Not drawn: none of these runs has a checkpoint under "
            f"`{workdirs}/<run name>/checkpoints` on the machine that made "
            "this page (checkpoints are not committed). Train the runs (the "
            "sweep command in the README), then run this command again to "
            "draw them.")
    if source == "results/runs" and os.path.exists("results/transforms.png"):
      note += (" An earlier drawing of the ST-CNN families on the same test "
               "digits, made by `experiments/transforms_figure.py` from the "
               "checkpoints of that time (its runs: "
               "`results/transforms.json`), is "
               f"[results/transforms.png]({os.path.relpath('results/transforms.png', out_dir)}); it is not "
               "regenerated here and may predate these records.")
  bench, bench_source = load_benchmark(args.benchmark)
  with open(args.out, "w") as f:
    f.write(markdown(summary, source=source, protocol=protocol,
                     digits_note=note,
                     figure=os.path.basename(figure),
                     digits_figure=os.path.basename(digits) if drawn else None,
                     bench=bench, bench_source=bench_source))
  print(f"wrote {args.out}, {figure}" + (f", {digits}" if drawn else "")
        + f" ({len(records)} records; digits drawn for {len(drawn)} runs)",
        flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
