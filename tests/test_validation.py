"""`train.validate_config` runs once per run, where the config enters.

`stn_jax.main` validates (so that a bad value is one line before any work)
and tells `train_and_evaluate[_seeds]` so (`validated=True`); a library
caller that does not gets the validation inside.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from configs import distorted_mnist
from stn_jax import train

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
ARG = "r,fcn,smoke"


def _finished_workdir(path) -> str:
  """A workdir whose results.json records a finished `ARG` run, so that a
  run there returns at once (`train.finished_results`)."""
  cfg = distorted_mnist.get_config(ARG)
  os.makedirs(path, exist_ok=True)
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"steps": cfg.train.num_steps, "test_error": 12.5,
               "config": json.loads(cfg.to_json_best_effort())}, f)
  return str(path)


def _counting(monkeypatch) -> list:
  calls = []
  real = train.validate_config
  monkeypatch.setattr(train, "validate_config",
                      lambda cfg: (calls.append(1), real(cfg))[1])
  return calls


@pytest.mark.parametrize("validated, count", [(False, 1), (True, 0)])
def test_train_and_evaluate_validates_unless_told(tmp_path, monkeypatch,
                                                  validated, count):
  calls = _counting(monkeypatch)
  cfg = distorted_mnist.get_config(ARG)
  done = train.train_and_evaluate(cfg, _finished_workdir(tmp_path / "run"),
                                  validated=validated)
  assert done["test_error"] == 12.5
  assert len(calls) == count


def test_train_and_evaluate_seeds_rejects_a_bad_config_first(tmp_path):
  cfg = distorted_mnist.get_config(ARG)
  cfg.train.num_steps = 0
  with pytest.raises(ValueError, match="train.num_steps"):
    train.train_and_evaluate_seeds(cfg, {0: str(tmp_path / "never")})
  assert not os.path.exists(tmp_path / "never")  # Before any work.


_MAIN_COUNTING = textwrap.dedent("""
    from absl import app
    from stn_jax import main, train
    calls = []
    real = train.validate_config
    train.validate_config = lambda cfg: (calls.append(1), real(cfg))[1]
    try:
      main.run()
    finally:
      print("VALIDATIONS", len(calls), flush=True)
""")


def test_main_validates_once(tmp_path):
  workdir = _finished_workdir(tmp_path / "run")
  config = os.path.join(ROOT, "configs", "distorted_mnist.py")
  proc = subprocess.run(
      [sys.executable, "-c", _MAIN_COUNTING, f"--config={config}:{ARG}",
       f"--workdir={workdir}"], cwd=ROOT, capture_output=True, text=True,
      timeout=300, env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "already finished: test error 12.50%" in proc.stdout
  assert "VALIDATIONS 1" in proc.stdout, proc.stdout
