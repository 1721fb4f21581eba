"""A fake `stn_jax.main` for the sweep runner's tests (no training).

    python -m tests._sweep_fake_trainer --config=<file>:<arg> \
        --workdir=<dir or template with {seed}> [--seeds=0,1] [--config.k=v ...]

Writes `<workdir>/results.json` (the fields of a real record) for each seed.
Environment:
  FAKE_TRAINER_SLEEP  seconds to sleep before writing (default 0)
  FAKE_TRAINER_FAIL   exit with status 3 when a workdir contains this text
  FAKE_TRAINER_LOG    append "start|end|stopped <workdir> <time> <pid> <cpus>"
                      lines to this file (cpus: the process's affinity, "0,1")
SIGTERM during the sleep logs "stopped" and exits with 143, as stn_jax.main
after its clean stop.
"""

import json
import os
import signal
import sys
import time


def main(argv):
  flags, overrides = {}, {}
  for arg in argv:
    key, _, value = arg.partition("=")
    if key.startswith("--config."):
      overrides[key[len("--config."):]] = value
    else:
      flags[key.lstrip("-")] = value
  seeds = ([int(s) for s in flags["seeds"].split(",")] if "seeds" in flags
           else [int(overrides.get("seed", 0))])
  workdirs = [flags["workdir"].replace("{seed}", str(s)) for s in seeds]
  log = os.environ.get("FAKE_TRAINER_LOG")

  def note(what, workdir):
    if log:
      fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
      cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
      os.write(fd, f"{what} {workdir} {time.time():.3f} {os.getpid()} "
               f"{cpus}\n".encode())
      os.close(fd)

  def stop(signum, frame):  # pylint: disable=unused-argument
    for w in workdirs:
      note("stopped", w)
    sys.exit(128 + signum)

  signal.signal(signal.SIGTERM, stop)
  for w in workdirs:
    note("start", w)
  print(f"fake trainer: {flags['config']} {overrides} seeds {seeds}",
        flush=True)
  time.sleep(float(os.environ.get("FAKE_TRAINER_SLEEP", "0")))
  fail = os.environ.get("FAKE_TRAINER_FAIL")
  if fail and any(fail in w for w in workdirs):
    print("fake trainer: failing on purpose", flush=True)
    return 3
  lr = float(overrides.get("train.learning_rate", "0.001"))
  for seed, w in zip(seeds, workdirs):
    os.makedirs(w, exist_ok=True)
    record = {"seed": seed, "test_error": round(1.0 + 100 * lr + 0.1 * seed, 4),
              "wall_time_s": 1.0, "examples_per_s": 100.0, "num_params": 1234,
              "seeds_in_step": len(seeds), "overrides": overrides}
    with open(os.path.join(w, "results.json.tmp"), "w") as f:
      json.dump(record, f)
    os.replace(os.path.join(w, "results.json.tmp"),
               os.path.join(w, "results.json"))
    note("end", w)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
