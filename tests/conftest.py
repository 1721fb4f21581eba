"""Shared pytest set-up: one JAX compilation cache; MNIST prepared once.

`scripts/test.sh` runs the suite in pytest-xdist workers, and many tests
start training processes (`stn_jax.main`, sweeps) that compile the same
smoke models again. JAX's persistent compilation cache, in a folder made
for this session and shared through `$JAX_COMPILATION_CACHE_DIR` by the
workers and every subprocess they start, compiles each once (unless the
caller set that variable: then theirs is used and kept).

On a fresh machine the first test that reads real MNIST has TensorFlow
Datasets prepare it in its data folder; two workers doing that at once would
race on the folder, so the controlling process prepares it before the
workers start.
"""

import os
import shutil
import tempfile

# Set before any test imports JAX, which reads the variables then; workers
# and subprocesses inherit them.
_CACHE_VAR = "JAX_COMPILATION_CACHE_DIR"
_OWN_CACHE = None
if not os.environ.get(_CACHE_VAR):
  _OWN_CACHE = tempfile.mkdtemp(prefix="stn_jax_tests_jax_cache_")
  os.environ[_CACHE_VAR] = _OWN_CACHE
  # Every compile: the smoke models' compiles are mostly under JAX's 1 s
  # default threshold, and they are what the processes repeat.
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")


def pytest_unconfigure(config):
  """Removes the cache folder this process made (the controller's)."""
  del config
  if _OWN_CACHE:
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def pytest_configure(config):
  """In the xdist controller (or a plain run: nothing), prepares real MNIST."""
  workers = config.getoption("numprocesses", default=None)
  if hasattr(config, "workerinput") or not workers:
    return  # A worker, or a single-process run (prepared on first use).
  manual_dir = os.environ.get("STN_JAX_MNIST_DIR")
  if manual_dir:
    from stn_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    input_pipeline.load_mnist(manual_dir=manual_dir)
