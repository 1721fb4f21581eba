"""Tests of MNIST loading through TFDS (mocked; real data when available)."""

import os
import socket
import time

import numpy as np
import pytest

from stn_jax import input_pipeline as data
from tests import _reference as ref

tfds = pytest.importorskip("tensorflow_datasets")

REAL_DIR = os.environ.get(data.MNIST_ENV_VAR)


def _fake_manual_dir(path, content=b"not mnist"):
  path.mkdir(exist_ok=True)
  for name in data.MNIST_FILES:
    (path / name).write_bytes(content)
  return str(path)


def test_default_manual_dir_reads_the_environment(monkeypatch):
  monkeypatch.setenv(data.MNIST_ENV_VAR, "/some/dir")
  assert data.default_manual_dir() == "/some/dir"
  monkeypatch.setenv(data.MNIST_ENV_VAR, "")
  assert data.default_manual_dir() is None
  monkeypatch.delenv(data.MNIST_ENV_VAR)
  assert data.default_manual_dir() is None


def test_loads_mocked_mnist(tmp_path):
  ref.write_mock_mnist_metadata(tmp_path, train=7, test=5)
  with tfds.testing.mock_data(num_examples=7, data_dir=str(tmp_path)):
    mnist = data.load_mnist(manual_dir=None, data_dir=str(tmp_path))
    # A manual folder holding the four files passes the check (the mocked
    # download is a no-op, so their content is not read).
    with_dir = data.load_mnist(
        manual_dir=_fake_manual_dir(tmp_path / "manual"),
        data_dir=str(tmp_path))
  assert isinstance(mnist, data.MnistArrays)
  for images, labels in ((mnist.train_images, mnist.train_labels),
                         (mnist.test_images, mnist.test_labels)):
    assert images.shape == (7, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (7,) and labels.dtype == np.int32
    assert labels.min() >= 0 and labels.max() <= 9
  np.testing.assert_array_equal(with_dir.train_images, mnist.train_images)


def test_missing_manual_dir_is_a_clear_error(tmp_path):
  with pytest.raises(data.DatasetError, match=data.MNIST_ENV_VAR) as err:
    data.load_mnist(manual_dir=str(tmp_path / "nope"),
                    data_dir=str(tmp_path / "tfds"))
  assert "does not exist" in str(err.value)
  assert isinstance(err.value, ValueError)


def test_incomplete_manual_dir_names_the_missing_files(tmp_path):
  (tmp_path / data.MNIST_FILES[0]).write_bytes(b"x")
  with pytest.raises(data.DatasetError, match="lacks the MNIST file") as err:
    data.load_mnist(manual_dir=str(tmp_path), data_dir=str(tmp_path / "tfds"))
  listed = str(err.value).split("lacks the MNIST file(s)")[1].split("]")[0]
  assert data.MNIST_FILES[0] not in listed
  assert all(name in listed for name in data.MNIST_FILES[1:])
  assert "data.manual_dir" in str(err.value)


def test_corrupt_manual_dir_is_a_clear_error(tmp_path):
  manual = _fake_manual_dir(tmp_path / "manual")
  with pytest.raises(data.DatasetError, match="(?i)checksum") as err:
    data.load_mnist(manual_dir=manual, data_dir=str(tmp_path / "tfds"))
  assert data.MNIST_ENV_VAR in str(err.value)
  assert not (tmp_path / "tfds" / "mnist" / "3.0.1").exists()


@pytest.mark.mnist
@pytest.mark.skipif(not REAL_DIR, reason=f"{data.MNIST_ENV_VAR} is not set")
def test_loads_real_mnist():
  # TFDS's default data_dir: prepared once (~20 s), then reused.
  mnist = data.load_mnist(manual_dir=REAL_DIR)
  assert mnist.train_images.shape == (60000, 28, 28)
  assert mnist.test_images.shape == (10000, 28, 28)
  assert mnist.train_images.dtype == np.uint8
  assert mnist.train_labels.dtype == np.int32
  # MNIST's known class counts.
  np.testing.assert_array_equal(
      np.bincount(mnist.train_labels, minlength=10),
      [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])
  np.testing.assert_array_equal(
      np.bincount(mnist.test_labels, minlength=10),
      [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
  assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
  # Ink sits in the middle; the border rows are nearly blank.
  assert mnist.test_images[:, 0].mean() < 1.0
  assert mnist.test_images[:, 10:18, 10:18].mean() > 50


# ------------------------------------- finding the folder, offline checks


@pytest.fixture(name="no_folder")
def _no_folder(monkeypatch, tmp_path):
  """No $STN_JAX_MNIST_DIR and no ../shared/data/mnist."""
  monkeypatch.delenv(data.MNIST_ENV_VAR, raising=False)
  monkeypatch.setattr(data, "SHARED_MNIST_DIR", str(tmp_path / "no_shared"))


def test_find_manual_dir_looks_at_the_environment_then_the_shared_folder(
    monkeypatch, tmp_path):
  shared = tmp_path / "shared" / "data" / "mnist"
  shared.mkdir(parents=True)
  monkeypatch.setattr(data, "SHARED_MNIST_DIR", str(shared))
  monkeypatch.setenv(data.MNIST_ENV_VAR, "/from/env")
  assert data.find_manual_dir() == ("/from/env", "$STN_JAX_MNIST_DIR")
  monkeypatch.setenv(data.MNIST_ENV_VAR, "")
  folder, source = data.find_manual_dir()
  assert folder == str(shared) and "../shared/data/mnist" in source
  monkeypatch.setattr(data, "SHARED_MNIST_DIR", str(tmp_path / "nope"))
  assert data.find_manual_dir() == (None, "")


def test_shared_folder_is_beside_the_repository():
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  assert data.REPO_ROOT == root
  assert data.SHARED_MNIST_DIR == os.path.normpath(
      os.path.join(root, "..", "shared", "data", "mnist"))


def test_a_found_folder_is_checked_used_and_logged(monkeypatch, tmp_path,
                                                   caplog):
  manual = _fake_manual_dir(tmp_path / "manual")
  monkeypatch.setenv(data.MNIST_ENV_VAR, manual)
  monkeypatch.setattr(data, "download_host_reachable",
                      lambda *a, **k: pytest.fail("network checked"))
  ref.write_mock_mnist_metadata(tmp_path / "tfds", train=7, test=5)
  with caplog.at_level("INFO"), tfds.testing.mock_data(
      num_examples=7, data_dir=str(tmp_path / "tfds")):
    mnist = data.load_mnist(manual_dir=None, data_dir=str(tmp_path / "tfds"))
  assert mnist.train_images.shape == (7, 28, 28)
  assert f"manual download folder {manual} (from $STN_JAX_MNIST_DIR)" in (
      caplog.text)
  # A folder named by the environment that lacks the files says where it
  # came from.
  monkeypatch.setenv(data.MNIST_ENV_VAR, str(tmp_path / "empty"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(data.DatasetError,
                     match=r"empty'? \(from \$STN_JAX_MNIST_DIR\) lacks"):
    data.load_mnist(manual_dir=None, data_dir=str(tmp_path / "tfds"))


def test_the_shared_folder_is_used_when_the_environment_is_unset(
    monkeypatch, tmp_path):
  shared = _fake_manual_dir(tmp_path / "shared")
  monkeypatch.delenv(data.MNIST_ENV_VAR, raising=False)
  monkeypatch.setattr(data, "SHARED_MNIST_DIR", shared)
  seen = {}

  def fake_load(name, *, download_and_prepare_kwargs, **kwargs):
    del name, kwargs
    seen["manual_dir"] = download_and_prepare_kwargs[
        "download_config"].manual_dir
    raise RuntimeError("stop here")

  monkeypatch.setattr(tfds, "load", fake_load)
  with pytest.raises(data.DatasetError, match="stop here"):
    data.load_mnist(manual_dir=None, data_dir=str(tmp_path / "tfds"))
  assert seen["manual_dir"] == shared


def test_offline_without_a_folder_fails_in_seconds(no_folder, monkeypatch,
                                                   tmp_path):
  del no_folder
  monkeypatch.setattr(data, "download_host_reachable", lambda *a, **k: False)
  monkeypatch.setattr(tfds, "load",
                      lambda *a, **k: pytest.fail("TFDS tried to download"))
  start = time.monotonic()
  with pytest.raises(data.DatasetError) as err:
    data.load_mnist(manual_dir=None, data_dir=str(tmp_path / "tfds"))
  assert time.monotonic() - start < 10
  message = str(err.value)
  for needle in ("not prepared", "cannot be reached", data.DOWNLOAD_HOST,
                 "STN_JAX_MNIST_DIR", "config.data.manual_dir",
                 *data.MNIST_FILES):
    assert needle in message, message
  assert isinstance(err.value, ValueError)


def test_online_without_a_folder_goes_to_the_tfds_download(
    no_folder, monkeypatch, tmp_path):
  del no_folder
  monkeypatch.setattr(data, "download_host_reachable", lambda *a, **k: True)
  seen = {}

  def fake_load(name, *, download_and_prepare_kwargs, **kwargs):
    del kwargs
    seen["name"] = name
    seen["manual_dir"] = download_and_prepare_kwargs[
        "download_config"].manual_dir
    raise RuntimeError("download attempted")

  monkeypatch.setattr(tfds, "load", fake_load)
  with pytest.raises(data.DatasetError, match="download attempted"):
    data.load_mnist(manual_dir=None, data_dir=str(tmp_path / "tfds"))
  assert seen == {"name": "mnist", "manual_dir": None}


def test_prepared_data_needs_no_folder_and_no_network(no_folder, monkeypatch,
                                                      tmp_path):
  del no_folder
  monkeypatch.setattr(data, "download_host_reachable",
                      lambda *a, **k: pytest.fail("network checked"))
  ref.write_mock_mnist_metadata(tmp_path, train=7, test=5)
  with tfds.testing.mock_data(num_examples=7, data_dir=str(tmp_path)):
    mnist = data.load_mnist(manual_dir=None, data_dir=str(tmp_path))
  assert mnist.test_images.shape == (7, 28, 28)


def test_can_connect_on_the_local_machine():
  with socket.socket() as server:
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    assert data.can_connect("127.0.0.1", port, timeout=2.0)
  # The same port, now closed: refused at once.
  start = time.monotonic()
  assert not data.can_connect("127.0.0.1", port, timeout=2.0)
  assert time.monotonic() - start < 2.5


def test_download_host_reachable_goes_through_a_configured_proxy(monkeypatch):
  with socket.socket() as proxy:
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(1)
    port = proxy.getsockname()[1]
    for name in ("https_proxy", "HTTPS_PROXY"):
      monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    assert data.download_host_reachable(timeout=2.0)
