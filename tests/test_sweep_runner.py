"""Tests of grid sweeps: --grid parsing, run names, resume, locks, launchers.

The runner's loop runs `tests/_sweep_fake_trainer.py` (`--trainer`), a script
that writes results.json at once (or after FAKE_TRAINER_SLEEP seconds, or
fails on FAKE_TRAINER_FAIL), so the loop is exercised without training; the
end-to-end tests train real smoke runs on MNIST.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from configs import distorted_mnist
from experiments import sweep
from experiments import sweep_grid

# submitit configures logging when imported (logging.config.dictConfig),
# which closes the handlers already there: under pytest, absl's handler holds
# a capture file of pytest's, which it then closes. Its NOCONFIG level keeps
# the logging set-up as it is (in this process and the jobs it starts).
os.environ.setdefault("SUBMITIT_LOG_LEVEL", "NOCONFIG")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAKE = "tests._sweep_fake_trainer"
BASE = "configs/distorted_mnist.py:rts,st_cnn,tps,quick"


@pytest.fixture(scope="module")
def config():
  return distorted_mnist.get_config("rts,st_cnn,tps,quick")


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
  monkeypatch.chdir(ROOT)
  for var in ("FAKE_TRAINER_SLEEP", "FAKE_TRAINER_FAIL", "FAKE_TRAINER_LOG"):
    monkeypatch.delenv(var, raising=False)


def _starts(log_path):
  """Workdir basenames of the fake trainer's "start" lines, in order."""
  if not os.path.exists(log_path):
    return []
  with open(log_path) as f:
    return [os.path.basename(l.split()[1]) for l in f if l.startswith("start")]


# ------------------------------------------------------------ --grid parsing


def test_split_values_keeps_tuples_and_quotes_whole():
  assert sweep_grid.split_values("3e-4,1e-3") == ["3e-4", "1e-3"]
  assert sweep_grid.split_values("(16,32),(32, 64)") == ["(16,32)",
                                                         "(32, 64)"]
  assert sweep_grid.split_values("'a,b',c") == ["'a,b'", "c"]


def test_grid_values_take_the_type_of_their_key(config):
  settings = sweep_grid.parse_grid(config, [
      "train.learning_rate=3e-4,1e-3", "model.localizer.hidden=20,64",
      "model.classifier.filters=(16,32),(32,64)",
      "model.align_corners=false", "model.padding_mode=border"])
  assert len(settings) == 2 * 2 * 2
  first = settings[0]
  assert first == {"train.learning_rate": 3e-4, "model.localizer.hidden": 20,
                   "model.classifier.filters": (16, 32),
                   "model.align_corners": False,
                   "model.padding_mode": "border"}
  assert type(first["train.learning_rate"]) is float
  assert type(first["model.localizer.hidden"]) is int
  # The product: the last flag varies fastest.
  assert [s["model.classifier.filters"] for s in settings[:2]] == [
      (16, 32), (32, 64)]
  # An int given for a float key is a float.
  assert sweep_grid.parse_grid(config, ["train.weight_decay=0"]) == [
      {"train.weight_decay": 0.0}]
  assert sweep_grid.parse_grid(config, []) == [{}]


@pytest.mark.parametrize("flag, words", [
    ("train.learnin_rate=1e-3", ["unknown config key `train.learnin_rate`",
                                 "did you mean `train.learning_rate`"]),
    ("train.learning_rate=fast", ["value 'fast'", "`train.learning_rate`",
                                  "not a float"]),
    ("model.localizer.hidden=20,1.5", ["value '1.5'",
                                       "`model.localizer.hidden`",
                                       "not an int"]),
    ("model.classifier.filters=(16,32),(1,2", ["`model.classifier.filters`",
                                               "not a tuple"]),
    ("model.align_corners=maybe", ["`model.align_corners`", "not a bool"]),
    ("model.localizer=3", ["`model.localizer` is a group of keys"]),
    ("seed=0,1", ["use --seeds"]),
    ("train.learning_rate=", ["an empty value"]),
    ("train.learning_rate=1e-3,0.001", ["repeated"]),
    ("train.learning_rate", ["expected KEY=V1,V2"]),
])
def test_bad_grid_flags_name_the_key_or_value(config, flag, words):
  with pytest.raises(sweep_grid.SweepError) as e:
    sweep_grid.parse_grid(config, [flag])
  for word in words:
    assert word in str(e.value)
  assert f"--grid={flag}" in str(e.value)


def test_the_same_key_twice_is_refused(config):
  with pytest.raises(sweep_grid.SweepError, match="two --grid flags"):
    sweep_grid.parse_grid(config, ["train.learning_rate=1e-3",
                                   "train.learning_rate=3e-3"])


def test_product_and_zip_helpers():
  h = sweep_grid
  assert h.product([h.sweep("a", [1, 2]), h.sweep("b", ["x", "y"])]) == [
      {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"},
      {"a": 2, "b": "y"}]
  assert h.zip([h.sweep("a", [1, 2]), h.sweep("b", [3, 4])]) == [
      {"a": 1, "b": 3}, {"a": 2, "b": 4}]
  assert h.product([h.sweep("c", [0]),
                    h.zip([h.sweep("a", [1, 2]), h.sweep("b", [3, 4])])]) == [
                        {"c": 0, "a": 1, "b": 3}, {"c": 0, "a": 2, "b": 4}]
  with pytest.raises(h.SweepError, match="different lengths"):
    h.zip([h.sweep("a", [1, 2]), h.sweep("b", [3])])
  with pytest.raises(h.SweepError, match="set twice"):
    h.product([h.sweep("a", [1]), h.sweep("a", [2])])
  with pytest.raises(h.SweepError, match="no values"):
    h.sweep("a", [])


def test_sweep_file_values_are_type_checked(config):
  checked = sweep_grid.check_settings(
      config, [{"train.learning_rate": 1, "model.localizer.filters": [8, 8]}],
      "f")
  assert checked == [{"train.learning_rate": 1.0,
                      "model.localizer.filters": (8, 8)}]
  with pytest.raises(sweep_grid.SweepError,
                     match="value '1e-3' of `train.learning_rate` is not a "
                     "float"):
    sweep_grid.check_settings(config, [{"train.learning_rate": "1e-3"}], "f")
  with pytest.raises(sweep_grid.SweepError, match="not an int"):
    sweep_grid.check_settings(config, [{"model.localizer.hidden": True}], "f")


# ---------------------------------------------------------------- run names


def test_run_names_are_readable_and_stable():
  assert sweep_grid.run_name("rts,st_cnn,tps,quick",
                             {"train.learning_rate": 1e-3}, 0) == (
                                 "rts-st_cnn-tps-quick--train.learning_rate="
                                 "0.001-s0")
  a = sweep_grid.run_name("r,fcn,smoke", {"model.classifier.hidden": (20, 64),
                                          "train.learning_rate": 3e-4}, 2)
  b = sweep_grid.run_name("r,fcn,smoke", {"train.learning_rate": 0.0003,
                                          "model.classifier.hidden": (20, 64)},
                          2)
  assert a == b == ("r-fcn-smoke--model.classifier.hidden=20x64--"
                    "train.learning_rate=0.0003-s2")
  assert sweep_grid.run_name("r,fcn", {"data.manual_dir": "/a b/c"}, 0) == (
      "r-fcn--data.manual_dir=_a_b_c-s0")
  assert sweep_grid.run_name("r,fcn", {"model.align_corners": False}, 0) == (
      "r-fcn--model.align_corners=false-s0")


def test_long_names_are_cut_with_a_hash_and_stay_distinct():
  long_a = {"data.manual_dir": "x" * 300 + "a"}
  long_b = {"data.manual_dir": "x" * 300 + "b"}
  a = sweep_grid.run_name("r,fcn", long_a, 0)
  b = sweep_grid.run_name("r,fcn", long_b, 0)
  assert len(a) <= sweep_grid.MAX_NAME and a.endswith("-s0")
  assert a != b
  assert a == sweep_grid.run_name("r,fcn", dict(long_a), 0)


def test_seed_groups_for_vmapped_models(config):
  runs = sweep_grid.build_runs("r,fcn,smoke", [{"train.learning_rate": 1e-3}],
                               3, model="fcn", vmap_seeds_models=("fcn",))
  assert [r["name"] for r in runs] == [
      f"r-fcn-smoke--train.learning_rate=0.001-s{s}" for s in range(3)]
  assert {r["group"] for r in runs} == {"r-fcn-smoke--train.learning_rate=0.001"}
  assert runs[2]["overrides"] == {"train.learning_rate": 1e-3, "seed": 2}
  single = sweep_grid.build_runs("r,cnn,smoke", [{}], 3, model="cnn",
                                 vmap_seeds_models=("fcn",))
  assert [r["group"] for r in single] == [None] * 3
  one_seed = sweep_grid.build_runs("r,fcn,smoke", [{}], 1, model="fcn",
                                   vmap_seeds_models=("fcn",))
  assert one_seed[0]["group"] is None and one_seed[0]["name"] == "r-fcn-smoke-s0"


# ------------------------------------------------------------ command line


def _main(capsys, *argv):
  """(exit status, stdout lines, stderr) of experiments.sweep.main(argv)."""
  try:
    code = sweep.main(list(argv))
  except SystemExit as e:
    code = e.code
  out, err = capsys.readouterr()
  return code, out.strip().splitlines(), err


def test_print_commands_of_a_grid_sweep(tmp_path, capsys):
  code, out, _ = _main(
      capsys, "--config=configs/distorted_mnist.py:r,fcn,smoke",
      "--grid=train.learning_rate=1e-3,3e-3",
      "--grid=model.classifier.hidden=(20,20)", "--seeds=3",
      f"--workdir_root={tmp_path}", "--print_commands")
  assert code == 0
  assert out[0] == "6 runs, 0 done, 6 to go"
  assert len(out) == 3  # One vmapped process per setting (the FCN family).
  assert "--seeds=0,1,2" in out[1]
  assert ("--config.model.classifier.hidden='(20, 20)'" in out[1] or
          "'--config.model.classifier.hidden=(20, 20)'" in out[1])
  assert (f"{tmp_path}/r-fcn-smoke--model.classifier.hidden=20x20--"
          "train.learning_rate=0.001-s{seed}") in out[1]
  recorded = json.loads((tmp_path / "sweep.json").read_text())
  assert recorded["keys"] == ["model.classifier.hidden", "train.learning_rate"]
  assert len(recorded["runs"]) == 6
  # The CNN family: one process per seed.
  code, out, _ = _main(
      capsys, "--config=configs/distorted_mnist.py:r,cnn,smoke",
      "--grid=train.learning_rate=1e-3", "--seeds=2",
      f"--workdir_root={tmp_path / 'cnn'}", "--print_commands")
  assert out[0] == "2 runs, 0 done, 2 to go" and len(out) == 3
  assert "--config.seed=1" in out[2] and "--seeds" not in out[2]


def test_a_bad_value_fails_before_anything_runs(tmp_path, capsys):
  code, out, err = _main(
      capsys, f"--config={BASE}", "--grid=train.learning_rate=1e-3,-1",
      f"--workdir_root={tmp_path / 'wd'}", f"--trainer={FAKE}")
  assert code == 2 and out == []
  assert err.count("\n") == 1
  assert err.startswith("experiments.sweep: error: ")
  assert "train.learning_rate" in err and "-1" in err
  assert not (tmp_path / "wd").exists()


def test_bad_flags_exit_2_with_one_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", f"--config={BASE}",
       "--grid=model.localizer.hiden=20,64", f"--workdir_root={tmp_path}"],
      cwd=ROOT, capture_output=True, text=True)
  assert proc.returncode == 2
  assert proc.stderr == ("experiments.sweep: error: unknown config key "
                         "`model.localizer.hiden` (in --grid=model.localizer."
                         "hiden=20,64); did you mean `model.localizer.hidden`?"
                         "\n")
  assert list(tmp_path.iterdir()) == []


def _write(path, text):
  path.write_text(textwrap.dedent(text))
  return str(path)


@pytest.mark.parametrize("body, args, words", [
    ("X = 1\n", [], "defines neither get_sweep(arg) nor get_hyper(h)"),
    ("def get_hyper(h):\n  return []\n", [], "no CONFIG"),
    (f"CONFIG = {BASE!r}\ndef get_hyper(h):\n  return []\n", [],
     "non-empty list"),
    (f"CONFIG = {BASE!r}\ndef get_hyper(h):\n  return h.zip([h.sweep('a', "
     "[1]), h.sweep('b', [1, 2])])\n", [], "different lengths"),
    (f"CONFIG = {BASE!r}\ndef get_hyper(h):\n  return [{{'train.lr': 1}}]\n",
     [], "unknown config key `train.lr`"),
    (f"CONFIG = {BASE!r}\ndef get_hyper(h):\n  return 1 / 0\n", [],
     "get_hyper failed: ZeroDivisionError"),
    ("import nothing_here\n", [], "fails to load: ModuleNotFoundError"),
    ("def get_sweep():\n  return [{'name': 'a', 'config': 'r,fcn', "
     "'overrides': {}}] * 2\n", [], "duplicate run names"),
    ("def get_sweep():\n  return [{'name': 'a'}]\n", [], "list of dicts"),
    ("def get_sweep():\n  return []\n", ["--grid=train.learning_rate=1"],
     "apply to grid sweeps"),
])
def test_bad_sweep_files_exit_2_naming_the_fault(tmp_path, capsys, body, args,
                                                 words):
  path = _write(tmp_path / "s.py", body)
  code, out, err = _main(capsys, f"--sweep={path}",
                         f"--workdir_root={tmp_path / 'wd'}",
                         "--print_commands", *args)
  assert code == 2 and out == []
  assert err.count("\n") == 1 and words in err


def test_other_bad_command_lines(tmp_path, capsys):
  for argv, words in [
      ([], "exactly one of --sweep"),
      ([f"--config={BASE}"], "--workdir_root is required"),
      ([f"--sweep={tmp_path}/none.py"], "no sweep config file"),
      ([f"--config={BASE}", "--seeds=0", f"--workdir_root={tmp_path}"],
       "--seeds must be >= 1"),
      (["--config=configs/distorted_mnist.py:rts,xcnn",
        f"--workdir_root={tmp_path}"], "unknown model 'xcnn'"),
      (["--config=configs/nothing.py:r,fcn", f"--workdir_root={tmp_path}"],
       "no config file"),
  ]:
    code, out, err = _main(capsys, *argv)
    assert code == 2 and err.count("\n") == 1 and words in err, (argv, err)


def test_the_example_sweep_file(tmp_path, capsys):
  code, out, _ = _main(
      capsys, "--sweep=configs/sweeps/lr_rts_st_cnn_tps_quick.py",
      f"--workdir_root={tmp_path}", "--print_commands")
  assert code == 0 and out[0] == "9 runs, 0 done, 9 to go"
  names = sorted(json.loads((tmp_path / "sweep.json").read_text())["runs"])
  assert names[0] == "rts-st_cnn-tps-quick--train.learning_rate=0.0003-s0"
  assert names[-1] == "rts-st_cnn-tps-quick--train.learning_rate=0.003-s2"
  assert all("--config=configs/distorted_mnist.py:rts,st_cnn,tps,quick" in l
             for l in out[1:])
  # --seeds and --grid add to a file's sweep.
  code, out, _ = _main(
      capsys, "--sweep=configs/sweeps/lr_rts_st_cnn_tps_quick.py",
      f"--workdir_root={tmp_path / 'b'}", "--seeds=1",
      "--grid=model.tps_regularization=0,0.1", "--print_commands")
  assert out[0] == "6 runs, 0 done, 6 to go"


# ------------------------------------------------------ the runner's loop


def test_skip_resume_and_a_failed_run_retried(tmp_path, capsys, monkeypatch):
  log = tmp_path / "trainer.log"
  monkeypatch.setenv("FAKE_TRAINER_LOG", str(log))
  monkeypatch.setenv("FAKE_TRAINER_FAIL", "learning_rate=0.003")
  argv = [f"--config={BASE}", "--grid=train.learning_rate=1e-3,3e-3",
          "--seeds=2", f"--workdir_root={tmp_path / 'wd'}", f"--trainer={FAKE}"]
  code, out, _ = _main(capsys, *argv)
  assert code == 1
  assert out[0] == "4 runs, 0 done, 4 to go"
  assert out[-1].startswith("2 runs failed: ") and "0.003-s0" in out[-1]
  failed = tmp_path / "wd" / "rts-st_cnn-tps-quick--train.learning_rate=0.003-s1"
  marker = json.loads((failed / "sweep_failed.json").read_text())
  assert marker["exit_code"] == 3
  assert "failing on purpose" in (failed / "log.txt").read_text()
  assert len(_starts(log)) == 4

  # The next runner trains only the failed runs; they now succeed.
  monkeypatch.delenv("FAKE_TRAINER_FAIL")
  code, out, _ = _main(capsys, *argv)
  assert code == 0
  assert out[0] == "4 runs, 2 done, 2 to go"
  assert sorted(_starts(log)[4:]) == [failed.name[:-1] + "0", failed.name]
  assert not (failed / "sweep_failed.json").exists()
  record = json.loads((failed / "results.json").read_text())
  assert record["overrides"]["train.learning_rate"] == "0.003"

  # Everything finished: nothing runs; the same names are found again.
  code, out, _ = _main(capsys, *argv)
  assert code == 0 and out == ["4 runs, 4 done, 0 to go"]
  assert len(_starts(log)) == 6


def test_parallel_runs_overlap(tmp_path, capsys, monkeypatch):
  log = tmp_path / "trainer.log"
  monkeypatch.setenv("FAKE_TRAINER_LOG", str(log))
  monkeypatch.setenv("FAKE_TRAINER_SLEEP", "1.5")
  sweep_file = _write(tmp_path / "s.py", """
      def get_sweep():
        return [{"name": f"run{i}", "config": "r,cnn", "overrides": {"seed": 0},
                 "group": None} for i in range(4)]
      """)
  code, out, _ = _main(capsys, f"--sweep={sweep_file}",
                       f"--workdir_root={tmp_path / 'wd'}",
                       f"--results_dir={tmp_path / 'runs'}", "--parallel=2",
                       f"--trainer={FAKE}")
  assert code == 0
  events = []
  for line in log.read_text().splitlines():
    kind, _, t, _, _ = line.split()
    events.append((float(t), 1 if kind == "start" else -1))
  running = peak = 0
  for _, delta in sorted(events):
    running += delta
    peak = max(peak, running)
  assert peak == 2
  assert sorted(os.listdir(tmp_path / "runs")) == [f"run{i}.json"
                                                   for i in range(4)]


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                    reason="needs 2 CPUs to pin 2 parallel runs")
def test_pin_cpus_gives_parallel_runs_disjoint_cpus(tmp_path, capsys,
                                                    monkeypatch):
  log = tmp_path / "trainer.log"
  monkeypatch.setenv("FAKE_TRAINER_LOG", str(log))
  monkeypatch.setenv("FAKE_TRAINER_SLEEP", "1.0")
  sweep_file = _write(tmp_path / "s.py", """
      def get_sweep():
        return [{"name": f"run{i}", "config": "r,cnn", "overrides": {"seed": 0},
                 "group": None} for i in range(3)]
      """)
  code, out, _ = _main(capsys, f"--sweep={sweep_file}",
                       f"--workdir_root={tmp_path / 'wd'}",
                       f"--results_dir={tmp_path / 'runs'}", "--parallel=2",
                       "--pin_cpus", f"--trainer={FAKE}")
  assert code == 0
  slots = sweep.cpu_slots(2)
  starts = {}
  for line in log.read_text().splitlines():
    kind, workdir, t, _, cpus = line.split()
    if kind == "start":
      starts[os.path.basename(workdir)] = (float(t),
                                           [int(c) for c in cpus.split(",")])
  assert sorted(starts) == ["run0", "run1", "run2"]
  assert all(cpus in slots for _, cpus in starts.values())
  # The first two ran at once, on the two slots; the third reused a slot.
  assert starts["run0"][1] != starts["run1"][1]
  assert any(f"on CPUs {','.join(map(str, slots[0]))}:" in line
             for line in out)


def test_cpu_slots_split_the_cpus_evenly_and_refuse_too_many(monkeypatch):
  monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {5, 1, 2, 7, 3})
  assert sweep.cpu_slots(2) == [[1, 2, 3], [5, 7]]
  assert sweep.cpu_slots(5) == [[1], [2], [3], [5], [7]]
  with pytest.raises(ValueError, match=r"--parallel=6, but .* 5"):
    sweep.cpu_slots(6)


@pytest.mark.parametrize("args, message", [
    (["--parallel=4096", "--pin_cpus"], "--pin_cpus needs at least one CPU"),
    (["--pin_cpus", "--launcher=slurm"], "--pin_cpus works with"),
])
def test_pin_cpus_bad_combinations_exit_with_one_line(tmp_path, capsys, args,
                                                      message):
  with pytest.raises(SystemExit) as e:
    sweep.main(["--config=configs/distorted_mnist.py:r,fcn,smoke",
                f"--workdir_root={tmp_path}", *args])
  assert e.value.code == 2 and message in capsys.readouterr().err


def test_a_group_trains_its_seeds_in_one_process(tmp_path, capsys,
                                                 monkeypatch):
  log = tmp_path / "trainer.log"
  monkeypatch.setenv("FAKE_TRAINER_LOG", str(log))
  code, out, _ = _main(capsys, "--config=configs/distorted_mnist.py:r,fcn,smoke",
                       "--grid=train.learning_rate=1e-3", "--seeds=3",
                       f"--workdir_root={tmp_path / 'wd'}", f"--trainer={FAKE}")
  assert code == 0
  pids = {l.split()[3] for l in log.read_text().splitlines()}
  assert len(pids) == 1 and len(_starts(log)) == 3
  for s in range(3):
    record = json.loads((tmp_path / "wd" / f"r-fcn-smoke--train.learning_rate="
                         f"0.001-s{s}" / "results.json").read_text())
    assert record["seed"] == s and record["seeds_in_step"] == 3


# -------------------------------------------------------------------- locks


def test_a_locked_run_is_skipped_and_the_lock_dies_with_its_holder(tmp_path):
  workdir = str(tmp_path / "run")
  fd = sweep.try_lock(workdir)
  assert fd is not None and sweep.is_locked(workdir)
  probe = ("import sys; from experiments import sweep; "
           "print(sweep.try_lock(sys.argv[1]) is None)")
  held = subprocess.run([sys.executable, "-c", probe, workdir], cwd=ROOT,
                        capture_output=True, text=True, check=True)
  assert held.stdout.strip() == "True"
  sweep.release([fd])
  assert not sweep.is_locked(workdir)
  # A holder killed with SIGKILL releases the lock (the kernel closes it).
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from experiments import sweep;"
       " assert sweep.try_lock(sys.argv[1]) is not None; print('held', "
       "flush=True); time.sleep(60)", workdir], cwd=ROOT,
      stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  assert sweep.is_locked(workdir)
  holder.kill()
  holder.wait()
  assert not sweep.is_locked(workdir)


def _runner(tmp_path, sweep_file, log, sleep, *extra):
  env = dict(os.environ, FAKE_TRAINER_LOG=str(log),
             FAKE_TRAINER_SLEEP=str(sleep))
  return subprocess.Popen(
      [sys.executable, "-m", "experiments.sweep", f"--sweep={sweep_file}",
       f"--workdir_root={tmp_path / 'wd'}",
       f"--results_dir={tmp_path / 'runs'}", f"--trainer={FAKE}", *extra],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def test_two_runners_never_train_the_same_run(tmp_path):
  log = tmp_path / "trainer.log"
  sweep_file = _write(tmp_path / "s.py", """
      def get_sweep():
        return [{"name": f"run{i}", "config": "r,cnn", "overrides": {"seed": 0},
                 "group": None} for i in range(4)]
      """)
  first = _runner(tmp_path, sweep_file, log, 2.0)
  second = _runner(tmp_path, sweep_file, log, 2.0)
  out = [p.communicate(timeout=60)[0] for p in (first, second)]
  assert first.returncode == 0 and second.returncode == 0, out
  starts = _starts(log)
  assert sorted(starts) == [f"run{i}" for i in range(4)]  # Each once.
  assert "locked by another runner" in out[0] + out[1]
  # Both runners trained: the second took the runs the first held.
  assert "start run" in out[0] and "start run" in out[1]
  assert sorted(os.listdir(tmp_path / "runs")) == [f"run{i}.json"
                                                   for i in range(4)]


def test_a_killed_runner_leaves_nothing_that_blocks_the_next(tmp_path):
  log = tmp_path / "trainer.log"
  sweep_file = _write(tmp_path / "s.py", """
      def get_sweep():
        return [{"name": "run0", "config": "r,cnn", "overrides": {"seed": 0},
                 "group": None}]
      """)
  runner = _runner(tmp_path, sweep_file, log, 60)
  deadline = time.time() + 30
  while not _starts(log) and time.time() < deadline:
    time.sleep(0.1)
  assert _starts(log) == ["run0"]
  trainer_pid = int(log.read_text().split()[3])
  workdir = str(tmp_path / "wd" / "run0")
  assert sweep.is_locked(workdir)
  runner.send_signal(signal.SIGKILL)
  runner.communicate(timeout=30)
  # The trainer dies with its runner, and the lock with both.
  deadline = time.time() + 10
  while time.time() < deadline:
    try:
      os.kill(trainer_pid, 0)
    except ProcessLookupError:
      break
    time.sleep(0.1)
  else:
    pytest.fail("the trainer outlived its killed runner")
  assert not sweep.is_locked(workdir)
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  # The next runner trains (resumes) the run.
  again = _runner(tmp_path, sweep_file, log, 0)
  out = again.communicate(timeout=60)[0]
  assert again.returncode == 0, out
  assert "1 runs, 0 done, 1 to go" in out
  assert os.path.exists(os.path.join(workdir, "results.json"))


def test_sigterm_stops_the_runner_and_its_trainer_cleanly(tmp_path):
  log = tmp_path / "trainer.log"
  sweep_file = _write(tmp_path / "s.py", """
      def get_sweep():
        return [{"name": f"run{i}", "config": "r,cnn", "overrides": {"seed": i},
                 "group": None} for i in range(2)]
      """)
  runner = _runner(tmp_path, sweep_file, log, 60)
  deadline = time.time() + 30
  while not _starts(log) and time.time() < deadline:
    time.sleep(0.1)
  assert _starts(log) == ["run0"]
  runner.send_signal(signal.SIGTERM)
  out = runner.communicate(timeout=30)[0]
  # The signal reached the trainer, nothing more started, and the stopped
  # run is resumable, not failed.
  assert runner.returncode == 128 + signal.SIGTERM, out
  stopped = [l.split()[1] for l in log.read_text().splitlines()
             if l.startswith("stopped")]
  assert [os.path.basename(w) for w in stopped] == ["run0"]
  assert _starts(log) == ["run0"]
  assert "stopped (checkpointed) run0" in out
  assert "1 runs stopped by SIGTERM" in out
  workdir = str(tmp_path / "wd" / "run0")
  assert not os.path.exists(os.path.join(workdir, sweep.FAILED_NAME))
  assert not sweep.is_locked(workdir)
  again = _runner(tmp_path, sweep_file, log, 0)
  out = again.communicate(timeout=60)[0]
  assert again.returncode == 0, out
  assert "2 runs, 0 done, 2 to go" in out
  assert _starts(log) == ["run0", "run0", "run1"]


# ------------------------------------------------------------------ submitit


def test_submitit_local_executor_runs_the_same_rules(tmp_path, capsys,
                                                     monkeypatch):
  pytest.importorskip("submitit")
  log = tmp_path / "trainer.log"
  monkeypatch.setenv("FAKE_TRAINER_LOG", str(log))
  root = tmp_path / "wd"
  argv = ["--config=configs/distorted_mnist.py:r,cnn,smoke",
          "--grid=train.learning_rate=1e-3,3e-3", "--seeds=2",
          f"--workdir_root={root}", f"--trainer={FAKE}",
          "--launcher=submitit_local", "--slurm_time=5"]
  # A run already finished and a run another runner holds are not submitted.
  done = root / "r-cnn-smoke--train.learning_rate=0.001-s0"
  done.mkdir(parents=True)
  (done / "results.json").write_text("{}")
  fd = sweep.try_lock(str(root / "r-cnn-smoke--train.learning_rate=0.001-s1"))
  try:
    code, out, _ = _main(capsys, *argv)
  finally:
    sweep.release([fd])
  assert code == 0, out
  assert out[0] == "4 runs, 1 done, 3 to go"
  assert "skip r-cnn-smoke--train.learning_rate=0.001-s1: locked by another " \
         "runner" in out
  assert sum(l.startswith("submitted ") for l in out) == 2
  assert sum(l.startswith("done ") for l in out) == 2
  assert sorted(_starts(log)) == [
      "r-cnn-smoke--train.learning_rate=0.003-s0",
      "r-cnn-smoke--train.learning_rate=0.003-s1"]
  assert os.listdir(root / "submitit")
  # Re-running submits only what is left.
  code, out, _ = _main(capsys, *argv)
  assert code == 0 and out[0] == "4 runs, 3 done, 1 to go"
  assert len(_starts(log)) == 3
  code, out, _ = _main(capsys, *argv)
  assert out == ["4 runs, 4 done, 0 to go"]


def test_submitit_failed_job_is_reported(tmp_path, capsys, monkeypatch):
  pytest.importorskip("submitit")
  monkeypatch.setenv("FAKE_TRAINER_FAIL", "s1")
  code, out, _ = _main(capsys, "--config=configs/distorted_mnist.py:r,cnn,smoke",
                       "--seeds=2", f"--workdir_root={tmp_path}",
                       f"--trainer={FAKE}", "--launcher=submitit_local")
  assert code == 1
  assert out[-1] == "1 runs failed: ['r-cnn-smoke-s1']"
  assert (tmp_path / "r-cnn-smoke-s1" / "sweep_failed.json").exists()


def test_slurm_parameters():
  from experiments import launchers  # pylint: disable=g-import-not-at-top
  args = sweep.build_parser().parse_args([
      f"--config={BASE}", "--launcher=slurm", "--slurm_partition=gpu",
      "--slurm_time=90", "--slurm_gpus_per_run=1", "--slurm_cpus_per_run=8"])
  assert launchers.executor_parameters(args, 5) == {
      "name": "stn_sweep", "timeout_min": 90, "nodes": 1, "tasks_per_node": 1,
      "cpus_per_task": 8, "slurm_array_parallelism": 5, "gpus_per_node": 1,
      "slurm_partition": "gpu"}


# ---------------------------------------------------- end to end on MNIST

needs_mnist = pytest.mark.skipif(not os.environ.get("STN_JAX_MNIST_DIR"),
                                 reason="STN_JAX_MNIST_DIR is not set")


@needs_mnist
@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("launcher", ["local", "submitit_local"])
def test_smoke_sweep_on_mnist_and_its_report(tmp_path, launcher):
  if launcher == "submitit_local":
    pytest.importorskip("submitit")
  root = tmp_path / "sweep"
  cmd = [sys.executable, "-m", "experiments.sweep",
         "--config=configs/distorted_mnist.py:r,fcn,smoke",
         "--grid=train.learning_rate=1e-3,3e-3", "--seeds=2",
         f"--workdir_root={root}", "--parallel=2", f"--launcher={launcher}"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                        timeout=600)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  assert "4 runs, 0 done, 4 to go" in proc.stdout
  for lr in ("0.001", "0.003"):
    for seed in (0, 1):
      record = json.loads((root / f"r-fcn-smoke--train.learning_rate={lr}-"
                           f"s{seed}" / "results.json").read_text())
      assert record["seed"] == seed and record["seeds_in_step"] == 2
      assert record["config"]["train"]["learning_rate"] == float(lr)
  again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
  assert again.stdout.strip().splitlines() == ["4 runs, 4 done, 0 to go"]
  report = subprocess.run([sys.executable, "-m", "experiments.sweep_report",
                           f"--workdir_root={root}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert report.returncode == 0, report.stderr
  rows = (root / "summary.csv").read_text().splitlines()
  assert rows[0] == ("train.learning_rate,seed,status,test_error,wall_time_s,"
                     "examples_per_s,num_params,name")
  assert len(rows) == 5 and all(",done," in r for r in rows[1:])
  assert "**best**" in (root / "summary.md").read_text()
  assert (root / "summary.png").stat().st_size > 1000
