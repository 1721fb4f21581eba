"""Tests of experiments.ablation_report and experiments.learning_curves."""

import json

import pytest

from configs import ablations
from experiments import ablation_report
from experiments import learning_curves


def _record(dist, model, transform, seed, error, curve=None, hidden=256):
  record = {"distortion": dist, "model": model, "transform": transform,
            "protocol": "paper", "seed": seed, "num_params": 1234,
            "steps": 150_000, "test_error": error, "wall_time_s": 600.0,
            "device": "1x cpu:cpu",
            "config": {"train": {"batch_size": 256},
                       "model": {"classifier": {"hidden": [hidden, hidden]}}}}
  if curve is not None:
    record["eval_curve"] = curve
  return record


def _write(tmp_path, name, record):
  (tmp_path / f"{name}.json").write_text(json.dumps(record))


def test_table_values(tmp_path):
  cfg = "rts,st_fcn,affine,paper"
  for seed, err in ((0, 1.0), (1, 1.4)):
    _write(tmp_path, ablations.run_name(cfg, "mom_h256", seed),
           _record("rts", "st_fcn", "affine", seed, err,
                   curve=[[50_000, 2.0 + seed], [100_000, 1.5], [150_000, err]]))
  _write(tmp_path, ablations.run_name("rts,fcn,paper", "mom_h202", 0),
         _record("rts", "fcn", None, 0, 5.0))
  rows = {(r["cell"], r["reading"]): r
          for r in ablation_report.rows(str(tmp_path))}
  st = rows[(cfg, "mom_h256")]
  assert st["seeds"] == [0, 1]
  assert st["mean"] == pytest.approx(1.2)
  assert st["std"] == pytest.approx(0.28284, abs=1e-4)
  assert st["at_50k"] == pytest.approx(2.5) and st["at_100k"] == 1.5
  assert st["paper"] == 0.8 and st["diff"] == pytest.approx(0.4)
  assert st["wall_time_s"] == 1200.0
  assert "train.momentum=0.9" in st["overrides"]
  fcn = rows[("rts,fcn,paper", "mom_h202")]
  assert fcn["at_50k"] is None and fcn["paper"] == 5.2
  md = ablation_report.to_markdown(list(rows.values()))
  assert "| 1.20 ± 0.28 | 2.50 | 1.50 | 0.8 | +0.40 | 20 min |" in md
  assert "| 5.00 | n/a | n/a | 5.2 | -0.20 |" in md

  with_curve, without = learning_curves.curves(str(tmp_path))
  assert [c[0] for c in with_curve] == [
      ablations.run_name(cfg, "mom_h256", s) for s in (0, 1)]
  assert with_curve[0][2] == [50_000 * 256, 100_000 * 256, 150_000 * 256]
  assert without == [ablations.run_name("rts,fcn,paper", "mom_h202", 0)]
  out = tmp_path / "curves.png"
  learning_curves.plot(with_curve, without, str(out), "t")
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_record_is_an_error(tmp_path):
  _write(tmp_path, "rts-fcn-paper-mystery-s0",
         _record("rts", "fcn", None, 0, 5.0))
  with pytest.raises(ValueError, match="no run of that name"):
    ablation_report.rows(str(tmp_path))


def test_every_reading_of_every_group_exists():
  runs = ablations.get_sweep("all")
  assert len({r["name"] for r in runs}) == len(runs)
  with pytest.raises(ValueError, match="unknown"):
    ablations.get_sweep("nope")


def test_several_seeds_of_an_fcn_reading_train_as_one_vmapped_group():
  runs = ablations.get_sweep("rts_fcn_width+rts3")
  width = [r for r in runs if "mom_h256" in r["name"]]
  assert [r["name"] for r in width] == [
      f"rts-fcn-paper-mom_h256-s{s}" for s in (0, 1, 2)]
  assert {r["group"] for r in width} == {"rts-fcn-paper-mom_h256"}
  assert [r["overrides"]["seed"] for r in width] == [0, 1, 2]
  # One seed: its own process.
  assert all(r["group"] is None for r in runs if r not in width)


def test_a_short_run_shows_dashes_and_a_resumed_run_its_whole_time(tmp_path):
  quick = _record("r", "cnn", None, 0, 1.5, curve=[[6_000, 1.5]])
  quick.update(protocol="quick", steps=6_000, run_time_s=900.0,
               resumed_from_step=3_000)
  _write(tmp_path, ablations.run_name("r,cnn,quick", "valid", 0), quick)
  old = _record("r", "cnn", None, 0, 1.7, curve=[[6_000, 1.7]])
  old.update(protocol="quick", steps=6_000, resumed_from_step=3_000)
  _write(tmp_path, ablations.run_name("r,cnn,quick", "same", 0), old)
  rows = {r["reading"]: r for r in ablation_report.rows(str(tmp_path))}
  assert rows["valid"]["at_50k"] == ablation_report.SHORTER
  assert rows["valid"]["wall_time_s"] == 900.0
  assert rows["valid"]["wall_time_known"]
  assert not rows["same"]["wall_time_known"]
  md = ablation_report.to_markdown([rows["valid"], rows["same"]])
  assert "| 1.50 | - | - | 1.2 | +0.30 | 15 min | 1x cpu:cpu |" in md
  assert "| 1.70 | - | - | 1.2 | +0.50 | 10 min* | 1x cpu:cpu |" in md
