"""Tests of `python -m stn_jax.main`'s command-line errors: one line, status 2.

The errors happen before any data loading, so each run takes seconds (the
bad-value ones load `stn_jax.train`, and with it TensorFlow: ~10-30 s).
"""

import os
import subprocess
import sys

import pytest

from configs import distorted_mnist
from stn_jax import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "--config=configs/distorted_mnist.py:rts,st_cnn,affine,smoke"


def _run(*args):
  """Runs `python -m stn_jax.main <args>`; returns (code, stdout, stderr)."""
  env = dict(os.environ)
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  proc = subprocess.run([sys.executable, "-m", "stn_jax.main", *args],
                        cwd=ROOT, env=env, capture_output=True, text=True,
                        timeout=300)
  return proc.returncode, proc.stdout, proc.stderr


def _lines(text):
  return [line for line in text.splitlines() if line.strip()]


def _assert_one_clear_line(code, stdout, stderr, *needles):
  lines = _lines(stderr)
  assert code == main.USAGE_EXIT_CODE == 2, stderr[-3000:]
  assert 1 <= len(lines) <= 3, stderr[-3000:]
  assert not _lines(stdout), stdout[-3000:]  # no --help text
  assert "Traceback" not in stderr, stderr[-3000:]
  error = [line for line in lines if line.startswith("stn_jax.main: error:")]
  assert len(error) == 1, stderr
  for needle in needles:
    assert needle in error[0], error[0]
  return error[0]


def test_mistyped_config_key_names_it_and_the_closest_key(tmp_path):
  line = _assert_one_clear_line(
      *_run(CONFIG, f"--workdir={tmp_path}", "--config.train.num_stepz=3"),
      "`train.num_stepz`", "--config.train.num_stepz=3",
      "did you mean `train.num_steps`?")
  assert "unknown config key" in line
  assert not os.listdir(tmp_path)  # nothing ran


def test_mistyped_config_group_names_the_closest_group(tmp_path):
  _assert_one_clear_line(
      *_run(CONFIG, f"--workdir={tmp_path}", "--config.trian.num_steps=3"),
      "`trian.num_steps`", "did you mean `train`?")


def test_bad_config_value_is_one_line_not_the_help(tmp_path):
  _assert_one_clear_line(
      *_run(CONFIG, f"--workdir={tmp_path}", "--config.train.batch_size=0"),
      "`train.batch_size`", "got 0")
  assert not os.listdir(tmp_path)


def test_value_of_the_wrong_type_and_missing_flag_are_one_line(tmp_path):
  _assert_one_clear_line(
      *_run(CONFIG, f"--workdir={tmp_path}", "--config.train.batch_size=abc"),
      "--config.train.batch_size=abc", "abc")
  _assert_one_clear_line(*_run(CONFIG), "--workdir")


def test_a_good_command_line_parses():
  # --only_check_args: absl exits 0 right after parsing the flags.
  code, _, stderr = _run(CONFIG, "--workdir=/tmp/unused",
                         "--config.train.num_steps=3", "--only_check_args")
  assert code == 0, stderr[-3000:]


# ---------------------------------------------------- in process, no runs


@pytest.fixture(name="config")
def _config():
  return distorted_mnist.get_config("rts,st_cnn,affine,smoke")


def test_unknown_key_message(config):
  arg = "--config.x=1"
  assert main.unknown_key_message(config, "train.num_steps", arg) is None
  assert main.unknown_key_message(config, "model.localizer.hidden",
                                  arg) is None
  message = main.unknown_key_message(config, "train.lerning_rate", arg)
  assert "`train.lerning_rate`" in message
  assert "did you mean `train.learning_rate`?" in message
  assert arg in message
  message = main.unknown_key_message(config, "model.localiser.hidden", arg)
  assert "did you mean `model.localizer`?" in message
  # No close key: the level's keys are listed.
  message = main.unknown_key_message(config, "train.zzzzzz", arg)
  assert "the keys of `train` are:" in message and "num_steps" in message
  # A key below a value.
  message = main.unknown_key_message(config, "seed.x", arg)
  assert "`seed` is a value, not a group" in message


def test_flag_value():
  # pylint: disable=protected-access
  assert main._flag_value(["p", "--config=a.py:x", "--w=1"], "config") == (
      "a.py:x")
  assert main._flag_value(["p", "--config", "a.py:y"], "config") == "a.py:y"
  assert main._flag_value(["p", "--config.seed=1"], "config") is None
  assert main._flag_value(["p", "--", "--config=a.py"], "config") is None


def _finished_record(workdir, arg="r,fcn,smoke", test_error=12.5):
  """Writes the results.json of a finished run of `arg` into `workdir`."""
  import json  # pylint: disable=g-import-not-at-top
  cfg = distorted_mnist.get_config(arg)
  workdir.mkdir()
  record = {"steps": cfg.train.num_steps, "test_error": test_error,
            "seed": 0, "config": json.loads(cfg.to_json_best_effort())}
  (workdir / "results.json").write_text(json.dumps(record, indent=2))
  return record


def test_a_finished_run_says_so_and_writes_nothing(tmp_path):
  workdir = tmp_path / "run"
  _finished_record(workdir)
  before = (workdir / "results.json").read_bytes()
  code, stdout, stderr = _run("--config=configs/distorted_mnist.py:r,fcn,smoke",
                              f"--workdir={workdir}")
  assert code == 0, stderr[-3000:]
  assert f"already finished: test error 12.50% ({workdir})" in stdout
  # No data loaded, nothing trained, evaluated or written.
  assert os.listdir(workdir) == ["results.json"]
  assert (workdir / "results.json").read_bytes() == before


def test_a_finished_run_of_another_config_is_a_one_line_error(tmp_path):
  workdir = tmp_path / "run"
  _finished_record(workdir)
  code, _, stderr = _run("--config=configs/distorted_mnist.py:r,fcn,smoke",
                         f"--workdir={workdir}",
                         "--config.train.learning_rate=0.01")
  assert code == main.USAGE_EXIT_CODE, stderr[-3000:]
  assert "Traceback" not in stderr
  last = _lines(stderr)[-1]
  assert last.startswith("stn_jax.main: error: workdir"), last
  assert "`train.learning_rate`: 0.001 there, 0.01 now" in last
  assert os.listdir(workdir) == ["results.json"]


def test_library_info_chatter_is_filtered_and_warnings_pass():
  import logging as py_logging  # pylint: disable=g-import-not-at-top
  from stn_jax import main as main_lib  # pylint: disable=g-import-not-at-top

  def record(path, level):
    return py_logging.LogRecord("x", level, path, 1, "msg", None, None)

  for path in ("/site-packages/tensorflow_datasets/core/reader.py",
               "/site-packages/jax/_src/xla_bridge.py",
               "/site-packages/orbax/checkpoint/manager.py"):
    assert not main_lib._quiet_orbax(record(path, py_logging.INFO))
    assert main_lib._quiet_orbax(record(path, py_logging.WARNING))
  assert main_lib._quiet_orbax(record("/repo/stn_jax/train.py",
                                      py_logging.INFO))
