"""MNIST through TensorFlow Datasets' own `mnist` builder, as numpy arrays.

The standard TFDS loading path is kept; only the manual download folder is
configurable. On a machine without internet, TFDS accepts the four original IDX
`.gz` files as a manual download and checks their checksums itself:

    load_mnist(manual_dir="/path/to/folder/with/the/four/gz/files")

`manual_dir=None` lets TFDS download as usual. The project's config reads
`data.manual_dir`, which defaults to the environment variable
`STN_JAX_MNIST_DIR` (see `default_manual_dir`). A missing or corrupt data set
raises `DatasetError` (a `ValueError`) that says how to provide it; there is
never a fallback to fake data.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

MNIST_ENV_VAR = "STN_JAX_MNIST_DIR"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
MNIST_IMAGE_SIZE = 28
MNIST_NUM_CLASSES = 10

_HOW_TO_FIX = (
    f"Set `data.manual_dir` (or the environment variable {MNIST_ENV_VAR}) to a "
    f"folder holding the four original MNIST IDX files {', '.join(MNIST_FILES)}; "
    "TensorFlow Datasets checks their checksums and prepares `mnist` from them.")


class DatasetError(ValueError):
  """MNIST is missing, corrupt, or could not be prepared by TFDS."""


class MnistArrays(NamedTuple):
  """MNIST as numpy arrays.

  Attributes:
    train_images: uint8 `[N_train, 28, 28]` (60000 for the real data set).
    train_labels: int32 `[N_train]` in 0..9.
    test_images: uint8 `[N_test, 28, 28]` (10000 for the real data set).
    test_labels: int32 `[N_test]` in 0..9.
  """
  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray


def default_manual_dir() -> str | None:
  """Returns `$STN_JAX_MNIST_DIR`, or None when it is unset or empty."""
  return os.environ.get(MNIST_ENV_VAR) or None


def check_manual_dir(manual_dir: str) -> None:
  """Raises `DatasetError` unless `manual_dir` is a folder with the 4 IDX files.

  Checked before TFDS runs: with a file missing TFDS would try to download it,
  which on an offline machine fails with an unrelated network error. The
  checksums are TFDS's job (it raises on a mismatch, which `load_mnist` wraps).
  """
  if not os.path.isdir(manual_dir):
    raise DatasetError(
        f"`manual_dir` must be an existing folder, got {manual_dir!r} "
        f"(it does not exist or is not a folder). {_HOW_TO_FIX}")
  missing = [f for f in MNIST_FILES
             if not os.path.isfile(os.path.join(manual_dir, f))]
  if missing:
    raise DatasetError(
        f"`manual_dir` {manual_dir!r} lacks the MNIST file(s) {missing}. "
        f"{_HOW_TO_FIX}")


def load_mnist(*, manual_dir: str | None,
               data_dir: str | None = None) -> MnistArrays:
  """Loads the MNIST train and test splits with TFDS.

  Args:
    manual_dir: folder holding the four IDX `.gz` files (TFDS's manual
      download folder), or None to let TFDS download them.
    data_dir: TFDS data folder where the prepared data set lives; None keeps
      TFDS's default (`~/tensorflow_datasets` or `$TFDS_DATA_DIR`).

  Returns:
    `MnistArrays` with uint8 `[N, 28, 28]` images and int32 `[N]` labels. The
    sizes are whatever TFDS returns (60000/10000 for the real data; smaller
    under `tfds.testing.mock_data`).

  Raises:
    DatasetError: `manual_dir` is missing or incomplete, TFDS failed (e.g. a
      checksum mismatch from a corrupt file, or no network without a manual
      folder), or the arrays are not MNIST-shaped.
  """
  if manual_dir is not None:
    manual_dir = os.fspath(manual_dir)
    check_manual_dir(manual_dir)
  # Imported here: TFDS pulls in TensorFlow, which the distortions never need.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  try:
    (train_x, train_y), (test_x, test_y) = tfds.as_numpy(tfds.load(
        "mnist", split=["train", "test"], batch_size=-1, as_supervised=True,
        data_dir=data_dir,
        download_and_prepare_kwargs={"download_config": download_config}))
  except Exception as e:  # TFDS raises many unrelated types; wrap them all.
    where = (f"the manual folder {manual_dir!r}" if manual_dir is not None
             else "a TFDS download (no manual folder given)")
    raise DatasetError(
        f"TFDS could not load or prepare `mnist` from {where} "
        f"(data_dir={data_dir!r}): {type(e).__name__}: {e}\n{_HOW_TO_FIX} "
        "A corrupt file shows up as a checksum error: replace the files with "
        "the original ones.") from e
  return MnistArrays(
      train_images=_check_images("train_images", train_x),
      train_labels=_check_labels("train_labels", train_y, len(train_x)),
      test_images=_check_images("test_images", test_x),
      test_labels=_check_labels("test_labels", test_y, len(test_x)))


def _check_images(name: str, images) -> np.ndarray:
  """`[N, 28, 28, 1]` (TFDS layout) or `[N, 28, 28]` -> uint8 `[N, 28, 28]`."""
  images = np.asarray(images)
  if images.ndim == 4 and images.shape[-1] == 1:
    images = images[..., 0]
  size = MNIST_IMAGE_SIZE
  if images.ndim != 3 or images.shape[1:] != (size, size) or not len(images):
    raise DatasetError(
        f"`{name}` from TFDS must have shape [N>0, {size}, {size}(, 1)], got "
        f"{list(images.shape)}. {_HOW_TO_FIX}")
  if images.dtype != np.uint8:
    raise DatasetError(f"`{name}` from TFDS must be uint8, got {images.dtype}.")
  return images


def _check_labels(name: str, labels, n: int) -> np.ndarray:
  """Labels -> int32 `[n]` in 0..9, or raises."""
  labels = np.asarray(labels)
  if labels.shape != (n,):
    raise DatasetError(
        f"`{name}` from TFDS must have shape [{n}], got {list(labels.shape)}.")
  if n and (labels.min() < 0 or labels.max() >= MNIST_NUM_CLASSES):
    raise DatasetError(
        f"`{name}` from TFDS must lie in 0..{MNIST_NUM_CLASSES - 1}, got "
        f"range {labels.min()}..{labels.max()}.")
  return labels.astype(np.int32)
