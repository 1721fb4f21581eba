r"""Launching a sweep's jobs through submitit (SLURM, or its local executor).

    python -m experiments.sweep --config=configs/distorted_mnist.py:rts,st_cnn,tps,quick \
        --grid=train.learning_rate=3e-4,1e-3,3e-3 --seeds=3 --workdir_root=sweeps/lr \
        --launcher=slurm --slurm_partition=gpu --slurm_time=60 \
        --slurm_gpus_per_run=1 --slurm_cpus_per_run=8

`submit` sends the pending jobs of `experiments.sweep` (one run, or the
vmapped seeds of a group) as one SLURM job array, one task per job, through
`submitit.AutoExecutor` (`--launcher=slurm`), or through submitit's local
executor (`--launcher=submitit_local`: the same code path as real processes
on this machine; the tests use it). Each task runs
`experiments.sweep.run_job_blocking`: it takes the run's lock, skips a run
that another runner trains or that finished meanwhile, trains with
`python -m stn_jax.main ...` (its output in `<workdir>/log.txt`), and
collects the record, exactly as the local runner does. Runs that another
runner holds locked when submitting are not submitted.

By default `submit` waits for the jobs and returns 1 when one failed (as the
local runner); `--no_wait` prints the job ids and returns at once (run the
same sweep command again later: it submits only what is still pending).
submitit's own logs and pickles go to `--slurm_folder` (default
`<workdir_root>/submitit`).
"""

from __future__ import annotations

import os

from experiments import sweep


def executor_parameters(args, num_jobs: int) -> dict:
  """submitit AutoExecutor parameters from the sweep's flags."""
  params = {
      "name": "stn_sweep",
      "timeout_min": int(args.slurm_time),
      "nodes": 1,
      "tasks_per_node": 1,
      "cpus_per_task": int(args.slurm_cpus_per_run),
      "slurm_array_parallelism": max(1, min(int(args.slurm_array_parallelism),
                                            num_jobs)),
  }
  if args.slurm_gpus_per_run:
    params["gpus_per_node"] = int(args.slurm_gpus_per_run)
  if args.slurm_partition:
    params["slurm_partition"] = args.slurm_partition
  return params


def submit(jobs: list, ctx: dict, args) -> int:
  """Submits `jobs` (see the module docstring); returns an exit status."""
  import submitit  # pylint: disable=g-import-not-at-top
  for flag in ("slurm_time", "slurm_cpus_per_run", "slurm_array_parallelism"):
    if getattr(args, flag) < 1:
      raise SystemExit(f"{sweep.PROG}: error: --{flag} must be >= 1, got "
                       f"{getattr(args, flag)}")
  if args.slurm_gpus_per_run < 0:
    raise SystemExit(f"{sweep.PROG}: error: --slurm_gpus_per_run must be >= "
                     f"0, got {args.slurm_gpus_per_run}")
  todo = []
  for job in jobs:
    names = [run["name"] for run, _ in job]
    if any(sweep.is_locked(workdir) for _, workdir in job):
      print(f"skip {', '.join(names)}: locked by another runner", flush=True)
      continue
    todo.append(job)
  if not todo:
    return 0
  cluster = "slurm" if args.launcher == "slurm" else "local"
  folder = args.slurm_folder or os.path.join(ctx["workdir_root"], "submitit")
  executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
  executor.update_parameters(**executor_parameters(args, len(todo)))
  job_ctx = dict(ctx, cwd=os.getcwd())
  submitted = executor.map_array(sweep.run_job_blocking, todo,
                                 [job_ctx] * len(todo))
  for job, handle in zip(todo, submitted):
    print(f"submitted {', '.join(r['name'] for r, _ in job)}: job "
          f"{handle.job_id}", flush=True)
  if args.no_wait:
    return 0
  failed, locked, stopped = [], [], []
  for job, handle in zip(todo, submitted):
    names = [r["name"] for r, _ in job]
    try:
      result = handle.result()
    except Exception as e:  # pylint: disable=broad-except
      # The task itself died (timeout, node failure): its runs are pending.
      print(f"FAILED {', '.join(names)}: job {handle.job_id}: "
            f"{' '.join(str(e).split())[:300]}", flush=True)
      failed.extend(names)
      continue
    print(f"{result['status']} {', '.join(result['names'])} (job "
          f"{handle.job_id})", flush=True)
    if result["status"] == "failed":
      failed.extend(result["names"])
    elif result["status"] == "locked":
      locked.extend(result["names"])
    elif result["status"] == "stopped":  # SIGTERM (pre-empted): resumable.
      stopped.extend(result["names"])
  return sweep.report_outcome(locked, failed, stopped)
