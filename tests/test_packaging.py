"""The dependency split: the library needs only jax and numpy."""

import os
import subprocess
import sys
import textwrap

try:
  import tomllib
except ImportError:  # Python 3.10
  tomllib = None

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
TRAINING_PACKAGES = ("flax", "optax", "orbax", "clu", "ml_collections",
                     "tensorflow", "tensorflow_datasets", "matplotlib",
                     "absl", "torch", "scipy")

# Imports stn_jax with every training / test package made unimportable.
_LIBRARY_ONLY = textwrap.dedent(f"""
    import sys
    BLOCKED = {TRAINING_PACKAGES!r}
    class Block:
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
          raise ImportError("blocked: " + name)
    sys.meta_path.insert(0, Block())
    import jax, jax.numpy as jnp
    import stn_jax
    grid = stn_jax.make_grid("tps", stn_jax.identity_params("tps"), (5, 5))
    out = jax.vmap(stn_jax.sample)(jnp.ones((2, 5, 5, 1)), jnp.stack([grid] * 2))
    assert out.shape == (2, 5, 5, 1)
    try:
      stn_jax.SpatialTransformer
    except ImportError as e:
      assert "flax" in str(e), e
    else:
      raise AssertionError("SpatialTransformer imported without flax")
    print("library ok")
""")


def test_library_imports_and_runs_with_jax_and_numpy_only():
  proc = subprocess.run([sys.executable, "-c", _LIBRARY_ONLY], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "library ok" in proc.stdout


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11")
def test_pyproject_extras():
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  names = [d.split(">")[0].split("=")[0].split("<")[0]
           for d in project["dependencies"]]
  assert names == ["jax", "numpy"]
  extras = project["optional-dependencies"]
  assert "stn_jax[train]" in extras["test"]
  assert "torch==2.13.0" in extras["test"]  # a CPU build; never unpinned
  assert {"flax", "tensorflow-datasets", "orbax-checkpoint"} <= set(
      extras["train"])
