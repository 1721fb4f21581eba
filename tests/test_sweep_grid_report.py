"""Tests of experiments.sweep_report and experiments.compare_transforms on
run records written by the tests (their numbers checked), and of the
rectified digits drawn from a real smoke run's checkpoint."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest

from experiments import compare_transforms
from experiments import sweep
from experiments import sweep_grid
from experiments import sweep_report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LRS = (1e-4, 1e-3, 1e-2)
HIDDEN = (20, 64)
# (hidden, lr) -> test errors of seeds 0 and 1 (None: no record).
ERRORS = {
    (20, 1e-4): (5.0, 7.0), (64, 1e-4): (6.0, None),
    (20, 1e-3): (2.0, 4.0), (64, 1e-3): (1.0, 1.5),
    (20, 1e-2): (9.0, None), (64, 1e-2): (None, None),
}


def _sweep_root(tmp_path):
  """A sweep root: sweep.json for 6 settings x 2 seeds and the records of
  ERRORS; the run (64, 1e-4) s1 failed, (20, 1e-2) s1 is locked (training),
  (64, 1e-2) has no record and no marker."""
  root = tmp_path / "sweep"
  settings = sweep_grid.product([sweep_grid.sweep("model.localizer.hidden",
                                                  HIDDEN),
                                 sweep_grid.sweep("train.learning_rate", LRS)])
  runs = sweep_grid.build_runs("rts,st_cnn,tps,quick", settings, 2,
                               model="st_cnn", vmap_seeds_models=())
  sweep.record_sweep(str(root), {
      "config_file": "configs/distorted_mnist.py",
      "keys": ["model.localizer.hidden", "train.learning_rate"],
      "runs": runs}, None)
  names = {}
  for run in runs:
    o = run["overrides"]
    key = (o["model.localizer.hidden"], o["train.learning_rate"])
    names[key + (o["seed"],)] = run["name"]
    error = ERRORS[key][o["seed"]]
    workdir = root / run["name"]
    workdir.mkdir(parents=True)
    if error is not None:
      (workdir / "results.json").write_text(json.dumps({
          "seed": o["seed"], "test_error": error, "wall_time_s": 10.0 + error,
          "examples_per_s": 100.0 * (1 + o["seed"]), "num_params": 1000 + key[0],
      }))
  failed = root / names[(64, 1e-4, 1)]
  (failed / sweep.FAILED_NAME).write_text(json.dumps({"exit_code": 3}))
  return root, names


def test_report_numbers_best_mark_and_missing_runs(tmp_path, capsys):
  root, names = _sweep_root(tmp_path)
  fd = sweep.try_lock(str(root / names[(20, 1e-2, 1)]))
  try:
    assert sweep_report.main([f"--workdir_root={root}"]) == 0
  finally:
    sweep.release([fd])
  out = capsys.readouterr().out
  assert "12 runs, 8 finished" in out
  assert "4 runs without a record" in out

  with open(root / "summary.csv") as f:
    rows = list(csv.DictReader(f))
  assert list(rows[0]) == ["model.localizer.hidden", "train.learning_rate",
                           "seed", "status", "test_error", "wall_time_s",
                           "examples_per_s", "num_params", "name"]
  assert len(rows) == 12
  by_name = {r["name"]: r for r in rows}
  row = by_name[names[(64, 1e-3, 1)]]
  assert (row["model.localizer.hidden"], row["train.learning_rate"],
          row["seed"], row["status"]) == ("64", "0.001", "1", "done")
  assert float(row["test_error"]) == 1.5
  assert float(row["wall_time_s"]) == 11.5
  assert float(row["examples_per_s"]) == 200.0
  assert row["num_params"] == "1064"
  assert by_name[names[(64, 1e-4, 1)]]["status"] == "failed (exit 3)"
  assert by_name[names[(20, 1e-2, 1)]]["status"] == "running"
  assert by_name[names[(64, 1e-2, 0)]]["status"] == "not finished"
  assert by_name[names[(64, 1e-2, 0)]]["test_error"] == ""

  md = (root / "summary.md").read_text()
  table = [l for l in md.splitlines() if l.startswith("| ") and "---" not in l]
  assert table[0] == ("| model.localizer.hidden | train.learning_rate | "
                      "test error % | n | errors | examples/s | params |  |")
  # Sorted by mean; sample std (n-1); the best marked; unfinished last.
  assert table[1:] == [
      "| 64 | 0.001 | 1.25 ± 0.35 | 2/2 | 1.00, 1.50 | 150 | 1064 | **best** |",
      "| 20 | 0.001 | 3.00 ± 1.41 | 2/2 | 2.00, 4.00 | 150 | 1020 |  |",
      "| 20 | 0.0001 | 6.00 ± 1.41 | 2/2 | 5.00, 7.00 | 150 | 1020 |  |",
      "| 64 | 0.0001 | 6.00 ± – | 1/2 | 6.00 | 100 | 1064 |  |",
      "| 20 | 0.01 | 9.00 ± – | 1/2 | 9.00 | 100 | 1020 |  |",
      "| 64 | 0.01 | no finished run | 0/2 |  | – | – |  |",
  ]
  assert f"- `{names[(64, 1e-4, 1)]}`: failed (exit 3)" in md
  assert f"- `{names[(20, 1e-2, 1)]}`: running" in md
  assert f"- `{names[(64, 1e-2, 0)]}`: not finished" in md
  assert f"- `{names[(64, 1e-2, 1)]}`: not finished" in md
  assert (root / "summary.png").stat().st_size > 5000


def test_summarize_means_and_stds():
  keys = ["a"]
  rows = [{"setting": {"a": 1}, "status": "done", "test_error": e,
           "examples_per_s": 10.0, "num_params": 5, "seed": i}
          for i, e in enumerate((1.0, 2.0, 6.0))]
  rows.append({"setting": {"a": 2}, "status": "done", "test_error": 0.5,
               "examples_per_s": None, "num_params": None, "seed": 0})
  settings = sweep_report.summarize(keys, rows)
  assert [s["setting"]["a"] for s in settings] == [2, 1]
  assert settings[0]["best"] and not settings[1]["best"]
  assert settings[1]["mean"] == pytest.approx(3.0)
  assert settings[1]["std"] == pytest.approx(math.sqrt(7.0))
  assert math.isnan(settings[0]["std"])


def test_log_axis_only_for_positive_values_spanning_a_decade():
  assert sweep_report.use_log_axis([1e-4, 1e-3])
  assert sweep_report.use_log_axis([3e-4, 1e-3, 3e-3])
  assert not sweep_report.use_log_axis([3e-4, 1e-3])
  assert not sweep_report.use_log_axis([0.0, 0.1, 1.0])
  assert not sweep_report.use_log_axis([(20, 20), (200, 200)])
  assert not sweep_report.use_log_axis(["grid", "avg_pool"])


def test_report_out_dir_and_records_in_results_dir(tmp_path, capsys):
  root, names = _sweep_root(tmp_path)
  # A record only in a results dir (the workdir deleted, say) counts.
  runs = tmp_path / "runs"
  runs.mkdir()
  name = names[(64, 1e-2, 0)]
  (runs / f"{name}.json").write_text(json.dumps({
      "seed": 0, "test_error": 0.5, "wall_time_s": 1.0, "examples_per_s": 1.0,
      "num_params": 1064}))
  out_dir = tmp_path / "out"
  assert sweep_report.main([f"--workdir_root={root}", f"--out_dir={out_dir}",
                            f"--results_dir={runs}"]) == 0
  md = (out_dir / "summary.md").read_text()
  assert "| 64 | 0.01 | 0.50 ± – | 1/2 | 0.50 |" in md
  assert "**best**" in md.split("| 64 | 0.01 | 0.50")[1].splitlines()[0]
  assert json.loads((out_dir / "sweep.json").read_text()) == json.loads(
      (root / "sweep.json").read_text())
  assert not (root / "summary.md").exists()


def test_report_of_a_root_without_sweep_json(tmp_path):
  proc = subprocess.run([sys.executable, "-m", "experiments.sweep_report",
                         f"--workdir_root={tmp_path}"], cwd=ROOT,
                        capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr.count("\n") == 1 and "no sweep.json" in proc.stderr


def test_sweep_json_merges_the_runs_of_several_commands(tmp_path):
  def definition(key, values):
    settings = sweep_grid.sweep(key, values)
    return {"config_file": "configs/distorted_mnist.py", "keys": [key],
            "runs": sweep_grid.build_runs("r,cnn,smoke", settings, 1,
                                          model="cnn", vmap_seeds_models=())}
  sweep.record_sweep(str(tmp_path), definition("train.learning_rate",
                                               [1e-3]), None)
  sweep.record_sweep(str(tmp_path), definition("train.weight_decay",
                                               [0.0, 1e-4]), "r")
  data = json.loads((tmp_path / "sweep.json").read_text())
  assert data["keys"] == ["train.learning_rate", "train.weight_decay"]
  assert len(data["runs"]) == 3 and data["results_dir"] == "r"
  run = data["runs"]["r-cnn-smoke--train.weight_decay=0.0001-s0"]
  assert run["overrides"] == {"train.weight_decay": 1e-4} and run["seed"] == 0


def test_runs_of_two_base_configs_in_one_root_are_never_pooled(tmp_path):
  # The transform-family sweep: one --grid over ST-FCN and over ST-CNN.
  root = tmp_path / "families"
  settings = sweep_grid.sweep("model.transform", ["affine", "tps"])
  errors = {"st_fcn": {"affine": 2.0, "tps": 3.0},
            "st_cnn": {"affine": 1.0, "tps": 0.5}}
  for model in ("st_fcn", "st_cnn"):
    runs = sweep_grid.build_runs(f"rts,{model},affine,quick", settings, 1,
                                 model=model, vmap_seeds_models=())
    sweep.record_sweep(str(root), {
        "config_file": "configs/distorted_mnist.py",
        "keys": ["model.transform"], "runs": runs}, None)
    for run in runs:
      workdir = root / run["name"]
      workdir.mkdir(parents=True)
      (workdir / "results.json").write_text(json.dumps({
          "seed": 0, "test_error": errors[model][
              run["overrides"]["model.transform"]],
          "wall_time_s": 1.0, "examples_per_s": 1.0, "num_params": 1}))
  keys, rows = sweep_report.load_rows(str(root))
  assert keys == ["config", "model.transform"]
  summary = {(s["setting"]["config"], s["setting"]["model.transform"]):
             s["mean"] for s in sweep_report.summarize(keys, rows)}
  assert summary == {("rts,st_fcn,affine,quick", "affine"): 2.0,
                     ("rts,st_fcn,affine,quick", "tps"): 3.0,
                     ("rts,st_cnn,affine,quick", "affine"): 1.0,
                     ("rts,st_cnn,affine,quick", "tps"): 0.5}
  assert sweep_report.main([f"--workdir_root={root}"]) == 0
  assert "| config | model.transform |" in (root / "summary.md").read_text()


# ------------------------------------------------------- compare_transforms


def _record(dist, model, transform, seed, error, *, steps=600, batch=128,
            eps=1000.0, params=5000, protocol="quick"):
  return {"distortion": dist, "model": model, "transform": transform,
          "protocol": protocol, "seed": seed, "num_params": params,
          "steps": steps, "test_error": error, "examples_per_s": eps,
          "wall_time_s": 1.0, "device": "1x cpu:cpu",
          "config": {"train": {"batch_size": batch, "num_steps": steps,
                               "optimizer": "adam"}}}


def test_compare_transforms_numbers(tmp_path, capsys):
  runs = tmp_path / "runs"
  runs.mkdir()
  records = {
      "rts-st_cnn-affine-quick-s0": _record("rts", "st_cnn", "affine", 0, 2.0),
      "rts-st_cnn-affine-quick-s1": _record("rts", "st_cnn", "affine", 1, 4.0,
                                            eps=3000.0),
      "rts-st_cnn-projective-quick-s0": _record("rts", "st_cnn", "projective",
                                                0, 1.0, params=5042),
      # Trained differently: its own row, never averaged with the others.
      "rts-st_cnn-tps-quick-s0": _record("rts", "st_cnn", "tps", 0, 0.5,
                                         steps=6000, batch=256),
      "rts-cnn-quick-s0": _record("rts", "cnn", None, 0, 9.0),
      "rts-st_cnn-affine-paper-s0": _record("rts", "st_cnn", "affine", 0, 0.1,
                                            protocol="paper"),
  }
  for name, r in records.items():
    (runs / f"{name}.json").write_text(json.dumps(r))
  out = tmp_path / "page" / "families.md"
  # Rows as benchmarks/train_step.py --json writes them (fields used here).
  bench = tmp_path / "bench.json"
  bench.write_text(json.dumps([
      {"distortion": "rts", "model": "st_cnn_affine", "jax_median_ms": 50.0,
       "torch_median_ms": 80.0, "date": "2026-11-30", "cpu": "test"},
      {"distortion": "rts", "model": "cnn", "jax_median_ms": 40.0,
       "torch_median_ms": 70.0, "date": "2026-11-30", "cpu": "test"},
      {"distortion": "r", "model": "st_cnn_projective",
       "jax_median_ms": 9.0, "torch_median_ms": 9.0}]))
  assert compare_transforms.main([f"--runs_dir={runs}", f"--out={out}",
                                  f"--workdirs={tmp_path / 'none'}",
                                  f"--benchmark={bench}"]) == 0
  md = out.read_text()
  rows = [l for l in md.splitlines() if l.startswith("| RTS")]
  assert rows == [
      "| RTS | ST-CNN | affine | 3.00 ± 1.41 | 2 | 5000 | 2000 | 85 | "
      "50.0 / 80.0 | 1x cpu:cpu | 600x128 adam |  |",
      "| RTS | ST-CNN | attention | *no run* | 0 | – | – | – | – | – | – |  |",
      # The benchmark's projective row is of another distortion: none here.
      "| RTS | ST-CNN | projective | 1.00 ± – | 1 | 5042 | 1000 | 128 | – | "
      "1x cpu:cpu | 600x128 adam | **best** |",
      # Alone at its setting: better than the others, but not comparable.
      "| RTS | ST-CNN | tps | 0.50 ± – | 1 | 5000 | 1000 | 256 | – | "
      "1x cpu:cpu | 6000x256 adam |  |",
  ]
  assert f"from `{bench}` (2026-11-30, test)" in md
  assert "Not drawn: none of these runs has a checkpoint" in md
  assert (tmp_path / "page" / "families.png").stat().st_size > 5000
  assert not (tmp_path / "page" / "families_digits.png").exists()
  # Every registered family gets a row.
  assert "attention" in compare_transforms.families()
  # No record at the asked protocol: one line, status 2.
  assert compare_transforms.main([f"--runs_dir={runs}", f"--out={out}",
                                  "--protocol=smoke"]) == 2
  assert "no ST-model records" in capsys.readouterr().err


@pytest.mark.skipif(not os.environ.get("STN_JAX_MNIST_DIR"),
                    reason="STN_JAX_MNIST_DIR is not set")
@pytest.mark.slow
@pytest.mark.mnist
def test_compare_transforms_draws_digits_from_checkpoints(tmp_path):
  root = tmp_path / "sweep"
  subprocess.run(
      [sys.executable, "-m", "experiments.sweep",
       # ST-FCN: the same drawing path as the ST-CNN at a fraction of the
       # compile and evaluation time.
       "--config=configs/distorted_mnist.py:r,st_fcn,affine,smoke",
       "--grid=model.transform=affine,projective", f"--workdir_root={root}",
       "--parallel=2"], cwd=ROOT, check=True, capture_output=True, timeout=600)
  out = tmp_path / "families.md"
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.compare_transforms",
       f"--workdir_root={root}", "--protocol=smoke", f"--out={out}",
       "--num_digits=4"], cwd=ROOT, capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "digits drawn for 2 runs" in proc.stdout
  md = out.read_text()
  assert "Drawn from the checkpoints of 2 runs" in md
  assert "| R | ST-FCN | affine |" in md and "| R | ST-FCN | projective |" in md
  assert (tmp_path / "families_digits.png").stat().st_size > 2000
