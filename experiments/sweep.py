r"""Runs a sweep of `stn_jax.main` training runs, resumably.

Three ways to say what to run:

    # A grid over any config keys (values parsed to each key's type):
    python -m experiments.sweep --config=configs/distorted_mnist.py:rts,st_cnn,tps,quick \
        --grid=train.learning_rate=3e-4,1e-3,3e-3 --grid=model.localizer.hidden=20,64 \
        --seeds=3 --workdir_root=sweeps/lr_loc
    # A sweep file with get_hyper(h) (configs/sweeps/*.py, experiments/sweep_grid.py):
    python -m experiments.sweep --sweep=configs/sweeps/lr_rts_st_cnn_tps_quick.py
    # A sweep file with get_sweep(arg), a list of runs (the Table-1 sweep):
    python -m experiments.sweep --sweep=configs/table1.py:quick \
        --workdir_root=workdirs/table1 --results_dir=results/runs --parallel=1

then `python -m experiments.sweep_report --workdir_root=sweeps/lr_loc`.

* `get_sweep(arg)` files (`configs/table1.py`, `configs/ablations.py`) give a
  list of {"name", "config", "overrides", "group"}. Grid sweeps (`--config`
  with `--grid`, or a file with `get_hyper(h)`) make their runs with
  `experiments.sweep_grid`: names such as
  `rts-st_cnn-tps-quick--train.learning_rate=0.001-s0`, stable, so that
  re-running the same command finds the same workdirs. A grid sweep checks
  every key, value and setting (types, then `stn_jax.train.validate_config`)
  before anything runs: a mistake prints one line and exits with status 2.
  It records its definition in `<workdir_root>/sweep.json` (merged with the
  runs already there), which `experiments.sweep_report` reads.
* Each run trains in `<workdir_root>/<name>` as its own process. A run is
  done when its workdir holds a `results.json` (it finished); the others
  train, an interrupted one resuming from its latest checkpoint, because
  `stn_jax.main` always resumes from its workdir. Records already in
  `--results_dir` (e.g. the committed `results/runs/*.json`) do NOT count as
  done unless `--reuse_results` is given: on a fresh clone the sweep trains
  every run.
* A finished run's `results.json` is copied to `<results_dir>/<name>.json`
  (when that record is missing or older than the workdir's), so nothing
  finished is lost. `get_sweep` files default to `results/runs`; grid sweeps
  copy nowhere unless `--results_dir` is given.
* Locks: while a run trains, its runner holds an exclusive `fcntl.flock` on
  `<workdir>/sweep.lock` (the training process holds it too). Another runner
  on the same sweep (a second terminal, another task of a job array) finds
  it locked, skips that run and goes on with the next, so no run is trained
  twice at once. The kernel releases the lock when its holders die, so a
  killed runner blocks nothing. (flock works across hosts on NFSv4; Lustre
  needs the `flock` mount option.) A run that failed gets
  `<workdir>/sweep_failed.json` (exit status, log), is reported, makes the
  runner exit with status 1, and is tried again by the next runner.
* The runner survives being killed: its children die with it (Linux
  PR_SET_PDEATHSIG), and running it again picks up where it stopped.
  SIGTERM stops it cleanly (the local launcher): it starts nothing more,
  passes the signal to its running trainers, which checkpoint the step
  under way (`stn_jax.stop_signal`), waits for them and exits with status
  143; their runs are "stopped", not failed, and resume from that step.
* Runs of one "group" (the seeds of a setting whose model trains faster with
  its seeds vmapped: `configs/table1.py`'s VMAP_SEEDS_MODELS, the FCN
  family) that are still pending train as one process,
  `stn_jax.main --seeds=...`, each seed in its own workdir.
* `--parallel=N` trains N jobs at once; with `--pin_cpus` each of the N
  slots keeps its processes to its own share of the runner's CPUs
  (`sched_setaffinity`; XLA sizes its thread pool from that affinity), so
  parallel runs never compete for a core: `--parallel=2 --pin_cpus` on two
  cores is one single-threaded run per core.
* `--print_commands` prints one shell command per pending job instead, for
  a scheduler of your own; `--launcher=slurm` submits one SLURM job-array
  task per job through submitit (`experiments/launchers.py`), with the same
  skip, lock and resume rules.
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time

from experiments import sweep_grid
from stn_jax import stderr_capture
from stn_jax import stop_signal

_PR_SET_PDEATHSIG = 1
PROG = "experiments.sweep"
LOCK_NAME = "sweep.lock"  # In each run's workdir.
FAILED_NAME = "sweep_failed.json"  # In a failed run's workdir.
SWEEP_JSON = "sweep.json"  # In the workdir root of a grid sweep.
DEFAULT_TRAINER = "stn_jax.main"
# A trainer's exit status after a clean stop on SIGTERM (stn_jax.main), and
# the status when it died of the signal before it could catch it.
STOPPED_EXIT_CODES = (128 + signal.SIGTERM, -signal.SIGTERM)


def load_sweep(spec: str) -> list[dict]:
  """Loads `path.py[:arg]` and returns its `get_sweep(arg)`."""
  path, _, arg = spec.partition(":")
  module = _load_module(path, "--sweep")
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"--sweep: {path!r} defines no get_sweep(arg).")
  runs = module.get_sweep(arg) if arg else module.get_sweep()
  return check_runs(runs, path)


def check_runs(runs, path: str) -> list[dict]:
  """Checks a list of runs: fields, unique names, group naming."""
  if not isinstance(runs, list) or not all(isinstance(r, dict) and {
      "name", "config", "overrides"} <= set(r) for r in runs):
    raise ValueError(f"--sweep: {path!r}: get_sweep must return a list of "
                     "dicts with keys name, config, overrides (and group).")
  names = [r["name"] for r in runs]
  if len(set(names)) != len(names):
    raise ValueError(f"--sweep: {path!r} gives duplicate run names.")
  for r in runs:
    group = r.get("group")
    if group is not None and r["name"] != f"{group}-s{r['overrides']['seed']}":
      raise ValueError(f"--sweep: run {r['name']!r} of group {group!r} must "
                       f"be named '<group>-s<seed>'.")
  return runs


def _load_module(path: str, flag: str):
  if not os.path.isfile(path):
    raise ValueError(f"{flag}: no sweep config file at {path!r}.")
  module_spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"{flag}: {path!r} fails to load: "
                     f"{type(e).__name__}: {e}") from None
  return module


# ----------------------------------------------------------- grid sweeps


def grid_definition(config_spec: str, settings: list, seeds: int,
                    where: str) -> dict:
  """The runs of a grid sweep, every setting checked before anything runs.

  Args:
    config_spec: "configs/distorted_mnist.py:<arg>".
    settings: override dicts (values typed, or strings from --grid already
      parsed by sweep_grid.parse_grid).
    seeds: seeds 0..seeds-1 per setting.
    where: the flag or file named in errors.

  Returns:
    {"config_file", "config", "keys", "settings", "runs"}.
  """
  from configs import table1  # pylint: disable=g-import-not-at-top
  config_file, config_arg = sweep_grid.split_config_spec(config_spec)
  config = sweep_grid.load_config(config_spec)
  settings = sweep_grid.check_settings(config, settings, where)
  with stderr_capture.HeldStderr():  # TensorFlow's start-up notes, printed at import.
    from stn_jax import train  # pylint: disable=g-import-not-at-top
  models = {}
  for i, s in enumerate(settings):
    cfg = sweep_grid.apply_overrides(config, s)
    try:
      train.validate_config(cfg)
    except ValueError as e:
      raise sweep_grid.SweepError(
          f"{where}: setting {sweep_grid.describe(s)}: {e}") from None
    models[i] = cfg.model.name
  runs = sweep_grid.build_runs(config_arg, settings, seeds, model=models,
                               vmap_seeds_models=table1.VMAP_SEEDS_MODELS)
  keys = sorted({k for s in settings for k in s})
  return {"config_file": config_file, "config": config_arg, "keys": keys,
          "seeds": seeds, "runs": runs}


def load_hyper_file(spec: str, grids, seeds):
  """A sweep file with `get_hyper(h)` -> (config spec, settings, seeds)."""
  path, _, arg = spec.partition(":")
  module = _load_module(path, "--sweep")
  if not hasattr(module, "CONFIG"):
    raise sweep_grid.SweepError(
        f"--sweep: {path!r} defines get_hyper but no CONFIG (e.g. "
        "CONFIG = 'configs/distorted_mnist.py:rts,st_cnn,tps,quick').")
  try:
    settings = (module.get_hyper(sweep_grid, arg) if arg
                else module.get_hyper(sweep_grid))
  except sweep_grid.SweepError as e:
    raise sweep_grid.SweepError(f"--sweep: {path!r}: {e}") from None
  except Exception as e:  # pylint: disable=broad-except
    raise sweep_grid.SweepError(f"--sweep: {path!r}: get_hyper failed: "
                                f"{type(e).__name__}: {e}") from None
  if not isinstance(settings, list) or not settings:
    raise sweep_grid.SweepError(f"--sweep: {path!r}: get_hyper must return a "
                                "non-empty list of override dicts.")
  if seeds is None:
    seeds = getattr(module, "SEEDS", 1)
  config_spec = module.CONFIG
  if grids:
    config = sweep_grid.load_config(config_spec)
    extra = sweep_grid.parse_grid(config, grids)
    settings = sweep_grid.product([settings, extra])
  return config_spec, settings, seeds


def record_sweep(workdir_root: str, definition: dict, results_dir) -> None:
  """Merges a grid sweep's runs into `<workdir_root>/sweep.json`.

  The file lists every run ever swept into this root (several commands may
  share one root): {"keys", "config_file", "results_dir", "runs": {name:
  {"config", "setting", "overrides", "seed", "group"}}}. Read-modify-write
  under a lock on `sweep.json.lock`, so two runners starting together do not
  lose each other's runs.
  """
  os.makedirs(workdir_root, exist_ok=True)
  path = os.path.join(workdir_root, SWEEP_JSON)
  with open(path + ".lock", "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    data = {"runs": {}}
    if os.path.exists(path):
      with open(path) as f:
        data = json.load(f)
    keys = set(data.get("keys", [])) | set(definition["keys"])
    data["keys"] = sorted(keys)
    data["config_file"] = definition["config_file"]
    if results_dir:
      data["results_dir"] = results_dir
    for run in definition["runs"]:
      overrides = {k: v for k, v in run["overrides"].items() if k != "seed"}
      data["runs"][run["name"]] = {
          "config": run["config"], "setting": run["setting"],
          "overrides": overrides, "seed": run["overrides"]["seed"],
          "group": run["group"]}
    with open(path + ".tmp", "w") as f:
      json.dump(data, f, indent=1, sort_keys=True)
      f.write("\n")
    os.replace(path + ".tmp", path)


# --------------------------------------------------------------- commands


def report_outcome(locked: list, failed: list, stopped: tuple = ()) -> int:
  """Prints the runs skipped (locked by another runner), failed and stopped;
  the exit status: 1 if any run failed or stopped, else 0."""
  if locked:
    print(f"{len(locked)} runs skipped (training in another runner): "
          f"{locked}", flush=True)
  if stopped:
    print(f"{len(stopped)} runs stopped by SIGTERM (checkpointed; the same "
          f"command resumes them): {list(stopped)}", flush=True)
  if failed:
    print(f"{len(failed)} runs failed: {failed}", flush=True)
  return 1 if failed or stopped else 0


def make_jobs(pending: list) -> list[list]:
  """Pending `(run, workdir)` pairs -> jobs: lists of runs trained together.

  Runs of one group form one job (seed order); the others one job each.
  """
  jobs, groups = [], {}
  for run, workdir in pending:
    group = run.get("group")
    if group is None:
      jobs.append([(run, workdir)])
    elif group in groups:
      groups[group].append((run, workdir))
    else:
      groups[group] = [(run, workdir)]
      jobs.append(groups[group])
  return jobs


def run_command(run: dict, workdir: str,
                config_file: str = "configs/distorted_mnist.py",
                trainer: str = DEFAULT_TRAINER) -> list[str]:
  """The argv that trains `run` in `workdir`."""
  argv = [sys.executable, "-m", trainer,
          f"--config={config_file}:{run['config']}", f"--workdir={workdir}"]
  argv += [f"--config.{k}={v}" for k, v in sorted(run["overrides"].items())]
  return argv


def job_command(job: list, workdir_root: str,
                config_file: str = "configs/distorted_mnist.py",
                trainer: str = DEFAULT_TRAINER) -> list[str]:
  """The argv that trains a job (one run, or a group's seeds vmapped)."""
  run, workdir = job[0]
  if len(job) == 1:
    return run_command(run, workdir, config_file, trainer)
  seeds = [r["overrides"]["seed"] for r, _ in job]
  template = os.path.join(workdir_root, run["group"] + "-s{seed}")
  argv = [sys.executable, "-m", trainer,
          f"--config={config_file}:{run['config']}", f"--workdir={template}",
          "--seeds=" + ",".join(str(s) for s in seeds)]
  argv += [f"--config.{k}={v}" for k, v in sorted(run["overrides"].items())
           if k != "seed"]
  return argv


def _die_with_parent():
  """Runs in the child: ask the kernel to SIGKILL it if the runner dies."""
  try:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
  except OSError:
    pass  # not Linux: children may outlive a killed runner.


def cpu_slots(parallel: int) -> list:
  """This process's CPUs split into `parallel` disjoint sets (sorted lists of
  core ids, contiguous, sizes differing by at most one), one per run slot.

  Raises:
    ValueError: fewer CPUs than `parallel`.
  """
  cores = sorted(os.sched_getaffinity(0))
  if parallel > len(cores):
    raise ValueError(f"--pin_cpus needs at least one CPU per run: "
                     f"--parallel={parallel}, but this process may use "
                     f"{len(cores)} ({cores})")
  size, extra = divmod(len(cores), parallel)
  slots, start = [], 0
  for i in range(parallel):
    end = start + size + (1 if i < extra else 0)
    slots.append(cores[start:end])
    start = end
  return slots


def _child_setup(cpus):
  """The child's `preexec_fn`: die with the runner; keep to `cpus` if given
  (XLA sizes its thread pool from the affinity it starts with)."""
  def setup():
    _die_with_parent()
    if cpus is not None:
      os.sched_setaffinity(0, cpus)
  return setup


def collect(run: dict, workdir: str, results_dir, *,
            reuse_results: bool = False) -> bool:
  """Whether `run` is done; copies a finished run's record to `results_dir`.

  A run is done when `workdir/results.json` exists; it is then copied to
  `<results_dir>/<name>.json` unless that file is already newer than it (a
  record edited or collected after the run stays as it is). With
  `reuse_results`, a record already in `results_dir` also counts as done
  (without a workdir). `results_dir` None: nothing is copied.
  """
  source = os.path.join(workdir, "results.json")
  if results_dir is None:
    return os.path.exists(source)
  target = os.path.join(results_dir, f"{run['name']}.json")
  if os.path.exists(source):
    if not os.path.exists(target) or (
        os.path.getmtime(source) > os.path.getmtime(target) and
        not _same_bytes(source, target)):
      os.makedirs(results_dir, exist_ok=True)
      shutil.copyfile(source, target + ".tmp")
      os.replace(target + ".tmp", target)
    return True
  return reuse_results and os.path.exists(target)


def _same_bytes(a: str, b: str) -> bool:
  with open(a, "rb") as fa, open(b, "rb") as fb:
    return fa.read() == fb.read()


# ------------------------------------------------------------------ locks


def try_lock(workdir: str):
  """An fd holding an exclusive flock on `<workdir>/sweep.lock`, or None
  when another process holds it. The lock file is never deleted (deleting
  it would let two runners lock two different files)."""
  os.makedirs(workdir, exist_ok=True)
  fd = os.open(os.path.join(workdir, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    return None
  os.ftruncate(fd, 0)  # Who holds it, for a person looking.
  os.write(fd, f"{socket.gethostname()} pid {os.getpid()}\n".encode())
  return fd


def lock_job(job: list):
  """Locks every workdir of `job`: a list of fds, or None (none held) when
  any is locked by someone else."""
  fds = []
  for _, workdir in job:
    fd = try_lock(workdir)
    if fd is None:
      release(fds)
      return None
    fds.append(fd)
  return fds


def release(fds) -> None:
  for fd in fds:
    os.close(fd)  # Closing the last fd of the open file releases the flock.


def is_locked(workdir: str) -> bool:
  """Whether a process holds `<workdir>/sweep.lock` (a run training now)."""
  path = os.path.join(workdir, LOCK_NAME)
  if not os.path.exists(path):
    return False
  fd = os.open(path, os.O_RDONLY)
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    return False
  except BlockingIOError:
    return True
  finally:
    os.close(fd)


# ------------------------------------------------------------------- jobs


def start_job(job: list, ctx: dict, cpus=None):
  """Locks `job`, re-checks it under the lock and starts its process.

  Args:
    job: [(run, workdir)] (one run, or the pending seeds of a group).
    ctx: {"workdir_root", "config_file", "trainer", "results_dir"}.
    cpus: core ids the process is restricted to, or None (not pinned).

  Returns:
    ("locked", names) when another runner holds a lock; ("done", names)
    when every run finished meanwhile; else ("started", handle) with
    handle = (proc, job, fds, log, log_path, start time).
  """
  names = [run["name"] for run, _ in job]
  fds = lock_job(job)
  if fds is None:
    return "locked", names
  # Another runner may have finished some runs since the pending list was
  # made: only the rest train.
  todo = [(r, w) for r, w in job if not collect(r, w, ctx["results_dir"])]
  if not todo:
    release(fds)
    return "done", names
  for _, workdir in todo:
    marker = os.path.join(workdir, FAILED_NAME)
    if os.path.exists(marker):
      os.remove(marker)
  log_path = os.path.join(todo[0][1], "log.txt")
  log = open(log_path, "ab")
  cmd = job_command(todo, ctx["workdir_root"], ctx["config_file"],
                    ctx["trainer"])
  where = "" if cpus is None else f" on CPUs {','.join(map(str, cpus))}"
  print(f"start {', '.join(r['name'] for r, _ in todo)}{where}: "
        f"{shlex.join(cmd)}", flush=True)
  # The child holds the locks too (pass_fds): they last while it trains.
  proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                          preexec_fn=_child_setup(cpus), pass_fds=tuple(fds),
                          cwd=ctx.get("cwd"))
  return "started", (proc, todo, fds, log, log_path, time.time())


def finish_job(handle, ctx: dict) -> dict:
  """Collects a finished job's records (or marks its runs failed), releases
  its locks; returns {"names", "status": "done" | "stopped" | "failed",
  "exit_code", "log", "seconds"}. "stopped": the trainer stopped on SIGTERM
  (`STOPPED_EXIT_CODES`); its runs get no failure marker and resume."""
  proc, job, fds, log, log_path, start = handle
  log.close()
  try:
    done = proc.returncode == 0 and all(
        [collect(run, workdir, ctx["results_dir"]) for run, workdir in job])
    stopped = not done and proc.returncode in STOPPED_EXIT_CODES
    if not done and not stopped:
      for run, workdir in job:
        with open(os.path.join(workdir, FAILED_NAME), "w") as f:
          json.dump({"exit_code": proc.returncode, "log": log_path,
                     "time": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
  finally:
    release(fds)
  seconds = time.time() - start
  names = [run["name"] for run, _ in job]
  status = "done" if done else "stopped" if stopped else "failed"
  shown = {"done": "done", "stopped": "stopped (checkpointed)",
           "failed": f"FAILED (exit {proc.returncode})"}[status]
  print(f"{shown} {', '.join(names)} after {seconds:.0f} s; log: {log_path}",
        flush=True)
  return {"names": names, "status": status, "exit_code": proc.returncode,
          "log": log_path, "seconds": seconds}


def run_job_blocking(job: list, ctx: dict) -> dict:
  """Trains one job to its end in this process (a submitit task): the same
  lock, skip and collect rules as the local runner. Returns finish_job's
  dict, or {"names", "status": "locked" | "done"}."""
  if ctx.get("cwd"):
    os.chdir(ctx["cwd"])
  state, value = start_job(job, ctx)
  if state != "started":
    print(f"{state}: {', '.join(value)}", flush=True)
    return {"names": value, "status": state}
  value[0].wait()
  return finish_job(value, ctx)


def run_local(jobs: list, ctx: dict, parallel: int, *,
              pin_cpus: bool = False) -> int:
  """Trains `jobs`, `parallel` at a time; returns the exit status (1 when a
  run failed or stopped; 143 when SIGTERM stopped this runner). With
  `pin_cpus`, each of the `parallel` slots keeps its runs to its own share
  of the CPUs (`cpu_slots`). On SIGTERM it starts no more jobs, passes the
  signal to the running trainers and waits for them (they checkpoint)."""
  free = cpu_slots(parallel) if pin_cpus else [None] * parallel
  running = []  # (handle, cpus)
  failed, locked, stopped = [], [], []
  queue = list(jobs)
  forwarded = False
  with stop_signal.StopOnSignal() as stop:
    while queue or running:
      if stop.requested is not None and not forwarded:
        queue, forwarded = [], True
        for (proc, *_), _ in running:
          proc.send_signal(stop.requested)
      while queue and len(running) < parallel:
        cpus = free.pop(0)
        state, value = start_job(queue.pop(0), ctx, cpus)
        if state == "started":
          running.append((value, cpus))
          continue
        free.insert(0, cpus)
        if state == "locked":
          print(f"skip {', '.join(value)}: locked by another runner",
                flush=True)
          locked.extend(value)
        else:
          print(f"done {', '.join(value)} (finished by another runner)",
                flush=True)
      time.sleep(0.2 if running else 0.0)
      for handle, cpus in [r for r in running if r[0][0].poll() is not None]:
        running.remove((handle, cpus))
        free.append(cpus)
        result = finish_job(handle, ctx)
        if result["status"] == "failed":
          failed.extend(result["names"])
        elif result["status"] == "stopped":
          stopped.extend(result["names"])
  status = report_outcome(locked, failed, stopped)
  if stop.requested is not None:
    print(f"{PROG}: stopped by {signal.Signals(stop.requested).name}; the "
          "same command resumes the sweep", flush=True)
    return 128 + stop.requested
  return status


# ------------------------------------------------------------ command line


class _OneLineParser(argparse.ArgumentParser):
  """argparse whose errors are one line: `experiments.sweep: error: ...`."""

  def error(self, message):
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr,
          flush=True)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
  """The command line (every flag with a help string)."""
  parser = _OneLineParser(prog=f"python -m {PROG}",
                          description=__doc__.splitlines()[0])
  parser.add_argument("--sweep", default=None,
                      help="sweep file [and argument]: a get_sweep(arg) file "
                      "(configs/table1.py:quick, configs/ablations.py:rts) or "
                      "a get_hyper(h) file (configs/sweeps/*.py)")
  parser.add_argument("--config", default=None,
                      help="config file and argument of a grid sweep, e.g. "
                      "configs/distorted_mnist.py:rts,st_cnn,tps,quick")
  parser.add_argument("--grid", action="append", default=[],
                      metavar="KEY=V1,V2,...",
                      help="a config key and its values (repeatable: the "
                      "product), parsed to the key's type: "
                      "--grid=train.learning_rate=3e-4,1e-3 "
                      "--grid=model.classifier.filters=(16,32),(32,64)")
  parser.add_argument("--seeds", type=int, default=None,
                      help="seeds 0..N-1 of every setting of a grid sweep "
                      "(default: the file's SEEDS, else 1)")
  parser.add_argument("--workdir_root", default=None,
                      help="each run trains (and resumes) in "
                      "<workdir_root>/<run name> (default: workdirs/table1 "
                      "for get_sweep files, workdirs/sweeps/<file name> for "
                      "get_hyper files; required with --config)")
  parser.add_argument("--results_dir", default=None,
                      help="each finished run's results.json is copied to "
                      "<results_dir>/<run name>.json (default: results/runs "
                      "for get_sweep files; grid sweeps copy nowhere)")
  parser.add_argument("--reuse_results", action="store_true",
                      help="count a run as done when its record is already "
                      "in --results_dir (e.g. the committed results/runs), "
                      "without training it; by default only a results.json "
                      "in its workdir makes a run done")
  parser.add_argument("--parallel", type=int, default=1,
                      help="runs trained at the same time by the local "
                      "launcher (default: %(default)s)")
  parser.add_argument("--pin_cpus", action="store_true",
                      help="local launcher: split this process's CPUs into "
                      "--parallel disjoint sets and keep each run to one "
                      "(XLA then sizes its thread pool to that set), so "
                      "parallel runs never compete for a core")
  parser.add_argument("--print_commands", action="store_true",
                      help="print one shell command per pending run and exit "
                      "(trains nothing)")
  parser.add_argument("--trainer", default=DEFAULT_TRAINER,
                      help="module each run executes as `python -m MODULE "
                      "--config=... --workdir=...` (default: %(default)s; "
                      "the tests pass a fake trainer)")
  parser.add_argument("--launcher", default="local",
                      choices=("local", "slurm", "submitit_local"),
                      help="local: train here; slurm: submit one job-array "
                      "task per job through submitit; submitit_local: the "
                      "same through submitit's local executor (default: "
                      "%(default)s)")
  parser.add_argument("--slurm_partition", default=None,
                      help="SLURM partition (--launcher=slurm)")
  parser.add_argument("--slurm_time", type=int, default=60,
                      help="time limit per job in minutes (default: "
                      "%(default)s)")
  parser.add_argument("--slurm_gpus_per_run", type=int, default=0,
                      help="GPUs per job (default: %(default)s)")
  parser.add_argument("--slurm_cpus_per_run", type=int, default=2,
                      help="CPUs per job (default: %(default)s)")
  parser.add_argument("--slurm_array_parallelism", type=int, default=32,
                      help="job-array tasks running at once (default: "
                      "%(default)s)")
  parser.add_argument("--slurm_folder", default=None,
                      help="submitit's logs and pickles (default: "
                      "<workdir_root>/submitit)")
  parser.add_argument("--no_wait", action="store_true",
                      help="with a submitit launcher: submit and exit (print "
                      "the job ids) instead of waiting for the jobs")
  return parser


def _resolve(args) -> tuple:
  """Flags -> (runs, definition or None, config_file, workdir_root,
  results_dir). Raises ValueError (SweepError) for a bad sweep."""
  if (args.sweep is None) == (args.config is None):
    raise sweep_grid.SweepError("give exactly one of --sweep=<file.py[:arg]> "
                                "and --config=<file.py:arg>.")
  if args.seeds is not None and args.seeds < 1:
    raise sweep_grid.SweepError(f"--seeds must be >= 1, got {args.seeds}.")
  definition = None
  if args.sweep is not None:
    path = args.sweep.partition(":")[0]
    module = _load_module(path, "--sweep")
    if hasattr(module, "get_sweep"):
      if args.grid or args.seeds is not None:
        raise sweep_grid.SweepError(
            f"--grid and --seeds apply to grid sweeps; {path!r} gives its "
            "own runs (get_sweep).")
      runs = load_sweep(args.sweep)
      return (runs, None, sweep_grid.DEFAULT_CONFIG_FILE,
              args.workdir_root or "workdirs/table1",
              args.results_dir or "results/runs")
    if not hasattr(module, "get_hyper"):
      raise sweep_grid.SweepError(f"--sweep: {path!r} defines neither "
                                  "get_sweep(arg) nor get_hyper(h).")
    config_spec, settings, seeds = load_hyper_file(args.sweep, args.grid,
                                                   args.seeds)
    definition = grid_definition(config_spec, settings, seeds,
                                 f"--sweep={args.sweep}")
    stem = os.path.splitext(os.path.basename(path))[0]
    workdir_root = args.workdir_root or os.path.join("workdirs", "sweeps",
                                                     stem)
  else:
    if args.workdir_root is None:
      raise sweep_grid.SweepError("--workdir_root is required with --config "
                                  "(e.g. --workdir_root=sweeps/lr).")
    config = sweep_grid.load_config(args.config)
    settings = sweep_grid.parse_grid(config, args.grid)
    definition = grid_definition(args.config, settings, args.seeds or 1,
                                 f"--config={args.config}")
    workdir_root = args.workdir_root
  return (definition["runs"], definition, definition["config_file"],
          workdir_root, args.results_dir)


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.parallel < 1:
    parser.error(f"--parallel must be >= 1, got {args.parallel}")
  if args.pin_cpus:
    if args.launcher != "local":
      parser.error(f"--pin_cpus works with --launcher=local only, got "
                   f"--launcher={args.launcher}")
    try:
      cpu_slots(args.parallel)
    except ValueError as e:
      parser.error(str(e))
  try:
    runs, definition, config_file, workdir_root, results_dir = _resolve(args)
  except ValueError as e:
    parser.error(str(e))
  if definition is not None:
    record_sweep(workdir_root, definition, results_dir)
  pending = []
  for run in runs:
    workdir = os.path.join(workdir_root, run["name"])
    if not collect(run, workdir, results_dir,
                   reuse_results=args.reuse_results):
      pending.append((run, workdir))
  print(f"{len(runs)} runs, {len(runs) - len(pending)} done, "
        f"{len(pending)} to go", flush=True)
  jobs = make_jobs(pending)
  if args.print_commands:
    for job in jobs:
      print(shlex.join(job_command(job, workdir_root, config_file,
                                   args.trainer)))
    return 0
  ctx = {"workdir_root": workdir_root, "config_file": config_file,
         "trainer": args.trainer, "results_dir": results_dir}
  if args.launcher == "local":
    return run_local(jobs, ctx, args.parallel, pin_cpus=args.pin_cpus)
  from experiments import launchers  # pylint: disable=g-import-not-at-top
  return launchers.submit(jobs, ctx, args)


if __name__ == "__main__":
  sys.exit(main())
