"""Tests of stn_jax.seeds.SeedAxis and the small training helpers."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from stn_jax import train
from stn_jax import writers
from stn_jax.seeds import SeedAxis


def test_one_seed_has_no_axis():
  axis = SeedAxis((3,))
  tree = {"w": jnp.arange(4.0)}
  assert not axis.stacked and axis.size == 1
  assert axis.stack([tree]) is tree
  assert axis.take(tree, 0) is tree
  assert axis.value(np.float32(2.5), 0) == 2.5
  f = lambda x: x * 2
  assert axis.vmap(f) is f


def test_several_seeds_stack_take_value_vmap():
  axis = SeedAxis((0, 2, 5))
  trees = [{"w": jnp.full((2,), float(s))} for s in axis.seeds]
  stacked = axis.stack(trees)
  assert stacked["w"].shape == (3, 2)
  for i, s in enumerate(axis.seeds):
    np.testing.assert_array_equal(axis.take(stacked, i)["w"], [s, s])
    assert axis.value(stacked["w"][:, 0], i) == s
  out = axis.vmap(lambda t: t["w"].sum())(stacked)
  np.testing.assert_array_equal(out, [0, 4, 10])
  with pytest.raises(ValueError, match="3 pytrees"):
    axis.stack(trees[:2])


@pytest.mark.parametrize("seeds", [(), (2, 1), (1, 1), (-1,)])
def test_bad_seeds(seeds):
  with pytest.raises(ValueError, match="seeds"):
    SeedAxis(seeds)


def test_itstime():
  assert [s for s in range(1, 12) if train.itstime(s, 5, 11)] == [5, 10, 11]


def test_read_eval_curve_keeps_the_last_value_of_a_step(tmp_path):
  path = tmp_path / "metrics.jsonl"
  rows = [{"step": 10, "train_loss": 1.0}, {"step": 10, "test_error": 5.0},
          {"step": 20, "test_error": 4.0}, {"step": 20, "test_error": 3.5}]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  assert writers.read_eval_curve(str(path)) == [[10, 5.0], [20, 3.5]]
  assert writers.read_eval_curve(str(tmp_path / "missing.jsonl")) == []


def test_read_run_time_takes_the_last_row_at_or_before_the_step(tmp_path):
  path = tmp_path / "metrics.jsonl"
  # A process reached step 30 and was killed; the next resumed from step 20
  # and was killed at 25; the third resumes from step 20 again.
  rows = [{"step": 10, "run_time_s": 1.0}, {"step": 20, "run_time_s": 2.0},
          {"step": 20, "test_error": 4.0}, {"step": 30, "run_time_s": 3.0},
          {"step": 20, "run_time_s": 2.5}, {"step": 25, "run_time_s": 3.5}]
  path.write_text("".join(json.dumps(r) + "\n" for r in rows))
  assert writers.read_run_time(str(path), 20) == 2.5
  assert writers.read_run_time(str(path), 15) == 1.0
  assert writers.read_run_time(str(path), 0) == 0.0
  assert writers.read_run_time(str(path), 5) is None
  # Rows written before the field existed: unknown, not 0.
  old = tmp_path / "old.jsonl"
  old.write_text(json.dumps({"step": 10, "train_loss": 1.0}) + "\n")
  assert writers.read_run_time(str(old), 10) is None
  assert writers.read_run_time(str(tmp_path / "missing.jsonl"), 10) is None
