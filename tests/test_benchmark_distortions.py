"""The distortion-cost benchmark's command line: rows, outputs, bad input."""

import json
import os
import sys

import pytest

from benchmarks import distortions as bench


def _run(monkeypatch, *args):
  monkeypatch.setattr(sys, "argv", ["distortions", *args])
  bench.main()


def test_writes_one_row_per_kept_distortion_and_convention(monkeypatch,
                                                            tmp_path):
  out_json, out_md = tmp_path / "d.json", tmp_path / "d.md"
  _run(monkeypatch, "--batch", "2", "--reps", "2", "--warmup", "0",
       "--rows", "e,tc", "--json", str(out_json), "--markdown", str(out_md))
  results = json.loads(out_json.read_text())
  assert results["environment"]["cpu_cores"] == sorted(os.sched_getaffinity(0))
  names = [r["row"] for r in results["rows"]]
  assert names == ["e", "e,points_moved_in=input", "tc"]
  for r in results["rows"]:
    assert r["batch"] == 2 and 0 < r["min_ms"] <= r["median_ms"]
    assert r["digits_per_s"] == pytest.approx(2 / r["median_ms"] * 1e3)
  table = out_md.read_text().splitlines()
  assert [line.split(" | ")[0] for line in table if line.startswith("| e")
          or line.startswith("| tc")] == ["| " + n for n in names]


@pytest.mark.parametrize("args, flag", [(["--rows", "e,zz"], "--rows"),
                                        (["--batch", "0"], "--batch"),
                                        (["--core", "4096"], "--core")])
def test_bad_arguments_exit_naming_the_flag(monkeypatch, capsys, args, flag):
  with pytest.raises(SystemExit):
    _run(monkeypatch, *args)
  assert flag in capsys.readouterr().err
