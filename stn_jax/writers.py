"""Metric writers of a run: TensorBoard (clu) plus a `metrics.jsonl` file.

`make_writer(workdir, is_main)` is what a training run writes its scalars
to; `read_eval_curve(path)` reads the test-error curve back from the file.
"""

from __future__ import annotations

import json
import os
from typing import Any, Mapping

from clu import metric_writers
import numpy as np

METRICS_FILE = "metrics.jsonl"


class JsonlWriter(metric_writers.MetricWriter):
  """A clu MetricWriter appending `{"step", **scalars}` lines to a file."""

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
