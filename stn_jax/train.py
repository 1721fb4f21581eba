"""Training and evaluation of the distorted-MNIST models (flax-examples style).

`train_and_evaluate(config, workdir)` trains one model of
`configs/distorted_mnist.py` and returns its results dict (also written to
`workdir/results.json`). What it does:

* Data (`stn_jax.input_pipeline`): MNIST stays on the device; each step
  draws `batch_size` training indices uniformly WITH replacement from
  `fold_in(data_key, step)` and distorts them with `fold_in(distort_key,
  step)` (`stn_jax.distortions.make_distort_fn`). The batch is therefore a
  pure function of (seed, step): a resumed run sees exactly the batches of
  an uninterrupted one. The test set is fixed (`data.test_seed`).
* Devices: one `Mesh` over all devices with a "data" axis; the batch is
  sharded along it (`NamedSharding(mesh, P("data"))`), the train state is
  replicated, and the jitted `train_step` is the same program on 1 CPU or
  several GPUs / hosts (`config.distributed` calls
  `jax.distributed.initialize()` in `stn_jax.main`).
* Metrics (loss, error %, learning rate, examples/s, test loss / error) go to
  `workdir/metrics.jsonl` (one row per logged step) and TensorBoard
  (`clu.metric_writers`); at each evaluation of an ST model, a picture of
  test inputs above the transformer's outputs goes to TensorBoard too
  (`writers.transforms_grid`). Every `train.log_every` steps a progress line
  (steps/s since the last one, ETA in seconds when under a minute) goes to
  the log (`progress_line`).
* A finished run is not re-run: when every seed's workdir holds a
  `results.json` at `train.num_steps` steps whose config equals the current
  one, `train_and_evaluate_seeds` prints its result and returns it, leaving
  every file as it was (`finished_results`); a finished run of a DIFFERENT
  config raises `FinishedRunConfigError` naming the differing keys.
  `load_trained(workdir)` loads a finished run for inference.
* Orbax `CheckpointManager` in `workdir/checkpoints`: every
  `train.checkpoint_every` steps and at the end; a run restarted with the
  same workdir resumes from the latest checkpoint. SIGTERM (`kill`, a
  cluster's pre-emption, a stopped sweep) stops the run cleanly: the step
  under way finishes, is logged and checkpointed, and `StoppedBySignal`
  (`stn_jax.stop_signal`) is raised; `stn_jax.main` exits with 143.
* A non-finite loss or gradient stops the run with `NonFiniteLossError`
  naming the step; the last good checkpoint is kept (the bad state is never
  saved).
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Callable, Mapping, NamedTuple, Optional

from absl import logging
from flax.training import train_state as train_state_lib
import jax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from stn_jax import checkpoints
from stn_jax import config_checks as checks
from stn_jax import distortions
from stn_jax import input_pipeline
from stn_jax import models
from stn_jax import plotting
from stn_jax import stop_signal
from stn_jax import writers as writers_lib
from stn_jax.cpu import xla_options
from stn_jax.optim import make_optimizer
from stn_jax.optim import OPTIMIZERS
from stn_jax.optim import SCHEDULES
from stn_jax.seeds import SeedAxis

TrainState = train_state_lib.TrainState
DATA_AXIS = "data"


class NonFiniteLossError(FloatingPointError):
  """The training loss or gradient became NaN or inf."""


class FinishedRunConfigError(ValueError):
  """A workdir holds a finished run of a different config."""


# ----------------------------------------------------------------- config


def validate_config(cfg: ml_collections.ConfigDict) -> None:
  """Raises ValueError naming the first invalid key and value of `cfg`.

  Checks names against the registries (distortions, models, transforms,
  optimizers, schedules), the distortion numbers (via
  `stn_jax.distortions.config_values`), widths, step counts and rates.
  Device-dependent checks (batch divisible by the device count) happen in
  `train_and_evaluate`.
  """
  checks.check_int("seed", cfg.seed, 0)
  checks.check_choice("protocol", cfg.protocol,
                      ("paper", "fast", "quick", "smoke"))
  checks.check_choice("distortion_name", cfg.distortion_name,
                      tuple(distortions.DISTORTIONS))
  defaults = distortions.default_distortion_config(cfg.distortion_name)
  checks.check_keys("distortion", cfg.distortion, defaults.keys())
  distortions.config_values(cfg.distortion_name, cfg.distortion)
  canvas = int(cfg.distortion.canvas_size)

  m = cfg.model
  models.validate_model_config(m, canvas_size=canvas)

  t = cfg.train
  for key in ("num_steps", "batch_size", "lr_decay_every", "checkpoint_every",
              "max_checkpoints_to_keep", "eval_every", "log_every",
              "eval_batch_size"):
    checks.check_int(f"train.{key}", t[key])
  checks.check_int("train.warmup_steps", t.warmup_steps, 0)
  if t.micro_batch_size is not None:
    checks.check_int("train.micro_batch_size", t.micro_batch_size)
    if t.batch_size % t.micro_batch_size:
      checks.fail("train.micro_batch_size", t.micro_batch_size,
                  f"None or a divisor of train.batch_size ({t.batch_size})")
  checks.check_choice("train.xla_options", t.xla_options,
                      tuple(xla_options.XLA_OPTIONS))
  checks.check_choice("train.optimizer", t.optimizer, tuple(OPTIMIZERS))
  checks.check_choice("train.lr_schedule", t.lr_schedule, tuple(SCHEDULES))
  checks.check_float("train.learning_rate", t.learning_rate, 0.0, strict=True)
  checks.check_float("train.momentum", t.momentum)
  if t.momentum >= 1:
    checks.fail("train.momentum", t.momentum, "in [0, 1)")
  checks.check_float("train.lr_decay_factor", t.lr_decay_factor, 0.0,
                     strict=True)
  checks.check_float("train.weight_decay", t.weight_decay)
  checks.check_float("train.localizer_lr_multiplier", t.localizer_lr_multiplier,
                     0.0, strict=True)
  if m.name not in models.ST_MODELS and t.localizer_lr_multiplier != 1.0:
    checks.fail("train.localizer_lr_multiplier", t.localizer_lr_multiplier,
                f"1.0 for model {m.name!r} (it has no spatial transformer)")
  if t.lr_schedule == "cosine" and t.warmup_steps >= t.num_steps:
    checks.fail("train.warmup_steps", t.warmup_steps,
                f"< train.num_steps ({t.num_steps}) for the cosine schedule")

  d = cfg.data
  checks.check_int("data.test_seed", d.test_seed, 0)
  if d.num_test_examples is not None:
    checks.check_int("data.num_test_examples", d.num_test_examples)
  for key in ("manual_dir", "data_dir", "test_cache_dir"):
    if d[key] is not None and not isinstance(d[key], str):
      checks.fail(f"data.{key}", d[key], "a path string or None")
  checks.check_int("num_transform_examples", cfg.num_transform_examples, 0)
  if not isinstance(cfg.distributed, bool):
    checks.fail("distributed", cfg.distributed, "a bool")


# ------------------------------------------------------------ the steps


def make_mesh(devices=None) -> Mesh:
  """A 1D mesh with axis "data" over `devices` (default: all devices)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def create_train_state(model, tx, key, *, canvas_size: int) -> TrainState:
  """A fresh `TrainState` (step 0) for `[B, S, S, 1]` inputs."""
  params = models.init_params(model, key, canvas_size=canvas_size)
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def _loss_and_errors(logits, labels):
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  errors = (jnp.argmax(logits, -1) != labels).astype(jnp.float32)
  return losses, errors


def _micro_batches(x, micro_batch_size: int):
  """`[B, ...]` -> `[n, m, ...]` (n = B // m); micro-batch i: rows i, i + n...

  Strided, so that every micro-batch keeps rows of each device's shard of
  the batch (contiguous blocks along the mesh's "data" axis).
  """
  n = x.shape[0] // micro_batch_size
  return jnp.swapaxes(x.reshape((micro_batch_size, n) + x.shape[1:]), 0, 1)


def train_step(state: TrainState, batch, *, schedule=None,
               micro_batch_size: Optional[int] = None):
  """One SGD step on `batch = (images [B, S, S, 1] f32, labels [B] int32)`.

  With `micro_batch_size` m (a divisor of B), the forward and backward
  passes run on the B // m micro-batches one after another (`lax.scan`)
  and the step uses the mean of their gradients: the full batch's mean
  gradient, up to float rounding, with m examples' activations in memory at
  a time (on CPU the convolutional models' steps were 10-25 % faster at
  m = 64 than in one pass of 256: `benchmarks/results/train_step_cpu.md`).
  None: the whole batch in one pass.

  Returns `(new_state, metrics)`; metrics are scalars: `loss` (mean
  cross-entropy), `error` (% of the batch misclassified), `grad_norm` (global
  L2 norm, non-finite when the update is) and `learning_rate` (the rate used
  by this step, when `schedule` is given).
  """
  images, labels = batch

  def loss_fn(params, images, labels):
    logits = state.apply_fn({"params": params}, images)
    losses, errors = _loss_and_errors(logits, labels)
    return losses.mean(), errors.mean()

  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  b = images.shape[0]
  if micro_batch_size is None or micro_batch_size == b:
    (loss, error), grads = grad_fn(state.params, images, labels)
  else:
    if (isinstance(micro_batch_size, bool) or
        not isinstance(micro_batch_size, (int, np.integer)) or
        micro_batch_size < 1 or b % micro_batch_size):
      raise ValueError(f"`micro_batch_size` must be a positive divisor of "
                       f"the batch size {b}, got {micro_batch_size!r}.")

    def accumulate(total, micro_batch):
      (loss, error), grads = grad_fn(state.params, *micro_batch)
      return jax.tree.map(jnp.add, total, (loss, error, grads)), None

    zero = (jnp.zeros(()), jnp.zeros(()),
            jax.tree.map(jnp.zeros_like, state.params))
    total, _ = jax.lax.scan(accumulate, zero, (
        _micro_batches(images, micro_batch_size),
        _micro_batches(labels, micro_batch_size)))
    loss, error, grads = jax.tree.map(
        lambda t: t / (b // micro_batch_size), total)
  new_state = state.apply_gradients(grads=grads)
  metrics = {"loss": loss, "error": 100.0 * error,
             "grad_norm": optax.tree.norm(grads)}
  if schedule is not None:
    metrics["learning_rate"] = schedule(state.step)
  return new_state, metrics


def eval_step(state: TrainState, images, labels, weights):
  """Sums of (loss, errors, weight) over a padded test batch.

  `weights [B]` is 1 for real examples and 0 for padding.
  """
  logits = state.apply_fn({"params": state.params}, images)
  losses, errors = _loss_and_errors(logits, labels)
  return (jnp.sum(losses * weights), jnp.sum(errors * weights),
          jnp.sum(weights))


def make_step_functions(config, schedule, mesh: Mesh, *, data_key,
                        distort_key) -> tuple:
  """The jitted `(batch_fn, step_fn, eval_fn)` of a run on `mesh`.

  * `batch_fn(step, train_images, train_labels) -> (images, labels)`, both
    sharded along the mesh's "data" axis (`input_pipeline.make_batch_fn`).
  * `step_fn(state, batch) -> (state, metrics)`: `train_step` with the state
    replicated and the batch sharded; the state argument is donated;
    compiled with the XLA options set `config.train.xla_options`
    (`stn_jax.cpu.xla_options`) for the mesh's platform.
  * `eval_fn(state, images, labels, weights)`: `eval_step`, batch sharded.

  With stacked keys (`data_key`, `distort_key` of shape `[S]`: S seeds
  trained together) every function is vmapped over the seeds: batches are
  `[S, B, ...]`, the state's leaves `[S, ...]`, metrics `[S]` and eval sums
  `[S]` (the test batch is shared).
  """
  stacked = data_key.ndim > 0
  replicated = NamedSharding(mesh, P())
  data_sharding = NamedSharding(
      mesh, P(None, DATA_AXIS) if stacked else P(DATA_AXIS))
  test_sharding = NamedSharding(mesh, P(DATA_AXIS))
  distort_fn = distortions.make_distort_fn(config.distortion_name,
                                           config.distortion)
  step = functools.partial(train_step, schedule=schedule,
                           micro_batch_size=config.train.micro_batch_size)
  if not stacked:
    batch = input_pipeline.make_batch_fn(config, distort_fn,
                                         data_key=data_key,
                                         distort_key=distort_key)
    evaluate_fn = eval_step
  else:
    def batch(i, train_images, train_labels):
      one = lambda dk, tk: input_pipeline.make_batch_fn(
          config, distort_fn, data_key=dk, distort_key=tk)(
              i, train_images, train_labels)
      return jax.vmap(one)(data_key, distort_key)
    step = jax.vmap(step)
    evaluate_fn = jax.vmap(eval_step, in_axes=(0, None, None, None))
  batch_fn = jax.jit(batch, out_shardings=(data_sharding, data_sharding))
  step_fn = jax.jit(
      step, in_shardings=(replicated, (data_sharding, data_sharding)),
      out_shardings=(replicated, replicated), donate_argnums=0,
      compiler_options=xla_options.compiler_options(
          config.train.xla_options, platform=mesh.devices.flat[0].platform))
  eval_fn = jax.jit(evaluate_fn, in_shardings=(replicated,) + (
      test_sharding,) * 3, out_shardings=replicated)
  return batch_fn, step_fn, eval_fn


def evaluate(eval_fn, state, x, y, *, batch_size: int, sharding) -> dict:
  """Loss and error (%) of `state` on the whole `(x [M, S, S, 1], y [M])`.

  Runs in padded batches of `batch_size` (one compiled shape). With a
  seed-stacked `eval_fn` (`make_step_functions`) the values are `[S]` arrays.
  """
  n = len(x)
  loss_sum = err_sum = count = 0.0
  for start in range(0, n, batch_size):
    xb, yb = x[start:start + batch_size], y[start:start + batch_size]
    pad = batch_size - len(xb)
    w = np.concatenate([np.ones(len(xb), np.float32),
                        np.zeros(pad, np.float32)])
    if pad:
      xb = np.concatenate([xb, np.zeros((pad,) + xb.shape[1:], xb.dtype)])
      yb = np.concatenate([yb, np.zeros(pad, yb.dtype)])
    xb, yb, w = jax.device_put((xb, yb, w), sharding)
    sums = [np.asarray(v, np.float64)
            for v in jax.device_get(eval_fn(state, xb, yb, w))]
    loss_sum = loss_sum + sums[0]
    err_sum = err_sum + sums[1]
    count = count + sums[2]
  out = {"test_loss": loss_sum / count, "test_error": 100.0 * err_sum / count}
  return {k: float(v) if np.ndim(v) == 0 else v for k, v in out.items()}


# ------------------------------------------------------------ the run


def itstime(step: int, every: int, total: int) -> bool:
  """Whether a periodic action (log, checkpoint, eval) runs after `step`."""
  return step % every == 0 or step == total


def _check_workdirs(workdirs: Mapping[int, str]) -> tuple:
  """`(SeedAxis, [workdir per seed])` of `workdirs`; folders created."""
  if not workdirs:
    checks.fail("workdirs", workdirs, "at least one seed -> workdir")
  axis = SeedAxis(tuple(sorted(int(k) for k in workdirs)))
  dirs = [os.fspath(workdirs[k]) for k in axis.seeds]
  if len({os.path.abspath(d) for d in dirs}) != len(dirs):
    checks.fail("workdirs", workdirs, "a distinct folder per seed")
  for d in dirs:
    os.makedirs(d, exist_ok=True)
  return axis, dirs


def _check_devices(train_cfg, num_devices: int) -> None:
  for key in ("batch_size", "eval_batch_size", "micro_batch_size"):
    if train_cfg[key] is not None and train_cfg[key] % num_devices:
      checks.fail(f"train.{key}", train_cfg[key],
                  f"divisible by the number of devices ({num_devices})")


def restore_or_init(model, tx, keys, managers, dirs, *, axis: SeedAxis,
                    canvas_size: int, num_steps: int) -> tuple:
  """`(state, start_step)`: every seed's latest common checkpoint, or new.

  `keys[i]` initialises seed i when nothing is saved; the states come back
  in the seed axis' form (`SeedAxis.stack`).
  """
  states = [create_train_state(model, tx, k, canvas_size=canvas_size)
            for k in keys]
  start = checkpoints.common_step(managers, dirs)
  if start > num_steps:
    checks.fail("train.num_steps", num_steps,
                f">= the step of the latest checkpoint ({start}) in "
                f"{', '.join(checkpoints.checkpoint_dir(d) for d in dirs)}")
  if start:
    states = [checkpoints.restore(m, start, states[0]) for m in managers]
    logging.info("Resumed from the checkpoint of step %d.", start)
    print(f"Resumed from step {start} "
          f"({', '.join(checkpoints.checkpoint_dir(d) for d in dirs)})",
          flush=True)
  return axis.stack(states), start


def format_duration(seconds: float) -> str:
  """`42s`, `3m05s`, `2h03m`, `1d02h`: a duration for a progress line."""
  secs = max(0, int(round(seconds)))
  if secs < 60:
    return f"{secs}s"
  if secs < 3600:
    return f"{secs // 60}m{secs % 60:02d}s"
  if secs < 86400:
    return f"{secs // 3600}h{secs % 3600 // 60:02d}m"
  return f"{secs // 86400}d{secs % 86400 // 3600:02d}h"


def progress_line(step: int, num_steps: int, steps_per_s: float) -> str:
  """`step 50/600 (8.3%), 11.2 steps/s, ETA 49s`."""
  eta = (num_steps - step) / steps_per_s if steps_per_s > 0 else math.inf
  return (f"step {step}/{num_steps} ({100 * step / num_steps:.1f}%), "
          f"{steps_per_s:.1f} steps/s, ETA "
          f"{format_duration(eta) if math.isfinite(eta) else '?'}")


class _Progress:
  """Steps/s and ETA between log steps, measured from the end of the first
  step (which includes compilation). clu's `ReportProgress` printed the ETA
  in whole minutes ("ETA: 0m" for any run with under a minute to go, i.e. a
  whole `quick` run) and wrote `steps_per_sec` and `uptime` as two extra
  metric rows per log step."""

  def __init__(self, num_steps: int):
    self.num_steps = num_steps
    self._mark = None  # (step, time.monotonic()) of the last measurement.

  def __call__(self, step: int, log: bool) -> Optional[str]:
    """Called after each step; returns the progress line at a log step."""
    now = time.monotonic()
    if self._mark is None:
      self._mark = (step, now)
      return None
    if not log:
      return None
    steps_per_s = (step - self._mark[0]) / max(now - self._mark[1], 1e-9)
    self._mark = (step, now)
    return progress_line(step, self.num_steps, steps_per_s)


# Keys whose value does not change what a run trains: where the data is read
# from. `finished_results` ignores them (and `seed`, one per workdir).
LOCATION_KEYS = ("seed", "data.manual_dir", "data.data_dir",
                 "data.test_cache_dir")


def _flat(tree, prefix: str = "") -> dict:
  """Nested dicts -> {"a.b.c": leaf}."""
  if not isinstance(tree, Mapping):
    return {prefix: tree}
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
  return out


def config_differences(recorded: Mapping, config: ml_collections.ConfigDict,
                       ignore=LOCATION_KEYS) -> dict:
  """{key: (recorded value, current value)} of the keys that differ.

  `recorded` is a results.json's `config` (JSON: tuples read back as
  lists); `config` is compared in the same JSON form. Keys in `ignore` are
  left out, and so are keys on one side only: a record written before a
  config key was added (new keys default to the old behaviour) or after one
  was removed still matches on every key both know.
  """
  now = _flat(json.loads(config.to_json_best_effort()))
  old = _flat(json.loads(json.dumps(recorded)))
  return {k: (old[k], now[k]) for k in sorted(set(now) & set(old))
          if k not in ignore and old[k] != now[k]}


def _read_results(workdir: str) -> Optional[dict]:
  path = os.path.join(workdir, "results.json")
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None  # A truncated file: the run is not finished.


def finished_results(config: ml_collections.ConfigDict,
                     dirs) -> Optional[list]:
  """Every workdir's results dict when all of them hold a finished run.

  A workdir's run is finished when its `results.json` has `steps` ==
  `config.train.num_steps` and records a config that equals `config`
  (`config_differences`: except `LOCATION_KEYS`, the seed and where the
  data is read from, and keys that only one of them has).
  Returns None when some workdir has no such record (a record without a
  `config`, from older code, counts as not finished: that run resumes).
  A record at `train.num_steps` steps of a different config raises
  `FinishedRunConfigError` naming the keys: re-running it would only
  re-evaluate the old model under the new config's name. A record at a
  different step count is a run being extended (or shortened): it resumes
  from its checkpoints as before.
  """
  found = []
  for d in dirs:
    record = _read_results(d)
    if (record is None or record.get("steps") != config.train.num_steps
        or not isinstance(record.get("config"), Mapping)):
      found.append(None)
      continue
    diff = config_differences(record["config"], config)
    if diff:
      what = "; ".join(f"`{k}`: {a!r} there, {b!r} now"
                       for k, (a, b) in diff.items())
      raise FinishedRunConfigError(
          f"workdir {d} holds a finished run ({record['steps']} steps) of a "
          f"different config ({what}). Use another --workdir for this "
          f"config (or delete {d} to train it there afresh).")
    found.append(record)
  return None if any(r is None for r in found) else found


class _Interval:
  """Training metrics since the last log line."""

  def __init__(self):
    self.losses, self.errors, self.time, self.steps = [], [], 0.0, 0

  def add(self, metrics, seconds: float):
    self.losses.append(np.asarray(metrics["loss"]))
    self.errors.append(np.asarray(metrics["error"]))
    self.time += seconds
    self.steps += 1

  def scalars(self, axis: SeedAxis, i: int, metrics, batch_size: int) -> dict:
    return {
        "train_loss": axis.value(np.mean(self.losses, axis=0), i),
        "train_error": axis.value(np.mean(self.errors, axis=0), i),
        "learning_rate": axis.value(metrics["learning_rate"], i),
        # Per model: each seed trains on its own batch.
        "examples_per_s": self.steps * batch_size / max(self.time, 1e-9),
    }


def _stop_on_non_finite(metrics, done: int, axis: SeedAxis, managers,
                        writers, dirs) -> None:
  """Raises NonFiniteLossError (after saving what is saved) on a NaN/inf."""
  bad = [s for i, s in enumerate(axis.seeds)
         if not (np.isfinite(axis.value(metrics["loss"], i)) and
                 np.isfinite(axis.value(metrics["grad_norm"], i)))]
  if not bad:
    return
  for m in managers:
    m.wait_until_finished()
  for w in writers:
    w.flush()
  good = {s: m.latest_step() for s, m in zip(axis.seeds, managers)}
  raise NonFiniteLossError(
      f"Non-finite training loss at step {done} (seed(s) {bad}; "
      f"loss={metrics['loss']}, grad_norm={metrics['grad_norm']}): "
      f"stopping. The last good checkpoints (seed: step) are {good} in "
      f"{', '.join(checkpoints.checkpoint_dir(d) for d in dirs)}.")


def _results(config, *, axis: SeedAxis, i: int, workdir: str, evaluation,
             num_params: int, final_step: int, num_test: int,
             start_time: float, train_time: float, trained_steps: int,
             start_step: int, num_devices: int,
             run_time: Optional[float]) -> dict:
  """Seed number `i`'s results dict (see `train_and_evaluate`)."""
  seed = axis.seeds[i]
  seed_config = config.copy_and_resolve_references()
  with seed_config.unlocked():
    seed_config.seed = seed
  return {
      "distortion": config.distortion_name,
      "model": config.model.name,
      "transform": config.model.transform,
      "protocol": config.protocol,
      "seed": seed,
      "num_params": num_params,
      "steps": final_step,
      "test_error": evaluation["test_error"],
      "test_loss": evaluation["test_loss"],
      "num_test_examples": num_test,
      "wall_time_s": time.time() - start_time,
      # Every process of the run, resumes included (None: unknown, an
      # earlier process predates the field).
      "run_time_s": run_time,
      # Examples of this model per second of training steps.
      "examples_per_s": (trained_steps * config.train.batch_size / train_time
                         if train_time else None),
      "seeds_in_step": axis.size,
      "device": _device_description(),
      "num_devices": num_devices,
      "resumed_from_step": start_step,
      # Test error (%) at every evaluation: the learning curve.
      "eval_curve": writers_lib.read_eval_curve(
          os.path.join(workdir, writers_lib.METRICS_FILE)),
      "config": json.loads(seed_config.to_json_best_effort()),
  }


def _device_description() -> str:
  devices = jax.devices()
  return f"{len(devices)}x {devices[0].platform}:{devices[0].device_kind}"


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       validated: bool = False) -> dict:
  """Trains and evaluates one model; returns (and writes) the results dict.

  Args:
    config: a config of `configs/distorted_mnist.py` (validated here).
    workdir: output folder; an existing one with checkpoints is resumed.
    validated: the caller has run `validate_config(config)` already (as
      `stn_jax.main` does), so it is not run again.

  Returns:
    The dict written to `workdir/results.json`: distortion, model, transform,
    protocol, seed, num_params, steps, test_error (%), test_loss,
    num_test_examples, wall_time_s (this process), run_time_s (every
    process of the run, resumes included; None when an earlier process
    predates the field), examples_per_s (training only, per model),
    seeds_in_step (1 here), device, num_devices, resumed_from_step,
    eval_curve ([[step, test_error], ...] of every evaluation, from
    `metrics.jsonl`), config.

  Raises:
    ValueError: invalid config, data or device count.
    NonFiniteLossError: the loss or gradient became NaN/inf.
    stop_signal.StoppedBySignal: SIGTERM arrived; checkpoint saved.
  """
  return train_and_evaluate_seeds(config, {int(config.seed): workdir},
                                  validated=validated)[0]


def train_and_evaluate_seeds(config: ml_collections.ConfigDict,
                             workdirs: Mapping[int, str], *,
                             validated: bool = False) -> list[dict]:
  """Trains S >= 1 seeds of one config together, in one (vmapped) step.

  Each seed is a complete run of `train_and_evaluate` with `config.seed`
  set to it, in its own workdir (checkpoints, metrics, `results.json`, each
  resumable alone); with S > 1 the seeds' parameters are stacked and
  trained by one jitted `jax.vmap(train_step)`, which beats S separate steps
  for the small models (`benchmarks/results/vmapped_seeds_cpu.md`). The
  seed axis is handled by `stn_jax.seeds.SeedAxis`.

  When every workdir already holds the finished run of this config
  (`finished_results`), nothing is loaded, trained, evaluated or written:
  it prints "already finished: test error X% (workdir)" per seed and
  returns the recorded results.

  Args:
    config: a config of `configs/distorted_mnist.py`; its `seed` is ignored.
    workdirs: seed -> output folder (distinct folders).
    validated: the caller has run `validate_config(config)` already.

  Returns:
    One results dict per seed, in increasing seed order (see
    `train_and_evaluate`; `seeds_in_step` is S).

  Raises:
    ValueError: invalid config, seeds, data, device count, or checkpoints
      of the seeds that cannot be resumed together.
    FinishedRunConfigError: a workdir holds a finished run of another
      config.
    NonFiniteLossError: the loss or gradient of a seed became NaN/inf.
    stop_signal.StoppedBySignal: SIGTERM arrived; every seed's checkpoint
      is saved at the step it finished.
  """
  if not validated:
    validate_config(config)
  start_time = time.time()
  axis, dirs = _check_workdirs(workdirs)
  finished = finished_results(config, dirs)
  if finished is not None:
    for d, r in zip(dirs, finished):
      print(f"already finished: test error {r['test_error']:.2f}% ({d})",
            flush=True)
    return finished
  run = start_run(config, workdirs)
  state, evaluation, timing = _train_loop(config, run)
  final_step = int(np.asarray(state.step).reshape(-1)[0])
  if evaluation is None:  # Resumed at the end already: evaluate the final state.
    evaluation = run.evaluate(state, final_step)
    for w, r in zip(run.writers, evaluation):
      w.write_scalars(final_step, r)
  for w in run.writers:
    w.flush()
  _save_transforms_pngs(config, run, state)
  return _write_results(config, run, evaluation, final_step=final_step,
                        start_time=start_time, timing=timing)


class Run(NamedTuple):
  """A started run (`start_run`): what its loop, evaluation and records
  share. `batch_fn(step, train_images, train_labels) -> batch` and
  `step_fn(state, batch) -> (state, metrics)` are the jitted data and
  train steps; `state` is the restored or new state (the seed axis leads
  every leaf when `axis.stacked`)."""
  axis: SeedAxis
  dirs: list
  mesh: Mesh
  data: input_pipeline.Data
  model: object
  managers: list
  state: TrainState  # Restored or new: the state the loop starts from.
  start_step: int
  num_params: int
  batch_fn: Callable
  step_fn: Callable
  evaluate: Callable  # (state, step) -> per-seed test scalars, written out.
  writers: list
  is_main: bool
  started: float  # time.time() when this process started the run.
  # Seconds earlier processes spent to reach `start_step` (None: unknown).
  prior_run_time: Optional[float]

  def run_time(self) -> Optional[float]:
    """Seconds of every process of this run so far (None: unknown)."""
    if self.prior_run_time is None:
      return None
    return self.prior_run_time + time.time() - self.started


def start_run(config: ml_collections.ConfigDict,
              workdirs: Mapping[int, str]) -> Run:
  """Everything a run needs before its first step, without taking one.

  Devices, data, model, the state (restored from the workdirs' latest
  common checkpoint, or new), the jitted step functions and the metric
  writers. `train_and_evaluate_seeds` runs the loop on it; tools that drive
  the steps themselves (`benchmarks.allocator`) start here.

  Args:
    config: a validated config (`validate_config`).
    workdirs: seed -> output folder (distinct folders; created if missing).

  Returns:
    The `Run`.
  """
  started = time.time()
  axis, dirs = _check_workdirs(workdirs)
  t = config.train
  mesh = make_mesh()
  _check_devices(t, int(mesh.devices.size))
  replicated = NamedSharding(mesh, P())
  data = input_pipeline.load_data(config, replicated)
  canvas = int(config.distortion.canvas_size)

  # Keys: everything derives from the seed, nothing random is checkpointed.
  keys = [jax.random.split(jax.random.key(s), 3) for s in axis.seeds]
  model = models.build_model(config.model, canvas_size=canvas)
  tx, schedule = make_optimizer(t)
  managers = checkpoints.make_managers(
      dirs, max_to_keep=t.max_checkpoints_to_keep)
  state, start_step = restore_or_init(
      model, tx, [k[0] for k in keys], managers, dirs, axis=axis,
      canvas_size=canvas, num_steps=t.num_steps)
  state = jax.device_put(state, replicated)
  num_params = models.count_params(axis.take(state.params, 0))
  logging.info("Model %s (%s): %d parameters.", config.model.name,
               config.model.transform, num_params)
  print(f"{config.model.name} ({config.model.transform}) on "
        f"{config.distortion_name}: {num_params} parameters"
        + (f"; seeds {list(axis.seeds)} in one vmapped step"
           if axis.stacked else ""), flush=True)

  batch_fn, step_fn, eval_fn = make_step_functions(
      config, schedule, mesh, data_key=axis.stack([k[1] for k in keys]),
      distort_key=axis.stack([k[2] for k in keys]))
  is_main = jax.process_index() == 0
  writers = [writers_lib.make_writer(d, is_main=is_main) for d in dirs]
  if start_step == 0:
    cfg_json = config.to_json_best_effort()
    for s, w in zip(axis.seeds, writers):
      w.write_hparams({"config": cfg_json[:1000], "num_params": num_params,
                       "seed": s})
  evaluate_fn = _make_run_eval(config, model, eval_fn, data, mesh, axis,
                               writers, is_main=is_main)
  prior = writers_lib.read_run_time(
      os.path.join(dirs[0], writers_lib.METRICS_FILE), start_step)
  return Run(axis, dirs, mesh, data, model, managers, state, start_step,
              num_params, batch_fn, step_fn, evaluate_fn, writers, is_main,
              started, prior)


def _make_run_eval(config, model, eval_fn, data, mesh, axis: SeedAxis,
                   writers, *, is_main: bool) -> Callable:
  """`(state, step) -> [per-seed {test_loss, test_error}]`: evaluates on the
  test set, logs, and (ST models) writes the transformer's outputs."""
  # Test inputs shown beside the transformer's outputs, in TensorBoard.
  shown = (data.x_test[:config.num_transform_examples]
           if config.model.name in models.ST_MODELS and is_main else None)
  transform_fn = (functools.partial(models.transform_input, model)
                  if shown is not None and len(shown) else None)

  def run_eval(state, step):
    result = evaluate(eval_fn, state, data.x_test, data.y_test,
                      batch_size=int(config.train.eval_batch_size),
                      sharding=NamedSharding(mesh, P(DATA_AXIS)))
    per = [{k: axis.value(v, i) for k, v in result.items()}
           for i in range(axis.size)]
    for i, (s, w, r) in enumerate(zip(axis.seeds, writers, per)):
      logging.info("step %d, seed %d: test error %.2f%% (loss %.4f) on %d "
                   "examples", step, s, r["test_error"], r["test_loss"],
                   len(data.x_test))
      if transform_fn is not None:
        out, _, _ = transform_fn(axis.take(state.params, i), shown)
        w.write_images(step, {"transformer": writers_lib.transforms_grid(
            shown, np.asarray(out))})
    return per

  return run_eval


class _Timing(NamedTuple):
  """Seconds in training steps after the first (compile) and their count."""
  train_time: float
  trained_steps: int


def _train_loop(config, run: Run) -> tuple:
  """Steps `run.start_step` .. `train.num_steps`: logs, checkpoints and
  evaluates on schedule; returns `(state, last evaluation or None,
  _Timing)`. On SIGTERM it finishes the step, logs and checkpoints it and
  raises `StoppedBySignal` (`stn_jax.stop_signal`)."""
  t = config.train
  axis, state = run.axis, run.state
  progress = _Progress(t.num_steps)
  train_time = 0.0
  trained_steps = 0
  interval = _Interval()
  evaluation = None
  stopping = False
  with stop_signal.StopOnSignal() as stop:
    for step in range(run.start_step, t.num_steps):
      step_start = time.time()
      batch = run.batch_fn(jnp.asarray(step, jnp.int32),
                           run.data.train_images, run.data.train_labels)
      state, metrics = run.step_fn(state, batch)
      metrics = jax.device_get(metrics)  # Also waits: the NaN check each step.
      done = step + 1
      _stop_on_non_finite(metrics, done, axis, run.managers, run.writers,
                          run.dirs)
      elapsed = time.time() - step_start
      if step > run.start_step:
        train_time += elapsed
        trained_steps += 1
      interval.add(metrics, elapsed)
      # A requested stop logs and checkpoints this step (the last one ends
      # the run as usual).
      stopping = stop.requested is not None and done < t.num_steps
      # One metrics row per seed and logged step: training and test scalars.
      rows = [{} for _ in run.dirs]
      log = itstime(done, t.log_every, t.num_steps) or stopping
      line = progress(done, log)
      if line:
        logging.info("%s", line)
      if log:
        run_time = run.run_time()
        for i, row in enumerate(rows):
          row.update(interval.scalars(axis, i, metrics, t.batch_size))
          if run_time is not None:  # Read back by a later resume.
            row["run_time_s"] = run_time
        interval = _Interval()
      if itstime(done, t.eval_every, t.num_steps):
        evaluation = run.evaluate(state, done)
        for row, r in zip(rows, evaluation):
          row.update(r)
      for w, row in zip(run.writers, rows):
        if row:
          w.write_scalars(done, row)
      # After the step's row: a run killed once this checkpoint exists
      # resumes after the step, so its row (and evaluation) must be written.
      if itstime(done, t.checkpoint_every, t.num_steps) or stopping:
        for i, m in enumerate(run.managers):
          checkpoints.save(m, done, axis.take(state, i))
      if stopping:
        break
  for m in run.managers:
    m.wait_until_finished()
  if stopping:
    for w in run.writers:
      w.flush()
    raise stop_signal.StoppedBySignal(done, stop.requested, run.dirs)
  return state, evaluation, _Timing(train_time, trained_steps)


def _save_transforms_pngs(config, run: Run, state) -> None:
  """Each seed's `transforms.png` (ST models, main process)."""
  if (config.model.name in models.ST_MODELS and config.num_transform_examples
      and run.is_main):
    for i, d in enumerate(run.dirs):
      plotting.save_transforms_png(
          os.path.join(d, "transforms.png"), run.model,
          run.axis.take(state, i).params,
          run.data.x_test[:config.num_transform_examples],
          align_corners=config.model.align_corners)


def _write_results(config, run: Run, evaluation, *, final_step: int,
                   start_time: float, timing: _Timing) -> list[dict]:
  """Each seed's results dict, written to its `results.json` and printed."""
  all_results = []
  for i, d in enumerate(run.dirs):
    results = _results(
        config, axis=run.axis, i=i, workdir=d, evaluation=evaluation[i],
        num_params=run.num_params, final_step=final_step,
        num_test=int(len(run.data.x_test)), start_time=start_time,
        train_time=timing.train_time, trained_steps=timing.trained_steps,
        start_step=int(run.start_step),
        num_devices=int(run.mesh.devices.size), run_time=run.run_time())
    if run.is_main:
      with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    which = f" (seed {results['seed']})" if run.axis.stacked else ""
    print(f"Done{which}: test error {results['test_error']:.2f}% after "
          f"{results['steps']} steps ({results['wall_time_s']:.0f} s)",
          flush=True)
    all_results.append(results)
  return all_results


# Config keys added after some runs were recorded, with the value that keeps
# the behaviour those runs had (`with_added_keys`).
ADDED_KEYS = {
    "model.st_downsample_by": "grid",
    "model.tps_regularization": 0.0,
    "train.localizer_lr_multiplier": 1.0,
}


def with_added_keys(recorded: Mapping) -> dict:
  """A results.json `config` with every missing `ADDED_KEYS` key set to its
  old-behaviour value (a new dict; keys present are kept as recorded)."""
  config = json.loads(json.dumps(recorded))
  for key, value in ADDED_KEYS.items():
    *parents, last = key.split(".")
    node = config
    for name in parents:
      node = node.setdefault(name, {})
    node.setdefault(last, value)
  return config


def load_trained(workdir: str) -> tuple:
  """A finished run, ready for inference: `(config, model, params)`.

  The config comes from `workdir/results.json` (written when the run
  finished; keys added since are read with their old-behaviour values,
  `ADDED_KEYS`), the parameters from its latest checkpoint
  (`stn_jax.checkpoints.restore_latest`). `model.apply({"params": params},
  images)` gives logits for `[B, S, S, 1]` float images in [0, 1] (S =
  `config.distortion.canvas_size`; jit it: eagerly each op compiles on its
  own); for an ST model, `models.transform_input(model, params, images)`
  gives `(transformer output, grid, theta)`, jitted.

  Raises:
    FileNotFoundError: no `results.json` (the run has not finished) or no
      checkpoint in `workdir`.
    ValueError: a `results.json` without a config (written by older code).
  """
  record = _read_results(workdir)
  if record is None:
    raise FileNotFoundError(
        f"{os.path.join(workdir, 'results.json')} is missing or unreadable: "
        f"load_trained needs a finished run (its config is read from there).")
  if not isinstance(record.get("config"), Mapping):
    raise ValueError(f"{os.path.join(workdir, 'results.json')} records no "
                     f"config (written by older code): cannot rebuild the "
                     f"model.")
  config = ml_collections.ConfigDict(with_added_keys(record["config"]))
  model, params, _ = restore_latest_params(config, workdir)
  return config, model, params


def restore_latest_params(config, workdir: str) -> tuple:
  """`(model, params, step)`: `config`'s model and the parameters of the
  latest checkpoint in `workdir`.

  Raises FileNotFoundError when `workdir` holds no checkpoint.
  """
  canvas = int(config.distortion.canvas_size)
  model = models.build_model(config.model, canvas_size=canvas)
  tx, _ = make_optimizer(config.train)
  like = create_train_state(model, tx, jax.random.key(0), canvas_size=canvas)
  state, step = checkpoints.restore_latest(workdir, like)
  return model, state.params, step
