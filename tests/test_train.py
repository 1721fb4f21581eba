"""Tests of stn_jax.train and stn_jax.main: end to end, devices, resume, NaN.

Runs use TFDS's `mock_data` (random MNIST-shaped digits) unless
`STN_JAX_MNIST_DIR` points at the real files. `mock_data` needs the data
set's metadata with split sizes (TFDS turns `batch_size=-1` into "the split
size" and crashes on 0), so `_reference.write_mock_mnist_metadata` writes it
to a temporary TFDS data dir first.
"""

import functools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import distorted_mnist
from stn_jax import input_pipeline
from stn_jax import models
from stn_jax import optim
from stn_jax import train
from stn_jax.seeds import SeedAxis
from tests import _reference as ref
from tests import _steps

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
CONFIG_FILE = os.path.join(ROOT, "configs", "distorted_mnist.py")
MOCK_EXAMPLES = 64
RESULT_KEYS = {"distortion", "model", "transform", "protocol", "seed",
               "num_params", "steps", "test_error", "wall_time_s",
               "examples_per_s", "device"}


# Runs `stn_jax.main` under tfds.testing.mock_data:
#   python -c WRAPPER <tfds data_dir> <num_examples> --config=... --workdir=...
_MAIN_ON_MOCK_DATA = textwrap.dedent("""
    import sys
    from absl import app
    import tensorflow_datasets as tfds
    from stn_jax import main
    data_dir, num_examples = sys.argv.pop(1), int(sys.argv.pop(1))
    with tfds.testing.mock_data(num_examples=num_examples, data_dir=data_dir):
      app.run(main.main)
""")


def _env(**extra):
  env = dict(os.environ)
  env.pop("STN_JAX_MNIST_DIR", None)  # mock data, no manual folder
  env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
  env.update(extra)
  return env


def _main_argv(data_dir, workdir, arg, *overrides):
  return [sys.executable, "-c", _MAIN_ON_MOCK_DATA, data_dir,
          str(MOCK_EXAMPLES), f"--config={CONFIG_FILE}:{arg}",
          f"--workdir={workdir}", f"--config.data.data_dir={data_dir}",
          *overrides]


def _restore_params(workdir, step):
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  path = os.path.join(workdir, "checkpoints", str(step), "default")
  return ocp.StandardCheckpointer().restore(path)["params"]


def _checkpoint_steps(workdir):
  return sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))
                if d.isdigit())


@pytest.fixture(scope="module")
def mock_dir(tmp_path_factory):
  return ref.write_mock_mnist_metadata(tmp_path_factory.mktemp("tfds"),
                                      train=MOCK_EXAMPLES, test=MOCK_EXAMPLES)


def test_a_checkpointed_step_has_its_metrics_row_already(mock_dir, tmp_path,
                                                         monkeypatch):
  # A run killed once a checkpoint exists resumes after that step and never
  # writes its row again: the row, evaluation included, must come first.
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from stn_jax import checkpoints  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("STN_JAX_MNIST_DIR", raising=False)
  cfg = distorted_mnist.get_config("r,fcn,smoke")
  cfg.data.data_dir = mock_dir
  workdir = str(tmp_path / "run")
  rows_at_save = {}
  save = checkpoints.save

  def recording_save(manager, step, state):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      rows_at_save[step] = {r["step"]: r for r in map(json.loads, f)}.get(step)
    save(manager, step, state)

  monkeypatch.setattr(checkpoints, "save", recording_save)
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=mock_dir):
    train.train_and_evaluate(cfg, workdir)
  # smoke: checkpoints at steps 2 and 4, the evaluation at 4.
  assert sorted(rows_at_save) == [2, 4]
  assert rows_at_save[2] is not None and "train_loss" in rows_at_save[2]
  assert rows_at_save[4] is not None and "test_error" in rows_at_save[4]


@pytest.mark.slow
def test_smoke_end_to_end_on_mock_data(mock_dir, tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("STN_JAX_MNIST_DIR", raising=False)
  cfg = distorted_mnist.get_config("rts,st_cnn,tps,smoke")
  cfg.data.data_dir = mock_dir
  workdir = str(tmp_path / "run")
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=mock_dir):
    results = train.train_and_evaluate(cfg, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)
  assert RESULT_KEYS <= set(on_disk)
  assert on_disk["test_error"] == results["test_error"]
  assert (on_disk["distortion"], on_disk["model"], on_disk["transform"],
          on_disk["protocol"], on_disk["seed"]) == ("rts", "st_cnn", "tps",
                                                    "smoke", 0)
  assert on_disk["steps"] == cfg.train.num_steps
  assert 0.0 <= on_disk["test_error"] <= 100.0
  assert on_disk["num_test_examples"] == cfg.data.num_test_examples
  model = models.build_model(cfg.model, canvas_size=42)
  assert on_disk["num_params"] == models.param_count(model, canvas_size=42)
  with open(os.path.join(workdir, "transforms.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert any(n.startswith("events.out.tfevents") for n in os.listdir(workdir))
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  assert any("test_error" in r for r in records)
  # The learning curve: every evaluation (smoke: eval_every = num_steps).
  assert on_disk["eval_curve"] == [[r["step"], r["test_error"]]
                                   for r in records if "test_error" in r]
  assert on_disk["eval_curve"][-1] == [cfg.train.num_steps,
                                       results["test_error"]]
  assert {"train_loss", "learning_rate", "examples_per_s"} <= set(
      k for r in records for k in r)
  assert _checkpoint_steps(workdir)[-1] == cfg.train.num_steps
  # One metrics row per logged step (clu's ReportProgress added two more).
  steps = [r["step"] for r in records]
  assert steps == sorted(set(steps)) == list(range(1, cfg.train.num_steps + 1))
  assert not {"uptime", "steps_per_sec"} & set(k for r in records for k in r)
  # The transformer's outputs are in TensorBoard beside the scalars.
  images = _event_images(workdir)
  assert [step for step, _ in images["transformer"]] == [cfg.train.num_steps]
  n, size = cfg.num_transform_examples, 42
  assert images["transformer"][0][1][:2] == (2 * size + 6, n * size + 2 * n + 2)

  # The run loads back for inference, with the parameters it evaluated.
  config, model, params = train.load_trained(workdir)
  assert config.model.transform == "tps" and config.seed == 0
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=mock_dir):
    x_test, y_test = _test_set(cfg)
  logits = jax.jit(model.apply)({"params": params}, x_test)
  error = 100.0 * np.mean(np.argmax(logits, -1) != y_test)
  np.testing.assert_allclose(error, results["test_error"], atol=1e-4)
  # A record written before later config keys existed (as in the ablation
  # workdirs) loads the same model and parameters.
  old = str(tmp_path / "old_record")
  __import__("shutil").copytree(workdir, old)
  with open(os.path.join(old, "results.json")) as f:
    record = json.load(f)
  for key in train.ADDED_KEYS:
    section, name = key.split(".")
    del record["config"][section][name]
  with open(os.path.join(old, "results.json"), "w") as f:
    json.dump(record, f)
  old_config, _, old_params = train.load_trained(old)
  assert old_config == config
  jax.tree.map(np.testing.assert_array_equal, old_params, params)
  out, grid, _ = models.transform_input(model, params, x_test[:2])
  assert out.shape == (2, 21, 21, 1) and grid.shape == (2, 21, 21, 2)

  # Same workdir again: a finished run says so and leaves its files alone.
  before = _snapshot(workdir)
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=mock_dir):
    again = train.train_and_evaluate(cfg, workdir)
  assert again == on_disk
  assert _snapshot(workdir) == before

  # The finished run of ANOTHER config is not returned as this one's.
  other = cfg.copy_and_resolve_references()
  other.train.learning_rate = 0.5
  with pytest.raises(train.FinishedRunConfigError,
                     match=r"`train.learning_rate`: 0.001 there, 0.5 now"):
    train.train_and_evaluate(other, workdir)
  assert _snapshot(workdir) == before


def _snapshot(workdir):
  """{relative path: bytes} of every file under `workdir`."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        out[os.path.relpath(path, workdir)] = f.read()
  return out


def _event_images(workdir):
  """{tag: [(step, (height, width)), ...]} of the image summaries."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  out = {}
  for name in sorted(os.listdir(workdir)):
    if not name.startswith("events.out.tfevents"):
      continue
    for event in tf.compat.v1.train.summary_iterator(
        os.path.join(workdir, name)):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == "images":
          tensor = tf.make_ndarray(value.tensor)  # [width, height, png...]
          shape = (int(tensor[1]), int(tensor[0]))
          out.setdefault(value.tag, []).append((event.step, shape))
  return out


def _test_set(cfg):
  """The run's distorted test set (`train.load_data`)."""
  from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top
  data = input_pipeline.load_data(cfg, NamedSharding(train.make_mesh(), PartitionSpec()))
  return data.x_test, data.y_test


@pytest.mark.slow
def test_vmapped_seeds_equal_separate_runs(mock_dir, tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("STN_JAX_MNIST_DIR", raising=False)
  cfg = distorted_mnist.get_config("r,st_fcn,affine,smoke")
  cfg.data.data_dir = mock_dir
  cfg.train.num_steps = 6
  cfg.train.checkpoint_every = 3
  cfg.train.eval_every = 6
  dirs = {s: str(tmp_path / f"vm_s{s}") for s in (0, 2)}
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=mock_dir):
    together = train.train_and_evaluate_seeds(cfg, dirs)
    alone = []
    for s in (0, 2):
      cfg.seed = s
      alone.append(train.train_and_evaluate(cfg, str(tmp_path / f"one_s{s}")))
  assert [r["seed"] for r in together] == [0, 2]
  for vm, one, s in zip(together, alone, (0, 2)):
    assert vm["seeds_in_step"] == 2 and one["seeds_in_step"] == 1
    assert vm["config"]["seed"] == s
    assert RESULT_KEYS <= set(vm)
    np.testing.assert_allclose(vm["test_loss"], one["test_loss"], rtol=1e-4)
    with open(os.path.join(dirs[s], "results.json")) as f:
      assert json.load(f)["test_loss"] == vm["test_loss"]
    # Each seed's workdir holds that seed's own checkpoints.
    assert _checkpoint_steps(dirs[s]) == [3, 6]
    a = jax.tree.leaves(_restore_params(dirs[s], 6))
    b = jax.tree.leaves(_restore_params(str(tmp_path / f"one_s{s}"), 6))
    for x, y in zip(a, b):
      # By norm: Adam normalises each update, so rounding in a near-zero
      # gradient moves that element by up to the learning rate (seen on jax
      # 0.10.2: 4 of 259,504 elements, 7e-5); another seed's parameters would
      # be off by O(1) of the norm.
      assert np.linalg.norm(x - y) <= 1e-4 * np.linalg.norm(y) + 1e-6, (
          s, x.shape, np.linalg.norm(x - y) / np.linalg.norm(y))
  # The seeds did differ.
  assert together[0]["test_loss"] != together[1]["test_loss"]

  # Re-running: every seed is finished; nothing is trained or written.
  before = {s: _snapshot(d) for s, d in dirs.items()}
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=mock_dir):
    again = train.train_and_evaluate_seeds(cfg, dirs)
  assert again == together
  assert [r["resumed_from_step"] for r in again] == [0, 0]
  assert {s: _snapshot(d) for s, d in dirs.items()} == before


def _seeds_config(mock_dir):
  cfg = distorted_mnist.get_config("r,fcn,smoke")
  cfg.data.data_dir = mock_dir
  cfg.train.num_steps = 6
  cfg.train.checkpoint_every = 3
  cfg.train.eval_every = 6
  return cfg


@pytest.mark.slow
def test_vmapped_seeds_resume_mid_run_and_one_seed_ahead(mock_dir, tmp_path,
                                                         monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("STN_JAX_MNIST_DIR", raising=False)
  cfg = _seeds_config(mock_dir)
  dirs = {s: str(tmp_path / f"s{s}") for s in (0, 2)}

  def forget(seed, *, step=None):
    """Makes seed's run unfinished; `step`: also drops that checkpoint."""
    os.remove(os.path.join(dirs[seed], "results.json"))
    if step is not None:
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(os.path.join(dirs[seed], "checkpoints", str(step)))

  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=mock_dir):
    full = train.train_and_evaluate_seeds(cfg, dirs)
    final = {s: _restore_params(d, 6) for s, d in dirs.items()}
    # Killed mid-run: both seeds hold step 3 only; they resume from there.
    forget(0, step=6)
    forget(2, step=6)
    mid = train.train_and_evaluate_seeds(cfg, dirs)
    # One seed a checkpoint ahead (a kill between the seeds' saves): both
    # resume from the common step 3; the ahead seed keeps its step-6
    # checkpoint (orbax skips a save at a step it already holds).
    forget(0, step=6)
    forget(2)
    ahead = train.train_and_evaluate_seeds(cfg, dirs)
  assert [r["resumed_from_step"] for r in mid] == [3, 3]
  assert [r["resumed_from_step"] for r in ahead] == [3, 3]
  # run_time_s counts every process: a resumed run's includes the time the
  # killed process took to reach step 3, which its own wall time does not.
  for r in full:
    assert 0 < r["run_time_s"] <= r["wall_time_s"]
  for r in mid + ahead:
    assert r["run_time_s"] > r["wall_time_s"]
  for runs in (mid, ahead):
    for got, want in zip(runs, full):
      assert got["steps"] == want["steps"] == 6
      assert got["test_loss"] == want["test_loss"]
      assert got["test_error"] == want["test_error"]
  for s, d in dirs.items():
    assert _checkpoint_steps(d) == [3, 6]
    jax.tree.map(np.testing.assert_array_equal, _restore_params(d, 6),
                 final[s])


@pytest.mark.slow
def test_vmapped_seeds_nan_in_one_seed_stops_all_and_keeps_checkpoints(
    mock_dir, tmp_path, monkeypatch):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  monkeypatch.delenv("STN_JAX_MNIST_DIR", raising=False)
  cfg = _seeds_config(mock_dir)
  dirs = {s: str(tmp_path / f"s{s}") for s in (0, 2)}
  real = train.make_step_functions

  def nan_in_seed_2_at_step_5(*args, **kwargs):
    batch_fn, step_fn, eval_fn = real(*args, **kwargs)

    def step(state, batch):
      state, metrics = step_fn(state, batch)
      if int(np.asarray(state.step).reshape(-1)[0]) == 5:
        loss = np.array(metrics["loss"])
        loss[1] = np.nan  # Seed 2 is the second of the stacked seeds.
        metrics = dict(metrics, loss=loss)
      return state, metrics

    return batch_fn, step, eval_fn

  monkeypatch.setattr(train, "make_step_functions", nan_in_seed_2_at_step_5)
  with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES, data_dir=mock_dir):
    with pytest.raises(train.NonFiniteLossError,
                       match=r"step 5 \(seed\(s\) \[2\]") as err:
      train.train_and_evaluate_seeds(cfg, dirs)
  assert "{0: 3, 2: 3}" in str(err.value)
  # Every seed stops: none is saved past its last good checkpoint and none
  # has results; the good checkpoints are whole and finite.
  for d in dirs.values():
    assert _checkpoint_steps(d) == [3]
    assert not os.path.exists(os.path.join(d, "results.json"))
    assert all(np.all(np.isfinite(p))
               for p in jax.tree.leaves(_restore_params(d, 3)))


def test_vmapped_seeds_bad_workdirs(tmp_path):
  cfg = distorted_mnist.get_config("r,fcn,smoke")
  with pytest.raises(ValueError, match="workdirs"):
    train.train_and_evaluate_seeds(cfg, {})
  with pytest.raises(ValueError, match="distinct"):
    train.train_and_evaluate_seeds(cfg, {0: str(tmp_path), 1: str(tmp_path)})


def test_main_seeds_needs_a_workdir_template(mock_dir, tmp_path):
  proc = subprocess.run(
      _main_argv(mock_dir, str(tmp_path / "run"), "r,fcn,smoke",
                 "--seeds=0,1"),
      cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=300)
  assert proc.returncode != 0
  assert "{seed}" in proc.stderr


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("STN_JAX_MNIST_DIR"),
                    reason="STN_JAX_MNIST_DIR (real MNIST) is not set")
def test_real_mnist_fcn_learns(tmp_path):
  cfg = distorted_mnist.get_config("r,fcn,smoke")
  cfg.train.num_steps = 150
  cfg.train.batch_size = 64
  cfg.train.log_every = 50
  cfg.train.checkpoint_every = 150
  cfg.train.eval_every = 150
  cfg.data.num_test_examples = 1000
  cfg.data.manual_dir = os.environ["STN_JAX_MNIST_DIR"]
  results = train.train_and_evaluate(cfg, str(tmp_path / "run"))
  # Chance is 90%; 150 small steps on rotated digits get well below.
  assert results["test_error"] < 60.0, results


_TWO_DEVICES = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    from flax.training import train_state
    from configs import distorted_mnist
    from stn_jax import models, train

    assert jax.device_count() == 2, jax.devices()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, (64,)).astype(np.int32)
    init_key, data_key, distort_key = jax.random.split(jax.random.key(0), 3)
    out = {}
    wanted = sys.argv[1].split(",")  # The names below to train.
    for name, arg, kernels, n, micro in (
        ("st_xla1", "r,st_cnn,affine", "xla", 1, None),
        ("st_xla2", "r,st_cnn,affine", "xla", 2, None),
        ("cnn1", "r,cnn", "fast", 1, None),
        ("cnn2", "r,cnn", "fast", 2, None),
        ("cnn2m", "r,cnn", "fast", 2, 4),
        ("st1", "r,st_cnn,affine", "fast", 1, None),
        ("st2", "r,st_cnn,affine", "fast", 2, None),
        ("st2m", "r,st_cnn,affine", "fast", 2, 4)):
      if name not in wanted:
        continue
      cfg = distorted_mnist.get_config(arg + ",smoke")
      cfg.train.batch_size = 8
      cfg.train.micro_batch_size = micro
      cfg.model.kernels = kernels
      # Plain SGD, so that the parameters differ by the gradients' rounding:
      # Adam normalises each update, which turns rounding in a near-zero
      # gradient into a difference of the learning rate's size (seen with the
      # micro-batches, and on jax 0.10.2 with the XLA kernels too).
      cfg.train.optimizer, cfg.train.learning_rate = "sgd", 0.1
      tx, schedule = train.make_optimizer(cfg.train)
      model = models.build_model(cfg.model, canvas_size=28)
      params = models.init_params(model, init_key, canvas_size=28)
      if "theta" in params and kernels == "fast":
        # Off the pixel centres, where the bilinear gradient jumps, so that
        # rounding differences stay rounding differences.
        params["theta"]["kernel"] = 1e-3 * jnp.ones_like(
            params["theta"]["kernel"])
      state = train_state.TrainState.create(apply_fn=model.apply,
                                            params=params, tx=tx)
      mesh = train.make_mesh(jax.devices()[:n])
      batch_fn, step_fn, _ = train.make_step_functions(
          cfg, schedule, mesh, data_key=data_key, distort_key=distort_key)
      losses = []
      for step in range(3):
        batch = batch_fn(step, images, labels)
        assert len(batch[0].sharding.device_set) == n
        state, metrics = step_fn(state, batch)
        losses.append(float(metrics["loss"]))
      out[name] = {"losses": losses, "params": {
          jax.tree_util.keystr(k): np.asarray(v).tolist()
          for k, v in jax.tree_util.tree_leaves_with_path(state.params)}}
    print("RESULT" + json.dumps(out))
""")


# The pairs compared train in three subprocesses, so that the parallel test
# workers share the compile time.
@pytest.mark.slow
@pytest.mark.parametrize("pairs", [
    (("st_xla1", "st_xla2"),),
    (("cnn1", "cnn2"), ("cnn1", "cnn2m")),
    (("st1", "st2"), ("st1", "st2m"))], ids=["st_xla", "cnn", "st"])
def test_two_devices_and_micro_batches_give_the_same_loss_as_one(pairs):
  names = sorted({n for pair in pairs for n in pair})
  proc = subprocess.run(
      [sys.executable, "-c", _TWO_DEVICES, ",".join(names)], cwd=ROOT,
      capture_output=True, text=True, timeout=600,
      env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=2"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
  out = json.loads(line[len("RESULT"):])
  assert sorted(out) == names
  # "...2m": two devices, the batch of 8 in micro-batches of 4; "st...": the
  # ST-CNN with its default fast kernels (fused transformer, fast convs).
  for one_key, two_key in pairs:
    one, two = out[one_key], out[two_key]
    assert np.all(np.isfinite(one["losses"]))
    np.testing.assert_allclose(two["losses"], one["losses"], rtol=1e-5)
    # Every parameter leaf (the ST-CNN has 14), not a sample of them.
    assert sorted(two["params"]) == sorted(one["params"])
    assert len(one["params"]) == (14 if one_key.startswith("st") else 6)
    for leaf, a in one["params"].items():
      a, b = np.asarray(a), np.asarray(two["params"][leaf])
      if one_key == "st1":
        # Rounding can flip a few max-pool / bilinear-corner branches of the
        # ST-CNN (seen: up to 3e-3 of a localiser leaf's norm), so its leaves
        # are compared by norm; a wrong gradient would be off by O(1).
        assert np.linalg.norm(b - a) <= 1e-2 * np.linalg.norm(a) + 1e-6, (
            two_key, leaf)
      else:
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6,
                                   err_msg=f"{two_key} {leaf}")
    # The 3 steps did train (the loss moved).
    assert one["losses"][0] != one["losses"][-1]


@pytest.mark.parametrize("arg", ["r,cnn,smoke", "r,st_cnn,tps,smoke",
                                 "r,fcn,smoke"])
def test_micro_batches_give_the_one_pass_step(arg):
  state, batch = _steps.sgd_state_and_batch(arg)
  one_pass = jax.jit(train.train_step)
  micro = jax.jit(functools.partial(train.train_step, micro_batch_size=4))
  # The micro-batches do run as a loop (the 4 passes of `lax.scan`).
  assert "while" not in one_pass.lower(state, batch).as_text()
  assert "while" in micro.lower(state, batch).as_text()
  (s1, m1), (s4, m4) = one_pass(state, batch), micro(state, batch)
  assert set(m1) == set(m4) == {"loss", "error", "grad_norm"}
  for k in m1:
    np.testing.assert_allclose(m4[k], m1[k], rtol=2e-5, err_msg=k)
  _steps.assert_same_update(state, s1, s4)


@pytest.mark.parametrize("micro", [5, 0, 32, 4.0])
def test_train_step_rejects_bad_micro_batch_size(micro):
  cfg = distorted_mnist.get_config("r,fcn,smoke")
  model = models.build_model(cfg.model, canvas_size=28)
  state = train.create_train_state(model, train.make_optimizer(cfg.train)[0],
                                   jax.random.key(0), canvas_size=28)
  batch = (np.zeros((16, 28, 28, 1), np.float32), np.zeros(16, np.int32))
  with pytest.raises(ValueError, match="micro_batch_size"):
    train.train_step(state, batch, micro_batch_size=micro)


_RESUME_ARG = "r,st_fcn,affine,smoke"
_RESUME_STEPS, _RESUME_EVERY = 300, 50
_RESUME_OVERRIDES = (f"--config.train.num_steps={_RESUME_STEPS}",
                     f"--config.train.checkpoint_every={_RESUME_EVERY}",
                     f"--config.train.eval_every={_RESUME_STEPS}",
                     f"--config.train.log_every={_RESUME_EVERY}")


@pytest.fixture(scope="module")
def uninterrupted_run(mock_dir, tmp_path_factory):
  """The workdir of `_RESUME_ARG` trained without interruption."""
  full = str(tmp_path_factory.mktemp("full"))
  proc = subprocess.run(
      _main_argv(mock_dir, full, _RESUME_ARG, *_RESUME_OVERRIDES), cwd=ROOT,
      env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return full


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM],
                         ids=["SIGKILL", "SIGTERM"])
def test_resume_after_kill_equals_uninterrupted_run(mock_dir, tmp_path, signum,
                                                    uninterrupted_run):
  arg, steps, every = _RESUME_ARG, _RESUME_STEPS, _RESUME_EVERY
  overrides = _RESUME_OVERRIDES
  full, killed = uninterrupted_run, str(tmp_path / "killed")

  # Killed (SIGKILL) or stopped (SIGTERM) as soon as its first checkpoint is
  # final.
  err_path = tmp_path / "stderr.txt"
  with open(err_path, "w") as err:  # A file: a full pipe would block it.
    victim = subprocess.Popen(_main_argv(mock_dir, killed, arg, *overrides),
                              cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                              stderr=err)
  first = os.path.join(killed, "checkpoints", str(every))
  deadline = time.time() + 240
  while not os.path.isdir(first) and victim.poll() is None:
    assert time.time() < deadline, "no checkpoint appeared"
    time.sleep(0.01)
  victim.send_signal(signum)
  victim.wait(timeout=120)
  stderr = err_path.read_text()
  assert not os.path.exists(os.path.join(killed, "results.json"))
  if signum == signal.SIGKILL:
    assert victim.returncode == -signal.SIGKILL, "finished before the kill"
    resume_step = None
  else:  # A clean stop: the step under way is checkpointed and logged.
    assert victim.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    match = re.search(r"stopped by SIGTERM after step (\d+); checkpoint "
                      r"saved", stderr)
    assert match, stderr[-3000:]
    resume_step = int(match.group(1))
    assert every <= resume_step < steps
    assert _checkpoint_steps(killed)[-1] == resume_step
    with open(os.path.join(killed, "metrics.jsonl")) as f:
      last = [json.loads(line) for line in f][-1]
    assert last["step"] == resume_step and last["run_time_s"] > 0

  proc = subprocess.run(_main_argv(mock_dir, killed, arg, *overrides),
                        cwd=ROOT, env=_env(), capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(full, "results.json")) as f:
    want = json.load(f)
  with open(os.path.join(killed, "results.json")) as f:
    got = json.load(f)
  assert 0 < got["resumed_from_step"] < steps
  if resume_step is not None:
    assert got["resumed_from_step"] == resume_step
  assert got["steps"] == want["steps"] == steps
  assert got["test_error"] == want["test_error"]
  assert got["test_loss"] == want["test_loss"]
  jax.tree.map(np.testing.assert_array_equal, _restore_params(killed, steps),
               _restore_params(full, steps))


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_good_checkpoint(
    mock_dir, tmp_path):
  workdir = str(tmp_path / "nan")
  proc = subprocess.run(
      _main_argv(mock_dir, workdir, "r,fcn,smoke",
                 "--config.train.learning_rate=1e30",
                 "--config.train.num_steps=20",
                 "--config.train.checkpoint_every=1"),
      cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode != 0
  match = __import__("re").search(r"Non-finite training loss at step (\d+)",
                                  proc.stderr)
  assert match, proc.stderr[-3000:]
  bad_step = int(match.group(1))
  assert not os.path.exists(os.path.join(workdir, "results.json"))
  kept = _checkpoint_steps(workdir)
  assert kept and kept[-1] == bad_step - 1
  params = _restore_params(workdir, kept[-1])
  assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(params))


def test_localizer_lr_multiplier_scales_only_the_transformer_update():
  cfg = distorted_mnist.get_config("r,st_fcn,affine,smoke")
  cfg.train.optimizer, cfg.train.momentum = "sgd", 0.9
  model = models.build_model(cfg.model, canvas_size=28)
  params = models.init_params(model, jax.random.key(0), canvas_size=28)
  # Any gradient will do; every leaf non-zero.
  grads = jax.tree.map(
      lambda p: jnp.linspace(-1.0, 2.0, p.size).reshape(p.shape), params)
  updates = {}
  for m in (1.0, 0.1):
    cfg.train.localizer_lr_multiplier = m
    tx, _ = train.make_optimizer(cfg.train)
    opt_state = tx.init(params)
    for _ in range(2):  # The second update includes the momentum buffer.
      update, opt_state = tx.update(grads, opt_state, params)
    updates[m] = update
  for key in updates[1.0]:
    factor = 0.1 if key in optim.TRANSFORMER_PARAMS else 1.0
    for path, a in jax.tree_util.tree_leaves_with_path(updates[1.0][key]):
      b = dict(jax.tree_util.tree_leaves_with_path(updates[0.1][key]))[path]
      assert np.abs(a).max() > 0, (key, path)
      np.testing.assert_allclose(b, factor * a, rtol=1e-6,
                                 err_msg=f"{key}{jax.tree_util.keystr(path)}")


@pytest.mark.parametrize("seconds, text", [
    (0, "0s"), (0.4, "0s"), (42.3, "42s"), (59.6, "1m00s"), (185, "3m05s"),
    (7380, "2h03m"), (93600, "1d02h")])
def test_format_duration(seconds, text):
  assert train.format_duration(seconds) == text


def test_progress_line_has_a_real_eta():
  # clu's ReportProgress printed whole minutes: "ETA: 0m" for this.
  assert train.progress_line(50, 600, 10.0) == (
      "step 50/600 (8.3%), 10.0 steps/s, ETA 55s")
  assert train.progress_line(600, 600, 10.0).endswith("ETA 0s")
  progress = train._Progress(600)  # pylint: disable=protected-access
  assert progress(1, log=True) is None  # The first step (compile) sets t0.
  assert progress(2, log=False) is None
  assert progress(50, log=True).startswith("step 50/600 (8.3%), ")


def _finished(tmp_path, cfg, name="run", **changes):
  workdir = tmp_path / name
  workdir.mkdir()
  record = {"steps": cfg.train.num_steps, "test_error": 3.0,
            "config": json.loads(cfg.to_json_best_effort())}
  record.update(changes)
  (workdir / "results.json").write_text(json.dumps(record))
  return str(workdir), record


def test_finished_results_rules(tmp_path):
  cfg = distorted_mnist.get_config("r,fcn,smoke")
  done, record = _finished(tmp_path, cfg)
  assert train.finished_results(cfg, [done]) == [record]
  # The seed and where the data is read from do not matter.
  other = cfg.copy_and_resolve_references()
  other.seed, other.data.manual_dir = 3, "/somewhere/else"
  assert train.finished_results(other, [done]) == [record]
  # A seed without a record: not finished (the seeds train together).
  assert train.finished_results(cfg, [done, str(tmp_path / "new")]) is None
  # More steps asked: the run is extended from its checkpoints.
  longer = cfg.copy_and_resolve_references()
  longer.train.num_steps = 10
  assert train.finished_results(longer, [done]) is None
  # A key added to the config since the record was written is not compared.
  _, with_old_keys = _finished(tmp_path, cfg, "older")
  del with_old_keys["config"]["train"]["localizer_lr_multiplier"]
  older = str(tmp_path / "older")
  (tmp_path / "older" / "results.json").write_text(json.dumps(with_old_keys))
  assert train.finished_results(cfg, [older]) == [with_old_keys]
  # A record without a config (older code) is not trusted.
  old, _ = _finished(tmp_path, cfg, "old", config=None)
  assert train.finished_results(cfg, [old]) is None
  # The same step count under another config: an error naming the keys.
  changed = cfg.copy_and_resolve_references()
  changed.model.classifier.hidden = (10, 10)
  changed.train.optimizer = "sgd"
  with pytest.raises(train.FinishedRunConfigError) as e:
    train.finished_results(changed, [done])
  hidden = list(cfg.model.classifier.hidden)
  assert f"`model.classifier.hidden`: {hidden} there, [10, 10] now" in str(
      e.value)
  assert "`train.optimizer`: 'adam' there, 'sgd' now" in str(e.value)
  assert done in str(e.value)


def test_transforms_grid_puts_outputs_under_inputs():
  from stn_jax import writers  # pylint: disable=g-import-not-at-top
  inputs = np.zeros((3, 42, 42, 1), np.float32)
  outputs = np.ones((3, 21, 21, 1), np.float32)
  grid = writers.transforms_grid(inputs, outputs)
  assert grid.shape == (1, 2 * 42 + 6, 3 * 42 + 8, 1)
  assert grid.dtype == np.float32 and 0.0 <= grid.min() <= grid.max() <= 1.0
  # Outputs scaled up by 2 (nearest) to the input's cell size.
  np.testing.assert_array_equal(grid[0, 2:44, 2:44], 0.0)
  np.testing.assert_array_equal(grid[0, 46:88, 2:44], 1.0)
  # An output size that does not divide the input's: centred in its cell.
  odd = writers.transforms_grid(inputs, np.ones((3, 20, 20, 1)))
  assert odd.shape == grid.shape
  np.testing.assert_array_equal(odd[0, 46 + 11:46 + 31, 2 + 11:2 + 31], 1.0)
  with pytest.raises(ValueError, match="same"):
    writers.transforms_grid(inputs, outputs[:2])


@pytest.mark.parametrize("num_seeds", [1, 3])
def test_evaluate_matches_numpy_with_padding(num_seeds):
  # 10 examples in batches of 4: the last batch is padded with 2 zeros.
  cfg = distorted_mnist.get_config("r,fcn,smoke")
  model = models.build_model(cfg.model, canvas_size=28)
  tx, schedule = train.make_optimizer(cfg.train)
  states = [train.create_train_state(model, tx, jax.random.key(s),
                                     canvas_size=28) for s in range(num_seeds)]
  axis = SeedAxis(tuple(range(num_seeds)))
  state = axis.stack(states)
  mesh = train.make_mesh()
  keys = axis.stack([jax.random.split(jax.random.key(s), 2)
                     for s in range(num_seeds)])
  _, _, eval_fn = train.make_step_functions(
      cfg, schedule, mesh, data_key=keys[..., 0], distort_key=keys[..., 1])
  rng = np.random.default_rng(0)
  x = rng.random((10, 28, 28, 1), np.float32)
  y = rng.integers(0, 10, 10).astype(np.int32)
  sharding = jax.sharding.NamedSharding(mesh,
                                        jax.sharding.PartitionSpec("data"))
  got = train.evaluate(eval_fn, state, x, y, batch_size=4, sharding=sharding)
  for i, st in enumerate(states):
    logits = np.asarray(jax.jit(model.apply)({"params": st.params}, x),
                        np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    want_loss = -logp[np.arange(10), y].mean()
    want_error = 100.0 * np.mean(logits.argmax(1) != y)
    np.testing.assert_allclose(axis.value(got["test_loss"], i), want_loss,
                               rtol=1e-5)
    assert axis.value(got["test_error"], i) == pytest.approx(want_error)
