"""Shared pytest set-up: real MNIST is prepared once before parallel workers.

`scripts/test.sh` runs the suite in pytest-xdist workers. On a fresh
machine the first test that reads real MNIST has TensorFlow Datasets prepare
it in its data folder; two workers doing that at once would race on the
folder, so the controlling process prepares it before the workers start.
"""

import os


def pytest_configure(config):
  """In the xdist controller (or a plain run: nothing), prepares real MNIST."""
  workers = config.getoption("numprocesses", default=None)
  if hasattr(config, "workerinput") or not workers:
    return  # A worker, or a single-process run (prepared on first use).
  manual_dir = os.environ.get("STN_JAX_MNIST_DIR")
  if manual_dir:
    from stn_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    input_pipeline.load_mnist(manual_dir=manual_dir)
