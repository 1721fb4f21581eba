"""The Table-1 report on records in the format the trainer writes.

The fixtures start from a real `results.json` (a committed ablation record of
the R FCN at the paper protocol), so the report is tested on the fields and
config the trainer records today.
"""

import copy
import csv
import json
import os
import subprocess
import sys

import pytest

from experiments import report

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_RECORD = os.path.join(ROOT, "results", "ablations",
                           "r-fcn-paper-mom_h349-s0.json")


@pytest.fixture(name="record")
def _record():
  with open(REAL_RECORD) as f:
    return json.load(f)


def _variant(record, *, seed, error, wall=100.0, seeds_in_step=1):
  out = copy.deepcopy(record)
  out.update(seed=seed, test_error=error, wall_time_s=wall,
             seeds_in_step=seeds_in_step)
  out["config"]["seed"] = seed
  return out


def _report(runs_dir, out, default_runs_from=""):
  """Runs the report's command line, as a user does."""
  subprocess.run([sys.executable, "-m", "experiments.report",
                  f"--runs_dir={runs_dir}", f"--out_dir={out}",
                  f"--default_runs_from={default_runs_from}"], cwd=ROOT,
                 check=True, capture_output=True)


def _write(folder, records):
  folder.mkdir(exist_ok=True)
  for i, r in enumerate(records):
    (folder / f"{i}.json").write_text(json.dumps(r))


def test_a_real_record_at_the_defaults_is_a_default_run(record):
  assert report.is_default_run(record)
  changed = copy.deepcopy(record)
  changed["config"]["model"]["classifier"]["hidden"] = [256, 256]
  assert not report.is_default_run(changed)
  changed = copy.deepcopy(record)
  changed["config"]["train"]["momentum"] = 0.0
  assert not report.is_default_run(changed)
  # Bookkeeping (evaluation cadence) does not make a run non-default.
  changed = copy.deepcopy(record)
  changed["config"]["train"]["eval_every"] = 123
  assert report.is_default_run(changed)
  assert not report.is_default_run({k: v for k, v in record.items()
                                    if k != "config"})


def test_default_runs_join_without_counting_a_seed_twice(record):
  runs = [_variant(record, seed=0, error=2.0)]
  extra = [_variant(record, seed=0, error=9.0),  # Seed 0 already counted.
           _variant(record, seed=1, error=3.0)]
  wide = _variant(record, seed=2, error=9.0)
  wide["config"]["model"]["classifier"]["hidden"] = [256, 256]
  joined = report.add_default_runs(runs, extra + [wide])
  assert sorted((r["seed"], r["test_error"]) for r in joined) == [
      (0, 2.0), (1, 3.0)]
  # A seed-0 run at the protocol's older settings (fewer steps) does not
  # hide a default seed-0 run at its current settings.
  older = _variant(record, seed=0, error=7.0)
  older["steps"] = 600
  older["config"]["train"]["num_steps"] = 600
  joined = report.add_default_runs([older], extra[:1])
  assert sorted(r["test_error"] for r in joined) == [7.0, 9.0]


def test_report_values_verdicts_and_vmapped_wall_time(tmp_path, record):
  # Three seeds trained in one vmapped process: each record carries the
  # process's wall time, which counts once for the cell.
  runs = [_variant(record, seed=s, error=e, wall=600.0, seeds_in_step=3)
          for s, e in ((0, 2.0), (1, 2.2), (2, 2.9))]
  _write(tmp_path / "runs", runs)
  out = tmp_path / "out"
  _report(tmp_path / "runs", out)
  md = (out / "table1.md").read_text()
  heading = ("## Protocol `paper` (150000 x 256, sgd lr 0.01 step, "
             "momentum 0.9) on 1x cpu:cpu")
  assert heading in md
  # mean 2.3667, sample std 0.4726, paper 2.1.
  assert "| R FCN | 2.1 | 2.37 ± 0.47 | 3 | +0.27 | 150000 | 256 |" in md
  assert "| R CNN | 1.2 | missing | 0 |" in md
  assert "Wall time of all 3 runs: 10 min" in md
  assert "- R FCN: 2.37 vs paper 2.1 (target <= paper + 0.3): met" in md
  with open(out / "table1.csv") as f:
    rows = {(r["distortion"], r["model"], r["transform"]): r
            for r in csv.DictReader(f) if r["protocol"] == "paper"}
  row = rows[("r", "fcn", "")]
  assert float(row["mean"]) == pytest.approx(2.3667, abs=1e-4)
  assert float(row["std"]) == pytest.approx(0.4726, abs=1e-4)
  assert row["n"] == "3"
  assert rows[("r", "cnn", "")]["n"] == "0"


def test_a_missed_target_and_a_superseded_protocol(tmp_path, record):
  missed = _variant(record, seed=0, error=3.0)
  old_quick = _variant(record, seed=0, error=9.0)
  old_quick.update(protocol="quick", steps=600)
  old_quick["config"]["protocol"] = "quick"
  old_quick["config"]["train"].update(
      num_steps=600, batch_size=128, optimizer="adam", learning_rate=1e-3,
      lr_schedule="cosine")
  _write(tmp_path / "runs", [missed, old_quick])
  summary = report.summarize(report.load_runs(str(tmp_path / "runs")))
  assert set(summary) == {
      ("paper", "1x cpu:cpu", "150000 x 256, sgd lr 0.01 step, momentum 0.9"),
      ("quick", "1x cpu:cpu", "600 x 128, adam lr 0.001 cosine")}
  out = tmp_path / "out"
  _report(tmp_path / "runs", out)
  md = (out / "table1.md").read_text()
  assert ("- R FCN: 3.00 vs paper 2.1 (target <= paper + 0.3): MISSED by "
          "0.60; likely cause: not analysed yet") in md
  assert "Superseded: the `quick` protocol is now" in md
  # The superseded runs do not count as the current protocol's.
  assert "## Protocol `quick`\n\nNo runs at its current settings" in md


def _as_p(record, *, seed, error, corners=None):
  """A P FCN variant of the record; corners=None: an older record without
  the `corners_moved_in` field."""
  out = _variant(record, seed=seed, error=error)
  out["distortion"] = "p"
  out["config"]["distortion_name"] = "p"
  out["config"]["distortion"] = {"canvas_size": 28, "min_scale": 0.75,
                                 "max_scale": 1.0, "corner_std_px": 5.0}
  if corners is not None:
    out["config"]["distortion"]["corners_moved_in"] = corners
  return out


def test_runs_on_an_older_distortion_reading_stay_apart(tmp_path, record):
  old = _as_p(record, seed=0, error=9.0)  # no field: the older "output"
  explicit_old = _as_p(record, seed=1, error=8.0, corners="output")
  new = _as_p(record, seed=0, error=3.0, corners="input")
  assert report.recorded_distortion(old)["corners_moved_in"] == "output"
  assert report.recorded_distortion(record).get("corners_moved_in") is None
  assert not report.is_default_run(old)
  assert not report.is_default_run(explicit_old)
  assert report.is_default_run(new)
  _write(tmp_path / "runs", [old, explicit_old, new])
  summary = report.summarize(report.load_runs(str(tmp_path / "runs")))
  paper = "150000 x 256, sgd lr 0.01 step, momentum 0.9"
  older = paper + ", P corners_moved_in=output"
  assert summary[("paper", "1x cpu:cpu", paper)][("p", "fcn", None)][
      "mean"] == pytest.approx(3.0)
  assert summary[("paper", "1x cpu:cpu", older)][("p", "fcn", None)][
      "mean"] == pytest.approx(8.5)
  out = tmp_path / "out"
  _report(tmp_path / "runs", out)
  md = (out / "table1.md").read_text()
  section = md.split(f"## Protocol `paper` ({older})")[1]
  assert section.startswith(" on 1x cpu:cpu\n\nSuperseded:")
  # A superseded section lists only its measured cells.
  assert "| P FCN | 3.1 | 8.50 ± 0.71 | 2 |" in section
  assert "| R FCN | 2.1 | missing" not in section


def test_e_runs_without_the_points_field_used_the_output_reading(record):
  old = _variant(record, seed=0, error=4.0)
  old["distortion"] = "e"
  old["config"]["distortion"] = {"canvas_size": 28, "min_scale": 0.75,
                                 "max_scale": 1.0, "tps_grid_size": 4,
                                 "control_std_px": 1.5}
  assert report.recorded_distortion(old)["points_moved_in"] == "output"
  assert report.recorded_distortion(old).get("corners_moved_in") is None
  # "output" is still E's default, so such a record is a default run and
  # carries no reading note; an "input" run is kept apart.
  assert report.is_default_run(old)
  assert "points_moved_in" not in report._settings(old)
  old["config"]["distortion"]["points_moved_in"] = "input"
  assert not report.is_default_run(old)
  assert report._settings(old).endswith(", E points_moved_in=input")


def test_resumed_runs_count_every_process_or_are_marked(tmp_path, record):
  # Seed 0 resumed by a process that recorded the whole run's time; seed 1
  # resumed by an older one that recorded its own time only.
  whole = _variant(record, seed=0, error=2.0, wall=100.0)
  whole.update(resumed_from_step=75_000, run_time_s=900.0)
  old = _variant(record, seed=1, error=2.2, wall=300.0)
  old.update(resumed_from_step=75_000)
  _write(tmp_path / "runs", [whole])
  out = tmp_path / "out"
  _report(tmp_path / "runs", out)
  md = (out / "table1.md").read_text()
  assert "| sgd lr 0.01 step | 900 | " in md
  assert "Wall time of all 1 runs: 15 min" in md
  assert "older than the records' `run_time_s`" not in md
  _write(tmp_path / "runs", [whole, old])
  _report(tmp_path / "runs", out)
  md = (out / "table1.md").read_text()
  assert "| sgd lr 0.01 step | 600* | " in md  # mean of 900 and 300
  assert "Wall time of all 2 runs: at least 20 min" in md
  assert "older than the records' `run_time_s`" in md
  with open(out / "table1.csv") as f:
    row = [r for r in csv.DictReader(f) if r["protocol"] == "paper"
           and r["model"] == "fcn" and r["distortion"] == "r"][0]
  assert row["wall_time_partial"] == "1"


def test_default_runs_from_a_folder(tmp_path, record):
  _write(tmp_path / "runs", [])
  _write(tmp_path / "ablations", [_variant(record, seed=0, error=2.5)])
  out = tmp_path / "out"
  _report(tmp_path / "runs", out, tmp_path / "ablations")
  md = (out / "table1.md").read_text()
  assert "| R FCN | 2.1 | 2.50 ± n/a | 1 | +0.40 |" in md


def test_committed_tables_are_what_the_records_give(tmp_path):
  # results/table1.md and .csv are regenerated from the committed records
  # (results/runs, and the default-config runs of results/ablations): a
  # hand edit, or a record committed without its table, fails here.
  out = tmp_path / "out"
  _report("results/runs", out, "results/ablations")
  for name in ("table1.md", "table1.csv"):
    with open(os.path.join(ROOT, "results", name)) as f:
      committed = f.read()
    assert (out / name).read_text() == committed, name


def test_committed_ablation_table_is_what_the_records_give(tmp_path):
  out = tmp_path / "ablations.md"
  subprocess.run([sys.executable, "-m", "experiments.ablation_report",
                  "--runs_dir=results/ablations", f"--out={out}"], cwd=ROOT,
                 check=True, capture_output=True)
  with open(os.path.join(ROOT, "results", "ablations.md")) as f:
    assert out.read_text() == f.read()


def test_grid_has_the_papers_layout(record):
  # Rows: the paper's models; columns: R, RTS, P, E, TC; each entry the
  # mean (the paper's number), n; bold where it misses paper + 0.3.
  summary = report.summarize([_variant(record, seed=0, error=2.0),
                              _variant(record, seed=1, error=2.2)])
  lines = report.grid_lines(summary)
  assert lines[2] == "| model | R | RTS | P | E | TC |"
  assert lines[4] == ("| FCN | 2.10 (2.1), n=2 | - (5.2) | - (3.1) | - (3.2) "
                      "| - (13.2) |")
  # TC has no projective cell in the paper: blank, not "not run".
  assert lines[7] == ("| ST-FCN projective | - (1.3) | - (0.9) | - (1.4) "
                      "| - (2.6) |  |")
  assert len([l for l in lines if l.startswith("| ")]) == 9  # Header + 8.
  missed = report.summarize([_variant(record, seed=0, error=2.5)])
  assert "| FCN | **2.50** (2.1), n=1 |" in "\n".join(report.grid_lines(missed))
  # A protocol's older settings get no grid (they are superseded).
  old = _variant(record, seed=0, error=2.0)
  old["steps"] = 600
  assert report.grid_lines(report.summarize([old])) == []


def test_readme_grids_replace_only_the_marked_block(tmp_path, record):
  _write(tmp_path / "runs", [_variant(record, seed=0, error=2.0)])
  readme = tmp_path / "README.md"
  before, after = "# Title\n\nText before.\n\n", "\n\nText after.\n"
  readme.write_text(before + report.README_BEGIN + "\nstale table\n"
                    + report.README_END + after)
  command = [sys.executable, "-m", "experiments.report",
             f"--runs_dir={tmp_path / 'runs'}", f"--out_dir={tmp_path / 'out'}",
             "--default_runs_from=", f"--readme={readme}"]
  subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
  text = readme.read_text()
  assert text.startswith(before + report.README_BEGIN + "\n")
  assert text.endswith(report.README_END + after)
  assert "stale table" not in text
  assert "| FCN | 2.00 (2.1), n=1 |" in text
  subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
  assert readme.read_text() == text  # Idempotent.
  readme.write_text("no markers\n")
  command[4] = f"--out_dir={tmp_path / 'out2'}"
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  assert result.returncode != 0
  assert "--readme" in result.stderr and "must hold the line" in result.stderr
  assert readme.read_text() == "no markers\n"  # Left as it was.
  assert not (tmp_path / "out2").exists()


def test_committed_readme_grids_are_what_the_records_give(tmp_path):
  readme = tmp_path / "README.md"
  with open(os.path.join(ROOT, "README.md")) as f:
    committed = f.read()
  readme.write_text(committed)
  subprocess.run([sys.executable, "-m", "experiments.report",
                  f"--out_dir={tmp_path / 'out'}", f"--readme={readme}"],
                 cwd=ROOT, check=True, capture_output=True)
  assert readme.read_text() == committed
