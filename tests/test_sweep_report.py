"""Tests of the sweep definition, the sweep runner's bookkeeping and the report."""

import json
import os
import subprocess
import sys

import pytest

from configs import distorted_mnist
from configs import table1
from configs import paper_results
from experiments import report
from experiments import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_table_has_32_plus_4_cells():
  cells = paper_results.table1_cells()
  assert len(cells) == 36
  assert len(set(cells)) == 36
  assert sum(c[0] == "tc" for c in cells) == 4
  assert paper_results.PAPER_ERRORS[("rts", "st_cnn", "tps")] == 0.5
  assert paper_results.PAPER_ERRORS[("e", "fcn", None)] == 3.2


def test_sweep_expands_cells_and_seeds():
  runs = table1.get_sweep("quick,seeds=3")
  assert len(runs) == 36 * 3
  names = {r["name"] for r in runs}
  assert "rts-st_cnn-tps-quick-s2" in names
  assert "tc-cnn-quick-s0" in names
  run = next(r for r in runs if r["name"] == "e-st_fcn-projective-quick-s1")
  assert run["config"] == "e,st_fcn,projective,quick"
  assert run["overrides"] == {"seed": 1}


def test_sweep_filters():
  runs = table1.get_sweep("paper,distortions=rts+e,models=st_cnn,"
                          "transforms=tps")
  assert sorted(r["name"] for r in runs) == ["e-st_cnn-tps-paper-s0",
                                             "rts-st_cnn-tps-paper-s0"]


@pytest.mark.parametrize("arg, word", [
    ("turbo", "protocol"), ("quick,seeds=0", "seeds"),
    ("quick,distortions=x", "distortions"), ("quick,colour=red", "colour"),
    ("quick,seeds", "key=value")])
def test_sweep_rejects_bad_options(arg, word):
  with pytest.raises(ValueError, match=word):
    table1.get_sweep(arg)


def _print_commands(sweep, tmp_path, results_dir, *extra):
  """Lines printed by `experiments.sweep --print_commands` for `sweep`."""
  return subprocess.run(
      [sys.executable, "-m", "experiments.sweep", f"--sweep={sweep}",
       f"--workdir_root={tmp_path / 'wd'}", f"--results_dir={results_dir}",
       "--print_commands", *extra], cwd=ROOT, capture_output=True, text=True,
      check=True).stdout.strip().splitlines()


def test_runner_prints_only_pending_commands(tmp_path):
  results_dir = tmp_path / "runs"
  results_dir.mkdir()
  # A record in results_dir (a committed one) without a workdir.
  (results_dir / "rts-cnn-quick-s0.json").write_text("{}")
  # A run that finished in its workdir but was not yet collected.
  done_wd = tmp_path / "wd" / "rts-fcn-quick-s0"
  done_wd.mkdir(parents=True)
  (done_wd / "results.json").write_text('{"test_error": 1.0}')
  lines = _print_commands(
      "configs/table1.py:quick,distortions=rts,models=fcn+cnn", tmp_path,
      results_dir)
  # By default the record in results_dir does not make the CNN run done.
  assert lines[0] == "2 runs, 1 done, 1 to go"
  assert len(lines) == 2
  assert "--config=configs/distorted_mnist.py:rts,cnn,quick" in lines[1]
  assert f"--workdir={tmp_path / 'wd'}/rts-cnn-quick-s0" in lines[1]
  # The finished workdir's record was collected.
  assert json.loads((results_dir / "rts-fcn-quick-s0.json").read_text()) == {
      "test_error": 1.0}
  # The record in results_dir is left as it was.
  assert (results_dir / "rts-cnn-quick-s0.json").read_text() == "{}"

  lines = _print_commands(
      "configs/table1.py:quick,distortions=rts,models=fcn+cnn", tmp_path,
      results_dir, "--reuse_results")
  assert lines == ["2 runs, 2 done, 0 to go"]

  out = _print_commands(
      "configs/table1.py:quick,distortions=e,models=st_cnn", tmp_path,
      results_dir)
  assert out[0] == "3 runs, 0 done, 3 to go"
  assert len(out) == 4
  assert "--config=configs/distorted_mnist.py:e,st_cnn,tps,quick" in out[3]
  assert "--config.seed=0" in out[3]


def test_a_pending_run_with_a_record_in_results_dir(tmp_path):
  """The issue's case: a committed record and an empty workdir."""
  results_dir = tmp_path / "runs"
  results_dir.mkdir()
  (results_dir / "r-fcn-quick-s0.json").write_text('{"test_error": 2.0}')
  (tmp_path / "wd" / "r-fcn-quick-s0").mkdir(parents=True)
  sweep_arg = "configs/table1.py:quick,distortions=r,models=fcn"
  pending = _print_commands(sweep_arg, tmp_path, results_dir)
  assert pending[0] == "1 runs, 0 done, 1 to go"
  assert len(pending) == 2 and "stn_jax.main" in pending[1]
  reused = _print_commands(sweep_arg, tmp_path, results_dir,
                           "--reuse_results")
  assert reused == ["1 runs, 1 done, 0 to go"]
  assert (results_dir / "r-fcn-quick-s0.json").read_text() == (
      '{"test_error": 2.0}')


def test_collect_copies_a_newer_workdir_record_only(tmp_path):
  run = {"name": "r-fcn-quick-s0"}
  workdir, results_dir = tmp_path / "wd", tmp_path / "runs"
  workdir.mkdir()
  results_dir.mkdir()
  target = results_dir / "r-fcn-quick-s0.json"
  target.write_text('{"old": 1}')
  os.utime(target, (1000, 1000))
  assert not sweep.collect(run, str(workdir), str(results_dir))
  assert sweep.collect(run, str(workdir), str(results_dir),
                       reuse_results=True)
  (workdir / "results.json").write_text('{"new": 1}')
  assert sweep.collect(run, str(workdir), str(results_dir))
  assert target.read_text() == '{"new": 1}'
  # A record newer than the workdir's (edited after collection) is kept.
  target.write_text('{"edited": 1}')
  os.utime(workdir / "results.json", (1000, 1000))
  assert sweep.collect(run, str(workdir), str(results_dir))
  assert target.read_text() == '{"edited": 1}'


def test_every_flag_has_help():
  out = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--help"], cwd=ROOT,
      capture_output=True, text=True, check=True).stdout
  for flag in ("--sweep", "--workdir_root", "--results_dir",
               "--reuse_results", "--parallel", "--print_commands"):
    assert flag in out
  parser_actions = [a for a in sweep.build_parser()._actions
                    if a.dest != "help"]
  assert parser_actions and all(a.help for a in parser_actions)


def test_runner_groups_the_seeds_of_vmapped_models(tmp_path):
  results_dir = tmp_path / "runs"
  results_dir.mkdir()
  # Seed 1 of the FCN cell is done: the group trains seeds 0 and 2.
  done_wd = tmp_path / "wd" / "r-fcn-quick-s1"
  done_wd.mkdir(parents=True)
  (done_wd / "results.json").write_text("{}")
  out = _print_commands(
      "configs/table1.py:quick,seeds=3,distortions=r,models=fcn+cnn",
      tmp_path, results_dir)
  assert out[0] == "6 runs, 1 done, 5 to go"
  fcn = [l for l in out[1:] if ":r,fcn,quick" in l]
  cnn = [l for l in out[1:] if ":r,cnn,quick" in l]
  assert len(fcn) == 1 and len(cnn) == 3  # CNN seeds: one process each.
  assert "--seeds=0,2" in fcn[0]
  assert f"--workdir={tmp_path / 'wd'}/r-fcn-quick-s{{seed}}" in fcn[0]
  assert "--config.seed" not in fcn[0]
  assert all("--seeds" not in l for l in cnn)


def _record(dist, model, transform, seed, err, protocol="quick"):
  """A run record trained at `protocol`'s current settings."""
  train = json.loads(
      distorted_mnist.get_config(f"r,fcn,{protocol}").to_json())["train"]
  return {"distortion": dist, "model": model, "transform": transform,
          "protocol": protocol, "seed": seed, "num_params": 1000,
          "steps": train["num_steps"], "test_error": err,
          "wall_time_s": 10.0, "examples_per_s": 1.0, "device": "cpu",
          "config": {"train": train}}


def test_report_means_missing_cells_and_targets(tmp_path):
  runs_dir = tmp_path / "runs"
  runs_dir.mkdir()
  records = [_record("rts", "cnn", None, 0, 2.0),
             _record("rts", "cnn", None, 1, 4.0),
             _record("rts", "st_cnn", "affine", 0, 1.0),
             _record("rts", "st_cnn", "tps", 0, 5.0)]
  for i, r in enumerate(records):
    (runs_dir / f"{i}.json").write_text(json.dumps(r))
  summary = report.summarize(report.load_runs(str(runs_dir)))
  cells = summary[("quick", "cpu", report.current_settings("quick"))]
  assert cells[("rts", "cnn", None)]["mean"] == pytest.approx(3.0)
  assert cells[("rts", "cnn", None)]["std"] == pytest.approx(2 ** 0.5)
  assert cells[("rts", "cnn", None)]["n"] == 2
  out = tmp_path / "out"
  subprocess.run([sys.executable, "-m", "experiments.report",
                  f"--runs_dir={runs_dir}", f"--out_dir={out}",
                  "--default_runs_from="], cwd=ROOT,
                 check=True, capture_output=True)
  md = (out / "table1.md").read_text()
  assert "| RTS CNN | 0.8 | 3.00 ± 1.41 | 2 | +2.20 |" in md
  assert "| R FCN | 2.1 | missing | 0 |" in md
  assert "RTS ST-CNN affine (1.00) beats CNN (3.00)" in md
  assert "RTS ST-CNN tps (5.00) DOES NOT beat CNN (3.00)" in md
  assert "RTS ST-CNN projective vs CNN: missing" in md
  # One seed: no std; the protocol without runs is said to be untested.
  assert "| RTS ST-CNN affine | 0.5 | 1.00 ± n/a | 1 |" in md
  assert ("## Protocol `paper`\n\nNo runs at its current settings: all 36 "
          "cells missing") in md
  assert "Wall time of all 4 runs: 1 min" in md
  assert (out / "table1.png").stat().st_size > 1000
  rows = (out / "table1.csv").read_text().splitlines()
  assert len(rows) == 1 + 36


@pytest.mark.skipif(not os.environ.get("STN_JAX_MNIST_DIR"),
                    reason="needs the real MNIST files (STN_JAX_MNIST_DIR)")
def test_sweep_trains_collects_and_reports_a_smoke_run(tmp_path):
  results_dir = tmp_path / "runs"
  cmd = [sys.executable, "-m", "experiments.sweep",
         "--sweep=configs/table1.py:smoke,distortions=r,models=fcn",
         f"--workdir_root={tmp_path / 'wd'}", f"--results_dir={results_dir}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert "done r-fcn-smoke-s0" in proc.stdout
  record = json.loads((results_dir / "r-fcn-smoke-s0.json").read_text())
  assert record["distortion"] == "r" and record["model"] == "fcn"
  assert record["transform"] is None and record["protocol"] == "smoke"
  assert 0.0 <= record["test_error"] <= 100.0
  # Running again trains nothing: the run is already collected.
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
  assert "1 runs, 1 done, 0 to go" in again
  assert "start" not in again
  out = tmp_path / "out"
  subprocess.run([sys.executable, "-m", "experiments.report",
                  f"--runs_dir={results_dir}", f"--out_dir={out}"], cwd=ROOT,
                 check=True, capture_output=True)
  md = (out / "table1.md").read_text()
  assert "## Protocol `smoke`" in md
  assert f"| R FCN | 2.1 | {record['test_error']:.2f} ± n/a | 1 |" in md
  assert "adam lr 0.001 constant" in md
