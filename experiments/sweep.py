r"""Runs a sweep of `stn_jax.main` training runs, resumably.

    python -m experiments.sweep --sweep=configs/table1.py:quick \
        --workdir_root=workdirs/table1 --results_dir=results/runs --parallel=1
    python -m experiments.sweep --sweep=configs/table1.py:quick \
        --reuse_results   # only the runs without a record in results/runs

* The sweep comes from a config file's `get_sweep(arg)` (see
  `configs/table1.py`): a list of {"name", "config", "overrides"}.
* Each run trains in `<workdir_root>/<name>` as its own process. A run is
  done when its workdir holds a `results.json` (it finished); the others
  train, an interrupted one resuming from its latest checkpoint, because
  `stn_jax.main` always resumes from its workdir. Records already in
  `--results_dir` (e.g. the committed `results/runs/*.json`) do NOT count as
  done unless `--reuse_results` is given: on a fresh clone the sweep trains
  every run.
* A finished run's `results.json` is copied to `<results_dir>/<name>.json`
  (when that record is missing or older than the workdir's), so nothing
  finished is lost.
* The runner survives being killed: its children die with it (Linux
  PR_SET_PDEATHSIG), and running it again picks up where it stopped.
* Runs of one "group" (the seeds of a cell whose model trains faster with
  its seeds vmapped, `configs/table1.py`) that are still pending train as one
  process, `stn_jax.main --seeds=...`, each seed in its own workdir.
* `--print_commands` prints one shell command per pending job instead, for
  a cluster scheduler.
"""

import argparse
import ctypes
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time

_PR_SET_PDEATHSIG = 1


def load_sweep(spec: str) -> list[dict]:
  """Loads `path.py[:arg]` and returns its `get_sweep(arg)`."""
  path, _, arg = spec.partition(":")
  if not os.path.isfile(path):
    raise ValueError(f"--sweep: no sweep config file at {path!r}.")
  module_spec = importlib.util.spec_from_file_location("_sweep_config", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_sweep"):
    raise ValueError(f"--sweep: {path!r} defines no get_sweep(arg).")
  runs = module.get_sweep(arg) if arg else module.get_sweep()
  names = [r["name"] for r in runs]
  if len(set(names)) != len(names):
    raise ValueError(f"--sweep: {path!r} gives duplicate run names.")
  for r in runs:
    group = r.get("group")
    if group is not None and r["name"] != f"{group}-s{r['overrides']['seed']}":
      raise ValueError(f"--sweep: run {r['name']!r} of group {group!r} must "
                       f"be named '<group>-s<seed>'.")
  return runs


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
                config_file: str = "configs/distorted_mnist.py") -> list[str]:
  """The argv that trains `run` in `workdir`."""
  argv = [sys.executable, "-m", "stn_jax.main",
          f"--config={config_file}:{run['config']}", f"--workdir={workdir}"]
  argv += [f"--config.{k}={v}" for k, v in sorted(run["overrides"].items())]
  return argv


def job_command(job: list, workdir_root: str,
                config_file: str = "configs/distorted_mnist.py") -> list[str]:
  """The argv that trains a job (one run, or a group's seeds vmapped)."""
  run, workdir = job[0]
  if len(job) == 1:
    return run_command(run, workdir, config_file)
  seeds = [r["overrides"]["seed"] for r, _ in job]
  template = os.path.join(workdir_root, run["group"] + "-s{seed}")
  argv = [sys.executable, "-m", "stn_jax.main",
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


def collect(run: dict, workdir: str, results_dir: str, *,
            reuse_results: bool = False) -> bool:
  """Whether `run` is done; copies a finished run's record to `results_dir`.

  A run is done when `workdir/results.json` exists; it is then copied to
  `<results_dir>/<name>.json` unless that file is already newer than it (a
  record edited or collected after the run stays as it is). With
  `reuse_results`, a record already in `results_dir` also counts as done
  (without a workdir).
  """
  target = os.path.join(results_dir, f"{run['name']}.json")
  source = os.path.join(workdir, "results.json")
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


def build_parser() -> argparse.ArgumentParser:
  """The command line (every flag with a help string)."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sweep", required=True,
                      help="config file and argument, e.g. "
                      "configs/table1.py:quick")
  parser.add_argument("--workdir_root", default="workdirs/table1",
                      help="each run trains (and resumes) in "
                      "<workdir_root>/<run name> (default: %(default)s)")
  parser.add_argument("--results_dir", default="results/runs",
                      help="each finished run's results.json is copied to "
                      "<results_dir>/<run name>.json (default: %(default)s)")
  parser.add_argument("--reuse_results", action="store_true",
                      help="count a run as done when its record is already "
                      "in --results_dir (e.g. the committed results/runs), "
                      "without training it; by default only a results.json "
                      "in its workdir makes a run done")
  parser.add_argument("--parallel", type=int, default=1,
                      help="runs trained at the same time (default: "
                      "%(default)s)")
  parser.add_argument("--print_commands", action="store_true",
                      help="print one shell command per pending run and exit "
                      "(trains nothing)")
  return parser


def main(argv=None):
  parser = build_parser()
  args = parser.parse_args(argv)
  if args.parallel < 1:
    parser.error(f"--parallel must be >= 1, got {args.parallel}")
  runs = load_sweep(args.sweep)
  pending = []
  for run in runs:
    workdir = os.path.join(args.workdir_root, run["name"])
    if not collect(run, workdir, args.results_dir,
                   reuse_results=args.reuse_results):
      pending.append((run, workdir))
  print(f"{len(runs)} runs, {len(runs) - len(pending)} done, "
        f"{len(pending)} to go", flush=True)
  jobs = make_jobs(pending)
  if args.print_commands:
    for job in jobs:
      print(shlex.join(job_command(job, args.workdir_root)))
    return 0

  running = {}
  failed = []
  queue = list(jobs)
  while queue or running:
    while queue and len(running) < args.parallel:
      job = queue.pop(0)
      for _, workdir in job:
        os.makedirs(workdir, exist_ok=True)
      name = ", ".join(run["name"] for run, _ in job)
      log_path = os.path.join(job[0][1], "log.txt")
      log = open(log_path, "ab")
      cmd = job_command(job, args.workdir_root)
      print(f"start {name}: {shlex.join(cmd)}", flush=True)
      proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                              preexec_fn=_die_with_parent)
      running[proc] = (job, name, log_path, log, time.time())
    time.sleep(1.0)
    for proc in [p for p in running if p.poll() is not None]:
      job, name, log_path, log, start = running.pop(proc)
      log.close()
      done = proc.returncode == 0 and all(
          [collect(run, workdir, args.results_dir) for run, workdir in job])
      status = "done" if done else f"FAILED (exit {proc.returncode})"
      print(f"{status} {name} after {time.time() - start:.0f} s; "
            f"log: {log_path}", flush=True)
      if not done:
        failed.extend(run["name"] for run, _ in job)
  if failed:
    print(f"{len(failed)} runs failed: {failed}", flush=True)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
