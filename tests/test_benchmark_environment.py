"""The benchmarks' process setting: pinning, its description, bad cores."""

import json
import os
import subprocess
import sys

import pytest

from benchmarks import environment

_PINNED_CHILD = r"""
import glob, json, os, sys
from benchmarks import environment
environment.pin_to_core(int(sys.argv[1]))
import jax.numpy as jnp
(jnp.ones((256, 256)) @ jnp.ones((256, 256))).block_until_ready()
comms = [open(f).read().strip()
         for f in glob.glob(f"/proc/{os.getpid()}/task/*/comm")]
print(json.dumps({"setting": environment.describe(),
                  "xla_pool_threads": sum("XLAEigen" in c for c in comms)}))
"""


def test_pinning_leaves_xla_one_pool_thread_and_is_described():
  core = max(os.sched_getaffinity(0))
  out = subprocess.run([sys.executable, "-c", _PINNED_CHILD, str(core)],
                       capture_output=True, text=True, check=True,
                       cwd=os.path.dirname(os.path.dirname(__file__)))
  child = json.loads(out.stdout.strip().splitlines()[-1])
  assert child["setting"]["cpu_cores"] == [core]
  # XLA sizes its intra-op pool from the affinity it finds at start-up.
  assert child["xla_pool_threads"] <= 1
  assert f"pinned to core {core}" in environment.markdown_setting(
      child["setting"])


def test_check_core_names_the_cores_it_accepts():
  with pytest.raises(ValueError, match=r"core must be one of .* got 4096"):
    environment.check_core(4096)
  environment.check_core(min(os.sched_getaffinity(0)))


def test_markdown_setting_states_cores_flags_and_preload():
  env = {"date": "2026-12-01", "jax": "0.10.2", "cpu_cores": [0, 1],
         "xla_flags": "--xla_cpu_multi_thread_eigen=false",
         "ld_preload": "/lib/libtcmalloc_minimal.so.4"}
  assert environment.markdown_setting(env) == (
      "2026-12-01, jax 0.10.2, process 2 cores (0, 1), "
      "`XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`, "
      "`LD_PRELOAD=/lib/libtcmalloc_minimal.so.4`.")
  env.update(cpu_cores=[1], xla_flags="", ld_preload="")
  assert environment.markdown_setting(env) == (
      "2026-12-01, jax 0.10.2, process pinned to core 1, no `XLA_FLAGS`.")


def test_write_results_writes_each_output_given(tmp_path):
  results = {"rows": [1, 2]}
  environment.write_results(results, lambda r: f"{len(r['rows'])} rows\n",
                            json_path=str(tmp_path / "r.json"),
                            markdown_path=str(tmp_path / "r.md"))
  assert json.loads((tmp_path / "r.json").read_text()) == results
  assert (tmp_path / "r.md").read_text() == "2 rows\n"
  environment.write_results(results, lambda r: "x", json_path=None,
                            markdown_path=None)
