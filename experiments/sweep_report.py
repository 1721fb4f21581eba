r"""The report of a grid sweep: summary.csv, summary.md, summary.png.

    python -m experiments.sweep_report --workdir_root=sweeps/lr_loc [--out_dir=DIR]

Reads `<workdir_root>/sweep.json` (written by `experiments.sweep` for grid
sweeps: the swept keys and every run's overrides and seed) and each run's
record, `<workdir_root>/<name>/results.json`, else `<results_dir>/<name>.json`
(`--results_dir`, default the sweep's own `--results_dir` when it had one).
Writes into `--out_dir` (default: the workdir root), with a copy of
`sweep.json` so that the folder says what was swept:

* `summary.csv`: one row per run of the sweep: a column per swept key (named
  by the key, e.g. `train.learning_rate`), `seed`, `status`, `test_error`
  (%), `wall_time_s`, `examples_per_s`, `num_params`, `name`. A run without
  a record has its status (`running`: its lock is held; `failed (exit N)`:
  its last try failed; `not finished`: never started or interrupted) and
  empty numbers.
* `summary.md`: one row per setting (values of the swept keys): test error
  mean ± std over its finished seeds (sample std, n-1; "–" for one seed),
  n of the seeds, the errors, examples/s and parameters; sorted by mean test
  error, the best setting marked **best**; then the runs without a record,
  listed by name and status (never dropped).
* `summary.png`: test error against each swept key (a log axis when the
  key's values are positive numbers spanning a decade or more), one line per
  setting of the other keys, error bars of one std over seeds.

Values are written as in run names (`experiments.sweep_grid.format_value`:
0.001, 20x64 for a tuple, true/false).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys

import numpy as np

from experiments import sweep
from experiments import sweep_grid

PROG = "experiments.sweep_report"
METRICS = ("test_error", "wall_time_s", "examples_per_s", "num_params")


def _lookup(config: dict, key: str):
  node = config
  for part in key.split("."):
    if not isinstance(node, dict) or part not in node:
      return None
    node = node[part]
  return node


# The setting's column naming the base config, where a root holds several.
CONFIG_KEY = "config"


def load_rows(workdir_root: str, results_dir=None) -> tuple[list, list]:
  """(keys, rows): one row per run of `<workdir_root>/sweep.json`.

  A row: {"name", "seed", "status", "setting": {key: value}, and the
  METRICS from the record (None without one)}. Where the root's runs have
  several base configs, "config" (`CONFIG_KEY`) is the first key.
  """
  path = os.path.join(workdir_root, sweep.SWEEP_JSON)
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"no {sweep.SWEEP_JSON} in {workdir_root!r}: not the workdir root of "
        "a grid sweep (experiments.sweep --config=... --grid=... or "
        "--sweep=<get_hyper file> writes it).")
  with open(path) as f:
    data = json.load(f)
  keys = list(data["keys"])
  # Several base configs in one root (e.g. the same --grid over ST-FCN and
  # ST-CNN): the config is a key of the setting, so they are never pooled.
  if len({info["config"] for info in data["runs"].values()}) > 1:
    keys = [CONFIG_KEY] + keys
  results_dir = results_dir or data.get("results_dir")
  rows = []
  for name in sorted(data["runs"]):
    info = data["runs"][name]
    workdir = os.path.join(workdir_root, name)
    record = None
    for candidate in ([os.path.join(workdir, "results.json")] +
                      ([os.path.join(results_dir, f"{name}.json")]
                       if results_dir else [])):
      if os.path.exists(candidate):
        with open(candidate) as f:
          record = json.load(f)
        break
    if record is not None:
      status = "done"
    elif sweep.is_locked(workdir):
      status = "running"
    elif os.path.exists(os.path.join(workdir, sweep.FAILED_NAME)):
      with open(os.path.join(workdir, sweep.FAILED_NAME)) as f:
        status = f"failed (exit {json.load(f).get('exit_code')})"
    else:
      status = "not finished"
    setting = {}
    for key in keys:
      if key == CONFIG_KEY:
        value = info["config"]
      elif key in info["overrides"]:
        value = info["overrides"][key]
      elif record is not None and isinstance(record.get("config"), dict):
        value = _lookup(record["config"], key)
      else:
        value = None  # Another sweep into this root left it at its default.
      setting[key] = tuple(value) if isinstance(value, list) else value
    row = {"name": name, "seed": info["seed"], "status": status,
           "setting": setting}
    for m in METRICS:
      row[m] = record.get(m) if record is not None else None
    rows.append(row)
  return keys, rows


def _text(value) -> str:
  return "(default)" if value is None else sweep_grid.format_value(value)


def summarize(keys: list, rows: list) -> list[dict]:
  """One dict per setting: {"setting", "errors", "n", "seeds", "mean",
  "std", "examples_per_s", "num_params", "best"}, sorted by mean test error
  (settings without a finished run last); the lowest mean has best=True."""
  groups = {}
  for row in rows:
    key = tuple(_text(row["setting"][k]) for k in keys)
    g = groups.setdefault(key, {"setting": row["setting"], "errors": [],
                                "seeds": 0, "eps": [], "params": set()})
    g["seeds"] += 1
    if row["status"] == "done" and row["test_error"] is not None:
      g["errors"].append(float(row["test_error"]))
      if row["examples_per_s"] is not None:
        g["eps"].append(float(row["examples_per_s"]))
      if row["num_params"] is not None:
        g["params"].add(int(row["num_params"]))
  out = []
  for g in groups.values():
    errors = np.asarray(g["errors"], dtype=float)
    out.append({
        "setting": g["setting"], "errors": g["errors"], "n": len(errors),
        "seeds": g["seeds"],
        "mean": float(errors.mean()) if len(errors) else math.nan,
        "std": float(errors.std(ddof=1)) if len(errors) > 1 else math.nan,
        "examples_per_s": float(np.mean(g["eps"])) if g["eps"] else math.nan,
        "num_params": sorted(g["params"]), "best": False})
  out.sort(key=lambda s: (math.isnan(s["mean"]), s["mean"]
                          if not math.isnan(s["mean"]) else 0.0,
                          [_text(s["setting"][k]) for k in keys]))
  if out and not math.isnan(out[0]["mean"]):
    out[0]["best"] = True
  return out


def write_csv(path: str, keys: list, rows: list) -> None:
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(keys + ["seed", "status", *METRICS, "name"])
    for row in sorted(rows, key=lambda r: ([_text(r["setting"][k])
                                            for k in keys], r["seed"])):
      writer.writerow([_text(row["setting"][k]) for k in keys] +
                      [row["seed"], row["status"]] +
                      ["" if row[m] is None else row[m] for m in METRICS] +
                      [row["name"]])


def _num(x, fmt) -> str:
  return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else (
      format(x, fmt))


def markdown(keys: list, rows: list, settings: list, title: str) -> str:
  """summary.md's text."""
  done = sum(r["status"] == "done" for r in rows)
  lines = [f"# Sweep: {title}", "",
           f"Swept keys: {', '.join(f'`{k}`' for k in keys) or '(none)'}; "
           f"{len(rows)} runs, {done} finished. Test error (%) on the "
           "distorted test set: mean ± std over the finished seeds (sample "
           "std; – for one seed), sorted; the best mean is marked. Generated "
           "by `python -m experiments.sweep_report` from the run records.",
           ""]
  header = keys + ["test error %", "n", "errors", "examples/s", "params", ""]
  lines.append("| " + " | ".join(header) + " |")
  lines.append("|" + "---|" * len(header))
  for s in settings:
    if s["n"]:
      error = f"{s['mean']:.2f} ± {_num(s['std'], '.2f')}"
    else:
      error = "no finished run"
    cells = [_text(s["setting"][k]) for k in keys] + [
        error, f"{s['n']}/{s['seeds']}",
        ", ".join(f"{e:.2f}" for e in s["errors"]),
        _num(s["examples_per_s"], ".0f"),
        ", ".join(str(p) for p in s["num_params"]) or "–",
        "**best**" if s["best"] else ""]
    lines.append("| " + " | ".join(cells) + " |")
  unfinished = [r for r in rows if r["status"] != "done"]
  lines += ["", "## Runs without a record", ""]
  if unfinished:
    lines += [f"- `{r['name']}`: {r['status']}" for r in unfinished]
  else:
    lines.append("None: every run of the sweep finished.")
  lines += ["", "![test error against each swept key](summary.png)", ""]
  return "\n".join(lines)


def _numeric(values) -> bool:
  return all(isinstance(v, (int, float)) and not isinstance(v, bool)
             for v in values)


def use_log_axis(values) -> bool:
  """Whether a key's values call for a log axis: positive numbers whose
  largest is at least 10 times the smallest."""
  values = [v for v in values if v is not None]
  return (bool(values) and _numeric(values) and min(values) > 0 and
          max(values) / min(values) >= 10)


def plot(path: str, keys: list, rows: list, title: str) -> None:
  """summary.png: one panel per swept key (see the module docstring)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  done = [r for r in rows if r["status"] == "done"]
  panels = keys or ["seed"]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6),
                           squeeze=False)
  for ax, key in zip(axes[0], panels):
    others = [k for k in keys if k != key]
    values = sorted({r["setting"][key] for r in done} if keys else
                    {r["seed"] for r in done},
                    key=lambda v: (not _numeric([v]), v if _numeric([v])
                                   else _text(v)))
    numeric = _numeric(values)
    xs = {v: (v if numeric else i) for i, v in enumerate(values)}
    lines = {}
    for r in done:
      x = r["setting"][key] if keys else r["seed"]
      label = ", ".join(f"{k}={_text(r['setting'][k])}" for k in others)
      lines.setdefault(label, {}).setdefault(x, []).append(r["test_error"])
    for label, points in sorted(lines.items()):
      px = sorted(points, key=lambda v: xs[v])
      means = [float(np.mean(points[v])) for v in px]
      stds = [float(np.std(points[v], ddof=1)) if len(points[v]) > 1 else 0.0
              for v in px]
      ax.errorbar([xs[v] for v in px], means, yerr=stds, marker="o",
                  capsize=3, label=label or None)
    if use_log_axis(values):
      ax.set_xscale("log")
    if not numeric:
      ax.set_xticks(list(xs.values()))
      ax.set_xticklabels([_text(v) for v in values], rotation=30, fontsize=8)
    elif values:
      ax.set_xticks(values)
      ax.set_xticklabels([_text(v) for v in values], fontsize=8)
      ax.minorticks_off()
    ax.set_xlabel(key)
    ax.set_ylabel("test error (%)")
    ax.grid(alpha=0.3)
    if others and lines:
      ax.legend(fontsize=7)
    if not done:
      ax.text(0.5, 0.5, "no finished run", transform=ax.transAxes,
              ha="center", color="red")
  fig.suptitle(f"{title}: mean ± std over seeds", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _title(workdir_root: str) -> str:
  with open(os.path.join(workdir_root, sweep.SWEEP_JSON)) as f:
    runs = json.load(f)["runs"]
  configs = sorted({r["config"] for r in runs.values()})
  return f"{', '.join(configs)} ({os.path.basename(os.path.normpath(workdir_root))})"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog=f"python -m {PROG}",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--workdir_root", required=True,
                      help="the sweep's --workdir_root (holds sweep.json)")
  parser.add_argument("--out_dir", default=None,
                      help="where summary.csv/.md/.png go (default: the "
                      "workdir root)")
  parser.add_argument("--results_dir", default=None,
                      help="also look for records in <results_dir>/<name>.json "
                      "(default: the sweep's --results_dir, if any)")
  args = parser.parse_args(argv)
  try:
    keys, rows = load_rows(args.workdir_root, args.results_dir)
  except (FileNotFoundError, ValueError, KeyError) as e:
    print(f"{PROG}: error: {' '.join(str(e).split())}", file=sys.stderr)
    return 2
  out = args.out_dir or args.workdir_root
  os.makedirs(out, exist_ok=True)
  title = _title(args.workdir_root)
  settings = summarize(keys, rows)
  write_csv(os.path.join(out, "summary.csv"), keys, rows)
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(markdown(keys, rows, settings, title))
  plot(os.path.join(out, "summary.png"), keys, rows, title)
  source = os.path.join(args.workdir_root, sweep.SWEEP_JSON)
  target = os.path.join(out, sweep.SWEEP_JSON)
  if os.path.abspath(source) != os.path.abspath(target):
    shutil.copyfile(source, target)
  missing = [r["name"] for r in rows if r["status"] != "done"]
  print(f"{len(rows)} runs, {len(rows) - len(missing)} finished; wrote "
        f"{out}/summary.csv, summary.md, summary.png", flush=True)
  if missing:
    print(f"{len(missing)} runs without a record: {missing}", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
