"""The allocator benchmark's command line: a worker's row, outputs, bad input."""

import json
import os

import pytest

from benchmarks import allocator as bench


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("STN_JAX_MNIST_DIR"),
                    reason="STN_JAX_MNIST_DIR (real MNIST) is not set")
def test_one_round_writes_the_rows_measured(tmp_path):
  out_json, out_md = tmp_path / "a.json", tmp_path / "a.md"
  bench.main(["--rows", "r,fcn,quick:1", "--allocators", "default",
              "--rounds", "1", "--steps", "2", "--warmup", "1",
              "--test_examples", "8", "--json", str(out_json),
              "--markdown", str(out_md)])
  results = json.loads(out_json.read_text())
  (run,) = results["runs"]
  assert run["row"] == "r,fcn,quick x1" and run["allocator"] == "default"
  assert run["steps_per_s"] == pytest.approx(1e3 / run["median_ms"])
  assert run["minor_faults_per_step"] >= 0 and not run["tcmalloc_loaded"]
  (entry,) = results["table"]
  assert "tcmalloc" not in entry and "speedup" not in entry
  assert entry["default"]["steps_per_s"] == run["steps_per_s"]
  rows = [line for line in out_md.read_text().splitlines()
          if line.startswith("| r,fcn")]
  assert len(rows) == 1 and rows[0].startswith("| r,fcn,quick x1 | default |")


@pytest.mark.parametrize("args, flag", [
    (["--rows", "r,fcn,quick"], "--rows"),
    (["--rows", "r,fcn,quick:0"], "--rows"),
    (["--allocators", "default,jemalloc"], "--allocators"),
    (["--tcmalloc", "/nonexistent/libtcmalloc.so"], "--tcmalloc"),
    (["--steps", "0"], "--steps"),
    (["--core", "4096"], "--core"),
])
def test_bad_arguments_exit_naming_the_flag(capsys, args, flag):
  with pytest.raises(SystemExit):
    bench.main(args)
  assert flag in capsys.readouterr().err
