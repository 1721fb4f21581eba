r"""What the memory allocator costs a training run's steps on CPU.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \
    python -m benchmarks.allocator \
        --json benchmarks/results/allocator_cpu.json \
        --markdown benchmarks/results/allocator_cpu.md

XLA:CPU allocates a step's large buffers afresh every step. With glibc's
malloc those come from new memory mappings, so every step page-faults them
in again (about 10k minor faults and a third of the process's time in the
kernel for a 3-seed ST-FCN step); an allocator that keeps freed memory
mapped, such as tcmalloc (`LD_PRELOAD`), avoids that.

For each row (a `configs/distorted_mnist.py` config and a number of vmapped
seeds, as the Table-1 sweep trains them) and each allocator, a fresh worker
process builds the run's own jitted batch and step functions
(`stn_jax.train`), pinned to one core (`--core`: XLA then makes a one-thread
pool, as for one run per core), and times `--steps` steps after `--warmup`;
rounds alternate the allocators. Reported per worker: the median step time
(batch + step, waiting for the metrics as the training loop does), minor
page faults and system CPU time per step. Run it with every training process
paused: the workers must not share their core.

Needs MNIST (`STN_JAX_MNIST_DIR`, as training does). `--allocators tcmalloc`
needs the library (Debian/Ubuntu: `apt-get install libtcmalloc-minimal4`) at
`--tcmalloc`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchmarks import environment

DEFAULT_TCMALLOC = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
ALLOCATORS = ("default", "tcmalloc")
# (config argument, vmapped seeds): a Table-1 FCN-family cell at the paper
# protocol (3 seeds, as the sweep runs them) and a CNN-family one at `fast`.
ROWS = (("p,st_fcn,projective,paper", 3), ("e,fcn,paper", 3),
        ("p,st_cnn,affine,fast", 1))


def _row_name(spec: str, seeds: int) -> str:
  return f"{spec} x{seeds}"


def time_steps(spec: str, *, seeds: int, steps: int, warmup: int,
               test_examples: int) -> dict:
  """Times a run's batch + step functions in this process (the worker)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from configs import distorted_mnist  # pylint: disable=g-import-not-at-top
  from stn_jax import train  # pylint: disable=g-import-not-at-top

  config = distorted_mnist.get_config(spec)
  config.data.num_test_examples = test_examples  # Not timed: keep it small.
  train.validate_config(config)
  with tempfile.TemporaryDirectory() as tmp:
    dirs = {s: os.path.join(tmp, f"s{s}") for s in range(seeds)}
    run = train.start_run(config, dirs)
    state = run.state
    times, before = [], None
    for i in range(warmup + steps):
      if i == warmup:
        before = resource.getrusage(resource.RUSAGE_SELF)
      start = time.perf_counter()
      batch = run.batch_fn(jnp.asarray(i, jnp.int32), run.data.train_images,
                           run.data.train_labels)
      state, metrics = run.step_fn(state, batch)
      jax.device_get(metrics)
      if i >= warmup:
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    for m in run.managers:
      m.wait_until_finished()
  with open("/proc/self/maps") as f:
    maps = f.read()
  return {"median_ms": 1e3 * statistics.median(times),
          "steps_per_s": 1.0 / statistics.median(times),
          "minor_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
          "system_ms_per_step": 1e3 * (after.ru_stime - before.ru_stime) / steps,
          "user_ms_per_step": 1e3 * (after.ru_utime - before.ru_utime) / steps,
          "tcmalloc_loaded": "tcmalloc" in maps}


def run_worker(spec: str, seeds: int, allocator: str, args) -> dict:
  """One fresh process: `spec` with `seeds` seeds under `allocator`."""
  env = dict(os.environ)
  env.pop("LD_PRELOAD", None)
  if allocator == "tcmalloc":
    env["LD_PRELOAD"] = args.tcmalloc
  cmd = [sys.executable, "-m", "benchmarks.allocator", "--worker", spec,
         "--worker_seeds", str(seeds), "--steps", str(args.steps),
         "--warmup", str(args.warmup), "--test_examples",
         str(args.test_examples), "--core", str(args.core)]
  out = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       check=False)
  if out.returncode:
    raise RuntimeError(f"worker {spec!r} ({allocator}) failed:\n{out.stderr}")
  result = json.loads(out.stdout.strip().splitlines()[-1])
  if result["tcmalloc_loaded"] != (allocator == "tcmalloc"):
    raise RuntimeError(
        f"worker {spec!r}: allocator {allocator!r} requested, but tcmalloc "
        f"{'is' if result['tcmalloc_loaded'] else 'is not'} loaded (check "
        "LD_PRELOAD in the environment and --tcmalloc).")
  return result


def summarize(rows: list) -> list:
  """Per row and allocator: medians over rounds; per row: the speed-up."""
  table = []
  for name in dict.fromkeys(r["row"] for r in rows):
    by = {a: [r for r in rows if r["row"] == name and r["allocator"] == a]
          for a in ALLOCATORS}
    entry = {"row": name}
    for a, runs in by.items():
      if runs:
        entry[a] = {k: statistics.median(r[k] for r in runs) for k in (
            "steps_per_s", "minor_faults_per_step", "system_ms_per_step",
            "user_ms_per_step")}
        entry[a]["rounds_steps_per_s"] = [r["steps_per_s"] for r in runs]
    if "default" in entry and "tcmalloc" in entry:
      entry["speedup"] = (entry["tcmalloc"]["steps_per_s"] /
                          entry["default"]["steps_per_s"])
    table.append(entry)
  return table


def to_markdown(results: dict) -> str:
  lines = [
      "# Memory allocator and training-step speed (CPU)",
      "",
      "Regenerated by `python -m benchmarks.allocator` (command in its",
      f"docstring). {results['date']}, jax {results['jax']}, {results['steps']}"
      f" steps after {results['warmup']} warm-up per worker, "
      f"{results['rounds']} rounds alternating the allocators, each worker "
      f"pinned to core {results['core']}, `XLA_FLAGS={results['xla_flags']}`.",
      "",
      "steps/s: median over rounds of each worker's median step (batch + "
      "step); faults and system time: per step.",
      "",
      "| row | allocator | steps/s | rounds | minor faults | system ms | "
      "user ms | speed-up |",
      "|---|---|---:|---|---:|---:|---:|---:|",
  ]
  for entry in results["table"]:
    for a in ALLOCATORS:
      if a not in entry:
        continue
      e = entry[a]
      rounds = " / ".join(f"{v:.1f}" for v in e["rounds_steps_per_s"])
      speedup = (f"{entry['speedup']:.2f}" if a == "tcmalloc"
                 and "speedup" in entry else "")
      lines.append(
          f"| {entry['row']} | {a} | {e['steps_per_s']:.1f} | {rounds} | "
          f"{e['minor_faults_per_step']:,.0f} | "
          f"{e['system_ms_per_step']:.1f} | {e['user_ms_per_step']:.1f} | "
          f"{speedup} |")
  return "\n".join(lines) + "\n"


def _parse_rows(text, parser):
  if text is None:
    return list(ROWS)
  rows = []
  for item in text.split(";"):
    spec, sep, seeds = item.rpartition(":")
    if not sep or not spec or not seeds.isdigit() or int(seeds) < 1:
      parser.error(f"--rows must be 'config:seeds' items separated by ';' "
                   f"(e.g. 'rts,fcn,paper:3'), got {item!r}")
    rows.append((spec, int(seeds)))
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rows", default=None,
                      help="'config:seeds' items separated by ';' (default: "
                           + "; ".join(f"{s}:{n}" for s, n in ROWS) + ")")
  parser.add_argument("--allocators", default=",".join(ALLOCATORS),
                      help=f"comma-separated, among {list(ALLOCATORS)}")
  parser.add_argument("--tcmalloc", default=DEFAULT_TCMALLOC,
                      help="path of the tcmalloc library to LD_PRELOAD")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--test_examples", type=int, default=100,
                      help="test digits each worker builds (not timed)")
  parser.add_argument("--core", type=int, default=0,
                      help="the core every worker is pinned to")
  parser.add_argument("--json", default=None)
  parser.add_argument("--markdown", default=None)
  parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  parser.add_argument("--worker_seeds", type=int, default=1,
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.rounds < 1 or args.steps < 1 or args.warmup < 0:
    parser.error("--rounds and --steps must be >= 1, --warmup >= 0")
  if args.test_examples < 1:
    parser.error(f"--test_examples must be >= 1, got {args.test_examples}")
  try:
    if args.worker is not None:
      # Before JAX starts: XLA sizes its thread pool from the affinity.
      environment.pin_to_core(args.core)
    else:
      environment.check_core(args.core)
  except ValueError as e:
    parser.error(f"--core: {e}")
  if args.worker is not None:
    result = time_steps(args.worker, seeds=args.worker_seeds,
                        steps=args.steps, warmup=args.warmup,
                        test_examples=args.test_examples)
    print(json.dumps(result))
    return
  allocators = args.allocators.split(",")
  if not allocators or not set(allocators) <= set(ALLOCATORS):
    parser.error(f"--allocators must be among {list(ALLOCATORS)}, got "
                 f"{args.allocators!r}")
  if "tcmalloc" in allocators and not os.path.isfile(args.tcmalloc):
    parser.error(f"--tcmalloc: no library at {args.tcmalloc!r} (install "
                 "libtcmalloc-minimal4, or drop tcmalloc from --allocators)")
  rows = _parse_rows(args.rows, parser)
  measured = []
  for r in range(args.rounds):
    for spec, seeds in rows:
      # Alternate which allocator goes first, round by round.
      for allocator in (allocators if r % 2 == 0 else allocators[::-1]):
        result = run_worker(spec, seeds, allocator, args)
        result.update(row=_row_name(spec, seeds), allocator=allocator,
                      round=r)
        measured.append(result)
        print(f"round {r} {result['row']:32s} {allocator:9s} "
              f"{result['steps_per_s']:6.1f} steps/s, "
              f"{result['minor_faults_per_step']:8.0f} faults/step, "
              f"{result['system_ms_per_step']:6.1f} ms system/step",
              flush=True)
  setting = environment.describe()  # The workers set their own LD_PRELOAD.
  results = {"date": setting["date"], "jax": setting["jax"],
             "steps": args.steps, "warmup": args.warmup,
             "rounds": args.rounds, "core": args.core,
             "xla_flags": setting["xla_flags"],
             "tcmalloc": args.tcmalloc if "tcmalloc" in allocators else None,
             "runs": measured, "table": summarize(measured)}
  environment.write_results(results, to_markdown, json_path=args.json,
                            markdown_path=args.markdown)


if __name__ == "__main__":
  main()
