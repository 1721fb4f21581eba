"""Metric writers of a run: TensorBoard (clu) plus a `metrics.jsonl` file.

`make_writer(workdir, is_main)` is what a training run writes its scalars
(and, for ST models, `transforms_grid` images) to; `read_eval_curve(path)`
reads the test-error curve back from the file.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from clu import metric_writers
import numpy as np

METRICS_FILE = "metrics.jsonl"


class JsonlWriter(metric_writers.MetricWriter):
  """A clu MetricWriter appending `{"step", **scalars}` lines to a file.

  Only scalars: images, histograms and the rest go to TensorBoard alone.
  """

  def __init__(self, path: str):
    self._path = path

  def write_scalars(self, step: int, scalars: Mapping[str, Any]):
    record = {"step": int(step)}
    record.update({k: float(np.asarray(v)) for k, v in scalars.items()})
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")

  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def make_writer(workdir: str, *,
                is_main: bool = True) -> metric_writers.MetricWriter:
  """TensorBoard events (and the log) plus `workdir/metrics.jsonl`.

  On processes other than the main one (multi-host), only the log.
  """
  writers = [metric_writers.create_default_writer(
      workdir, just_logging=not is_main)]
  if is_main:
    writers.append(JsonlWriter(os.path.join(workdir, METRICS_FILE)))
  return metric_writers.MultiWriter(writers)


def transforms_grid(inputs, outputs, *, gap: int = 2) -> np.ndarray:
  """One picture of inputs (top row) above the transformer's outputs.

  Args:
    inputs: `[n, H, W, C]` images in [0, 1] (C = 1 or 3).
    outputs: `[n, h, w, C]` the transformer's outputs; when smaller than the
      inputs they are scaled up by nearest neighbour (if h, w divide H, W)
      and centred in an `H x W` cell.
    gap: pixels of mid grey between cells.

  Returns:
    `[1, 2 H + 3 gap, n W + (n + 1) gap, C]` float32 in [0, 1], as clu's
    `write_images` (TensorBoard) takes it.
  """
  inputs = np.clip(np.asarray(inputs, np.float32), 0.0, 1.0)
  outputs = np.clip(np.asarray(outputs, np.float32), 0.0, 1.0)
  if inputs.ndim != 4 or outputs.ndim != 4 or (
      len(inputs) != len(outputs)) or inputs.shape[-1] != outputs.shape[-1]:
    raise ValueError(
        f"`inputs` [n, H, W, C] and `outputs` [n, h, w, C] must have the same "
        f"n and C, got {list(inputs.shape)} and {list(outputs.shape)}.")
  n, big_h, big_w, c = inputs.shape
  h, w = outputs.shape[1:3]
  if h <= big_h and w <= big_w and big_h % h == 0 and big_w % w == 0:
    outputs = np.repeat(np.repeat(outputs, big_h // h, 1), big_w // w, 2)
    h, w = big_h, big_w
  cell_h, cell_w = max(big_h, h), max(big_w, w)
  grid = np.full((2 * cell_h + 3 * gap, n * cell_w + (n + 1) * gap, c), 0.5,
                 np.float32)
  for row, images in enumerate((inputs, outputs)):
    for i, image in enumerate(images):
      top = gap + row * (cell_h + gap) + (cell_h - image.shape[0]) // 2
      left = gap + i * (cell_w + gap) + (cell_w - image.shape[1]) // 2
      grid[top:top + image.shape[0], left:left + image.shape[1]] = image
  return grid[None]


def read_eval_curve(metrics_path: str) -> list:
  """`[[step, test_error], ...]` (step order) from a run's `metrics.jsonl`.

  A step evaluated twice (a resumed run repeats its last evaluation) keeps
  its last value; a missing file gives `[]`.
  """
  curve = {}
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      for line in f:
        row = json.loads(line)
        if "test_error" in row:
          curve[int(row["step"])] = float(row["test_error"])
  return [[k, curve[k]] for k in sorted(curve)]


def read_run_time(metrics_path: str, at_step: int):
  """Seconds the run's earlier processes spent to reach `at_step`.

  The `run_time_s` of the last row (file order) at a step <= `at_step` of a
  run's `metrics.jsonl`: 0.0 for `at_step` 0 (a new run); None when no such
  row has it (rows written before the field existed), so a resumed run's
  total time is unknown rather than undercounted.
  """
  if at_step == 0:
    return 0.0
  found = None
  if os.path.exists(metrics_path):
    with open(metrics_path) as f:
      for line in f:
        row = json.loads(line)
        if int(row["step"]) <= at_step and "run_time_s" in row:
          found = float(row["run_time_s"])
  return found
