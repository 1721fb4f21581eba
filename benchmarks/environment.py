"""What a CPU benchmark ran under, and writing its results.

The CPU benchmarks that time training-process work (`distortions`,
`allocator`) record the same facts about their process, because on a shared
CPU those facts change the numbers: the cores XLA may use (it sizes its
intra-op thread pool from the process's CPU affinity, so `taskset -c 0` or
`--core` gives it one thread), `XLA_FLAGS`, and a preloaded allocator
(`LD_PRELOAD`, e.g. tcmalloc).
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Callable


def check_core(core: int) -> None:
  """Raises ValueError unless `core` (an int) is in this process's affinity."""
  cores = sorted(os.sched_getaffinity(0))
  if core not in cores:
    raise ValueError(f"core must be one of this process's cores {cores}, "
                     f"got {core}")


def pin_to_core(core: int) -> None:
  """Restricts this process to CPU `core` (an int in its current affinity).

  Call it before JAX first runs anything: XLA makes its thread pool, one
  thread per core of the affinity, when the CPU backend starts.

  Raises:
    ValueError: `core` is not one of the process's cores.
  """
  check_core(core)
  os.sched_setaffinity(0, {core})


def describe() -> dict:
  """This process's setting: {"date": "YYYY-MM-DD", "jax": version,
  "cpu_cores": cores in the affinity (sorted list), "xla_flags": str,
  "ld_preload": str} (empty strings when unset)."""
  import jax  # pylint: disable=g-import-not-at-top
  return {"date": datetime.date.today().isoformat(), "jax": jax.__version__,
          "cpu_cores": sorted(os.sched_getaffinity(0)),
          "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "ld_preload": os.environ.get("LD_PRELOAD", "")}


def markdown_setting(env: dict) -> str:
  """One sentence for a results file's header, from `describe()`'s dict."""
  cores = env["cpu_cores"]
  where = (f"pinned to core {cores[0]}" if len(cores) == 1
           else f"{len(cores)} cores ({', '.join(map(str, cores))})")
  flags = f"`XLA_FLAGS={env['xla_flags']}`" if env["xla_flags"] else (
      "no `XLA_FLAGS`")
  preload = (f", `LD_PRELOAD={env['ld_preload']}`" if env["ld_preload"]
             else "")
  return (f"{env['date']}, jax {env['jax']}, process {where}, "
          f"{flags}{preload}.")


def write_results(results: dict, to_markdown: Callable[[dict], str], *,
                  json_path: str | None, markdown_path: str | None) -> None:
  """Writes `results` as JSON and `to_markdown(results)` (each if its path
  is given)."""
  if json_path:
    with open(json_path, "w") as f:
      json.dump(results, f, indent=1)
  if markdown_path:
    with open(markdown_path, "w") as f:
      f.write(to_markdown(results))
