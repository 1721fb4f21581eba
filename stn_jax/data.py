"""MNIST loading under its old module name: `stn_jax.input_pipeline` holds it.

Kept so that code written as `from stn_jax import data; data.load_mnist(...)`
(the README's inference example) keeps working.
"""

from stn_jax.input_pipeline import DatasetError  # noqa: F401
from stn_jax.input_pipeline import find_manual_dir  # noqa: F401
from stn_jax.input_pipeline import load_mnist  # noqa: F401
from stn_jax.input_pipeline import MNIST_ENV_VAR  # noqa: F401
from stn_jax.input_pipeline import MnistArrays  # noqa: F401
