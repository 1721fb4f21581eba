"""The input pipeline: MNIST, the training batches, the fixed test sets.

* MNIST through TensorFlow Datasets' own `mnist` builder, as numpy arrays
  (`load_mnist`). The standard TFDS loading path is kept; only the manual
  download folder is configurable. On a machine without internet, TFDS
  accepts the four original IDX `.gz` files as a manual download and checks
  their checksums itself:

      load_mnist(manual_dir="/path/to/folder/with/the/four/gz/files")

  `manual_dir=None` looks for such a folder first (`find_manual_dir`: the
  environment variable `STN_JAX_MNIST_DIR`, then `../shared/data/mnist`
  beside the repository, as `scripts/mnist_env.sh` does) and otherwise lets
  TFDS download as usual; when MNIST is not yet prepared in the TFDS data
  folder, a quick network check (`download_host_reachable`, ~3 s at most)
  comes first, so an offline machine fails in seconds instead of after
  minutes of TFDS retries. The project's config reads `data.manual_dir`,
  which defaults to `STN_JAX_MNIST_DIR`. The folder used is logged. A missing
  or corrupt data set raises `DatasetError` (a `ValueError`) that says how to
  provide it; there is never a fallback to fake data.
* Training batches (`make_batch_fn`): a pure function of (seed, step) that
  draws digits with replacement and distorts them on the device
  (`stn_jax.distortions.make_distort_fn`).
* The fixed distorted test set of a distortion (`make_test_set`), computed
  in chunks and optionally cached as `.npz`.
* A run's data (`load_data`): the training digits on the devices and the
  test set, from a config.

The distortion maths lives in `stn_jax.distortions`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import tempfile
import threading
from typing import Callable, NamedTuple
import urllib.parse
import urllib.request

from absl import logging
import jax
import numpy as np

from stn_jax import distortions

MNIST_ENV_VAR = "STN_JAX_MNIST_DIR"
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
MNIST_IMAGE_SIZE = 28
MNIST_NUM_CLASSES = 10

# The repository's root (the folder holding `stn_jax/`), and the shared MNIST
# folder beside it that `scripts/mnist_env.sh` uses.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_MNIST_DIR = os.path.normpath(
    os.path.join(REPO_ROOT, "..", "shared", "data", "mnist"))

# Where TFDS's `mnist` builder downloads from
# (https://storage.googleapis.com/cvdf-datasets/mnist/), and how long the
# network check waits for a connection.
DOWNLOAD_HOST = "storage.googleapis.com"
DOWNLOAD_PORT = 443
NETWORK_TIMEOUT_S = 3.0

_HOW_TO_FIX = (
    f"Set the environment variable {MNIST_ENV_VAR} (or `config.data.manual_dir`, "
    "--config.data.manual_dir=... on the command line) to a folder holding the "
    f"four original MNIST IDX .gz files {', '.join(MNIST_FILES)}; "
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


def find_manual_dir() -> tuple[str | None, str]:
  """The MNIST folder to use when none is given, and where it came from.

  Looks, in order, at `$STN_JAX_MNIST_DIR` (when set and non-empty) and at
  `SHARED_MNIST_DIR` (`../shared/data/mnist` relative to the repository root,
  as `scripts/mnist_env.sh`; used when it is a folder). The folder's content
  is checked by `check_manual_dir`, not here.

  Returns:
    `(folder, source)`: the folder and a few words on where it came from, or
    `(None, "")` when neither is there (TFDS then downloads MNIST).
  """
  env = default_manual_dir()
  if env:
    return env, f"${MNIST_ENV_VAR}"
  if os.path.isdir(SHARED_MNIST_DIR):
    return SHARED_MNIST_DIR, "../shared/data/mnist beside the repository"
  return None, ""


def check_manual_dir(manual_dir: str, source: str = "") -> None:
  """Raises `DatasetError` unless `manual_dir` is a folder with the 4 IDX files.

  Checked before TFDS runs: with a file missing TFDS would try to download it,
  which on an offline machine fails with an unrelated network error. The
  checksums are TFDS's job (it raises on a mismatch, which `load_mnist` wraps).

  Args:
    manual_dir: the folder.
    source: optional words on where the folder came from (e.g.
      "$STN_JAX_MNIST_DIR"), added to the message.
  """
  where = f" (from {source})" if source else ""
  if not os.path.isdir(manual_dir):
    raise DatasetError(
        f"`manual_dir` must be an existing folder, got {manual_dir!r}{where} "
        f"(it does not exist or is not a folder). {_HOW_TO_FIX}")
  missing = [f for f in MNIST_FILES
             if not os.path.isfile(os.path.join(manual_dir, f))]
  if missing:
    raise DatasetError(
        f"`manual_dir` {manual_dir!r}{where} lacks the MNIST file(s) "
        f"{missing}. {_HOW_TO_FIX}")


def can_connect(host: str, port: int,
                timeout: float = NETWORK_TIMEOUT_S) -> bool:
  """True when a TCP connection to `host:port` opens within `timeout` seconds.

  The name lookup counts against the timeout too: the attempt runs in a
  daemon thread, abandoned (False) when it has not succeeded in time.
  """
  result = []

  def attempt():
    try:
      with socket.create_connection((host, port), timeout=timeout):
        result.append(True)
    except OSError:
      result.append(False)

  thread = threading.Thread(target=attempt, daemon=True,
                            name="stn_jax-network-check")
  thread.start()
  thread.join(timeout)
  return bool(result and result[0])


def download_host_reachable(timeout: float = NETWORK_TIMEOUT_S) -> bool:
  """The quick network check before TFDS would download MNIST.

  Tries a TCP connection to `DOWNLOAD_HOST:DOWNLOAD_PORT` (the host TFDS's
  `mnist` builder downloads from) or, when an HTTPS proxy is configured
  (`urllib.request.getproxies()`, i.e. `$https_proxy`), to that proxy.

  Args:
    timeout: seconds to wait, name lookup included.

  Returns:
    Whether the connection opened in time. False means a download would only
    retry until TFDS gives up (minutes).
  """
  host, port = DOWNLOAD_HOST, DOWNLOAD_PORT
  proxy = urllib.request.getproxies().get("https")
  if proxy:
    parsed = urllib.parse.urlsplit(proxy if "://" in proxy else "//" + proxy)
    if parsed.hostname:
      host = parsed.hostname
      port = parsed.port or (443 if parsed.scheme == "https" else 80)
  return can_connect(host, port, timeout)


def load_mnist(*, manual_dir: str | None,
               data_dir: str | None = None) -> MnistArrays:
  """Loads the MNIST train and test splits with TFDS.

  Args:
    manual_dir: folder holding the four IDX `.gz` files (TFDS's manual
      download folder), or None: then `find_manual_dir` looks at
      `$STN_JAX_MNIST_DIR` and `../shared/data/mnist` beside the repository,
      and when neither is there TFDS downloads the files; if MNIST is not
      prepared in `data_dir` yet, `download_host_reachable` is checked first
      (~3 s at most) and an unreachable host raises at once. The folder used
      (or the download) is logged.
    data_dir: TFDS data folder where the prepared data set lives; None keeps
      TFDS's default (`~/tensorflow_datasets` or `$TFDS_DATA_DIR`).

  Returns:
    `MnistArrays` with uint8 `[N, 28, 28]` images and int32 `[N]` labels. The
    sizes are whatever TFDS returns (60000/10000 for the real data; smaller
    under `tfds.testing.mock_data`).

  Raises:
    DatasetError: `manual_dir` (given or found) is missing or incomplete; no
      folder and no network while MNIST is not prepared; TFDS failed (e.g. a
      checksum mismatch from a corrupt file); or the arrays are not
      MNIST-shaped.
  """
  source = "the `manual_dir` argument"
  if manual_dir is None:
    manual_dir, source = find_manual_dir()
  if manual_dir is not None:
    manual_dir = os.fspath(manual_dir)
    check_manual_dir(manual_dir, source)
    logging.info("MNIST: manual download folder %s (from %s).", manual_dir,
                 source)
  # Imported here: TFDS pulls in TensorFlow, which the distortions never need.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  if manual_dir is None:
    _check_download_possible(tfds, data_dir)
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


def _check_download_possible(tfds, data_dir) -> None:
  """With no manual folder: logs what TFDS will do; raises at once when it
  would have to download MNIST and the download host cannot be reached."""
  builder = tfds.builder("mnist", data_dir=data_dir)
  if builder.is_prepared():
    logging.info("MNIST: no manual folder; using the data TFDS prepared in %s.",
                 builder.data_dir)
    return
  logging.info("MNIST: no manual folder ($%s unset, no %s); TFDS has to "
               "download it into %s.", MNIST_ENV_VAR, SHARED_MNIST_DIR,
               builder.data_dir)
  if not download_host_reachable():
    raise DatasetError(
        f"MNIST is not prepared in the TFDS data folder {builder.data_dir!r}, "
        f"no manual folder was found (${MNIST_ENV_VAR} is unset and "
        f"{SHARED_MNIST_DIR!r} does not exist), and the download host "
        f"{DOWNLOAD_HOST}:{DOWNLOAD_PORT} cannot be reached (a "
        f"{NETWORK_TIMEOUT_S:g} s connection check failed: no network?), so a "
        f"TFDS download would only retry for minutes. {_HOW_TO_FIX}")


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


# ------------------------------------------------------------------ test sets

# Bump when `stn_jax.distortions` makes other images for the same config and
# seed, so that cached test sets made by older code are not reused.
_CACHE_VERSION = 1
_TEST_SET_CHUNK = 1000


def _digest(array) -> str:
  array = np.ascontiguousarray(array)
  h = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
  h.update(array.tobytes())
  return h.hexdigest()


def make_test_set(name: str, cfg, images, labels, *, seed: int,
                  cache_dir: str | None = None, clutter_source=None):
  """The fixed distorted test set of one distortion (same for every model).

  Example i is `distortions.make_distort_fn(name, cfg)(jax.random.key(seed),
  images)[i]`, computed in chunks of 1000 to bound memory; the result does
  not depend on the chunking.

  Args:
    name: distortion name.
    cfg: the distortion's config.
    images: `[N, 28, 28]` uint8 or float in [0, 1] (e.g. the MNIST test set).
    labels: `[N]` integer labels.
    seed: Python int seed of the test set.
    cache_dir: if given, the set is cached there as `.npz`, keyed by the name,
      the config values, the seed and hashes of the images, labels and
      clutter source, and reused when present.
    clutter_source: `[M, 28, 28]` images to cut clutter from ("tc"). Default
      for "tc": `images` themselves, so test clutter comes from test digits.

  Returns:
    `(x, y)`: numpy float32 `[N, S, S, 1]` in [0, 1] and int32 `[N]`.
  """
  dist = distortions.get_distortion(name)
  p = distortions.config_values(name, cfg)
  distortions.check_images("images", images)
  labels = np.asarray(labels)
  n = np.shape(images)[0]
  if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
        f"`labels` must be integer with shape [{n}], got {labels.dtype} "
        f"{list(labels.shape)}.")
  if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
    raise ValueError(f"`seed` must be a Python int, got {seed!r}.")
  if dist.needs_clutter and clutter_source is None:
    clutter_source = images
  if not dist.needs_clutter:
    clutter_source = None
  distortions.check_clutter(dist, clutter_source)
  labels = labels.astype(np.int32)

  path = None
  if cache_dir is not None:
    meta = {
        "name": name, "values": p, "seed": int(seed),
        "version": _CACHE_VERSION,
        "prng": str(jax.config.jax_default_prng_impl),
        "images": _digest(np.asarray(images)),
        "labels": _digest(labels),
        "clutter": (None if clutter_source is None
                    else _digest(np.asarray(clutter_source))),
    }
    key_hash = hashlib.sha256(
        json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]
    path = os.path.join(cache_dir, f"{name}_seed{int(seed)}_{key_hash}.npz")
    if os.path.exists(path):
      with np.load(path) as cached:
        return cached["x"], cached["y"]

  x = _distort_all(dist, tuple(p.items()), images, int(seed), clutter_source)
  if path is not None:
    os.makedirs(cache_dir, exist_ok=True)
    # Written to a temporary file and renamed, so a crash leaves no half file.
    fd, tmp = tempfile.mkstemp(dir=cache_dir, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
      np.savez(f, x=x, y=labels)
    os.replace(tmp, path)
  return x, labels


@functools.lru_cache(maxsize=32)
def _chunk_fn(name: str, frozen: tuple):
  dist, p = distortions.get_distortion(name), dict(frozen)

  def fn(keys, images, clutter_source):
    num_sources = None if clutter_source is None else clutter_source.shape[0]
    return distortions.distort_with_keys(dist, p, keys, images,
                                         num_sources, clutter_source)

  return jax.jit(fn)


def _distort_all(dist, frozen, images, seed, clutter_source) -> np.ndarray:
  images = np.asarray(images)
  n = images.shape[0]
  keys = distortions.per_example_keys(jax.random.key(seed), n)
  if clutter_source is not None:
    clutter_source = jax.device_put(np.asarray(clutter_source))
  fn = _chunk_fn(dist.name, frozen)
  chunk = min(_TEST_SET_CHUNK, n)
  chunks = []
  for start in range(0, n, chunk):
    stop = min(start + chunk, n)
    idx = np.arange(start, start + chunk).clip(max=n - 1)
    # Full-size chunks (the last padded with repeats) compile only once.
    out = fn(keys[idx], images[idx], clutter_source)
    chunks.append(np.asarray(out)[: stop - start])
  return np.concatenate(chunks, axis=0)


# ------------------------------------------------------------- a run's data


def make_batch_fn(config, distort_fn, *, data_key, distort_key) -> Callable:
  """`fn(step, train_images, train_labels) -> (images, labels)` (traceable).

  Indices are drawn uniformly with replacement from `fold_in(data_key,
  step)`; the warps from `fold_in(distort_key, step)`. `train_images` (uint8
  `[N, 28, 28]`) are also the clutter source of "tc".
  """
  batch_size = int(config.train.batch_size)

  def fn(step, train_images, train_labels):
    n = train_images.shape[0]
    idx = jax.random.randint(jax.random.fold_in(data_key, step),
                             (batch_size,), 0, n)
    images = distort_fn(jax.random.fold_in(distort_key, step),
                        train_images[idx], train_images)
    return images, train_labels[idx]

  return fn


class Data(NamedTuple):
  """A run's data: the training digits on the devices, the fixed test set."""
  train_images: jax.Array  # [N, 28, 28] uint8, replicated
  train_labels: jax.Array  # [N] int32, replicated
  x_test: np.ndarray  # [M, S, S, 1] float32 distorted test images
  y_test: np.ndarray  # [M] int32


def load_data(config, sharding) -> Data:
  """MNIST (TFDS) and the config's fixed distorted test set.

  `data.num_test_examples` keeps the first N test digits (smoke runs).
  """
  mnist = load_mnist(manual_dir=config.data.manual_dir,
                     data_dir=config.data.data_dir)
  n_test = config.data.num_test_examples or len(mnist.test_images)
  x_test, y_test = make_test_set(
      config.distortion_name, config.distortion, mnist.test_images[:n_test],
      mnist.test_labels[:n_test], seed=int(config.data.test_seed),
      cache_dir=config.data.test_cache_dir)
  return Data(jax.device_put(mnist.train_images, sharding),
              jax.device_put(mnist.train_labels, sharding), x_test, y_test)
