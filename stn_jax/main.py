r"""Trains one distorted-MNIST model.

    python -m stn_jax.main \
        --config=configs/distorted_mnist.py:rts,st_cnn,tps,quick \
        --workdir=/tmp/stn/rts_st_cnn_tps_quick [--config.seed=1 ...]

The config (a locked ml_collections ConfigDict) is validated before any work;
unknown keys and bad values fail with a message naming them. Re-running with
the same `--workdir` resumes from its latest checkpoint. A NaN/inf loss exits
with status 1 and a message naming the step.

Several seeds of one config in one vmapped training step (faster for the
small FCN models), each in its own workdir:

    python -m stn_jax.main --config=configs/distorted_mnist.py:r,fcn,quick \
        --seeds=0,1,2 --workdir=/tmp/stn/r_fcn_quick_s{seed}
"""

import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from stn_jax import train

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics and "
                    "results (resumed when it holds checkpoints); with "
                    "--seeds, a template containing '{seed}'.")
flags.DEFINE_list("seeds", None, "Train these seeds together in one vmapped "
                  "step (overrides config.seed), e.g. 0,1,2.")
config_flags.DEFINE_config_file(
    "config", None, "configs/distorted_mnist.py:<distortion>,<model>"
    "[,<transform>][,<protocol>]", lock_config=True)
flags.mark_flags_as_required(["config", "workdir"])


def _quiet_orbax(record) -> bool:
  """Drops orbax's INFO chatter (several lines per checkpoint)."""
  return record.levelno > logging.converter.STANDARD_INFO or (
      "orbax" not in record.pathname)


def _seed_workdirs(seeds, template: str) -> dict:
  """`--seeds` and the `--workdir` template -> {seed: workdir}."""
  try:
    values = [int(s) for s in seeds]
  except ValueError as e:
    raise app.UsageError(f"--seeds must be comma-separated ints, got "
                         f"{','.join(seeds)!r}.") from e
  if len(set(values)) != len(values):
    raise app.UsageError(f"--seeds has duplicates: {values}.")
  if "{seed}" not in template:
    raise app.UsageError(f"--workdir must contain '{{seed}}' with --seeds, "
                         f"got {template!r}.")
  return {s: template.replace("{seed}", str(s)) for s in values}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  logging.get_absl_handler().addFilter(_quiet_orbax)
  try:
    train.validate_config(config)
  except ValueError as e:
    raise app.UsageError(str(e)) from e
  if config.distributed:  # Multi-host: one process per host.
    jax.distributed.initialize()
  logging.info("JAX devices: %s", jax.devices())
  try:
    if FLAGS.seeds:
      train.train_and_evaluate_seeds(config, _seed_workdirs(FLAGS.seeds,
                                                            FLAGS.workdir))
    else:
      train.train_and_evaluate(config, FLAGS.workdir)
  except train.NonFiniteLossError as e:
    logging.error("%s", e)
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    sys.exit(1)


if __name__ == "__main__":
  app.run(main)
