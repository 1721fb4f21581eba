r"""Trains one distorted-MNIST model.

    python -m stn_jax.main \
        --config=configs/distorted_mnist.py:rts,st_cnn,tps,quick \
        --workdir=/tmp/stn/rts_st_cnn_tps_quick [--config.seed=1 ...]

The config (a locked ml_collections ConfigDict) is validated before any work.
A mistake on the command line (an unknown config key, a bad value, a missing
flag) prints ONE line to stderr and exits with status 2, e.g.

    stn_jax.main: error: unknown config key `train.num_stepz` (in
    --config.train.num_stepz=3); did you mean `train.num_steps`?

(one line), or `stn_jax.main: error: config `train.batch_size` must be an int
>= 1, got 0.` Re-running with the same `--workdir` resumes from its latest
checkpoint; when the workdir holds the finished run of the same config, it
prints "already finished: test error X% (workdir)" and exits leaving every file
as it was; a finished run of a different config there is a one-line error
(status 2) naming the keys that differ. A NaN/inf loss exits with status 1 and
a message naming the step. SIGTERM stops it cleanly: the step under way is
finished and checkpointed, a line names it, and the status is 143 (128 +
SIGTERM); the same command resumes from there (`stn_jax.stop_signal`).

Several seeds of one config in one vmapped training step (faster for the
small FCN models), each in its own workdir:

    python -m stn_jax.main --config=configs/distorted_mnist.py:r,fcn,quick \
        --seeds=0,1,2 --workdir=/tmp/stn/r_fcn_quick_s{seed}
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from typing import NoReturn, Optional, Sequence

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
from ml_collections import config_flags

from stn_jax import stderr_capture
from stn_jax import stop_signal

# `stn_jax.train` is imported in `main`, once the command line is known to be
# good: it loads TensorFlow (through clu's metric writers), whose C++ logging
# prints four lines of start-up notes to stderr that would bury a one-line
# usage error.

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

PROG = "stn_jax.main"
USAGE_EXIT_CODE = 2  # A bad command line, as argparse and most Unix tools.


def usage_error(message: str) -> NoReturn:
  """Prints `stn_jax.main: error: <message>` as ONE line to stderr, exits 2."""
  print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr,
        flush=True)
  sys.exit(USAGE_EXIT_CODE)


# ------------------------------------------------------------ flag parsing


def _flag_value(argv: Sequence[str], name: str) -> Optional[str]:
  """The last value given to `--name` (`--name=v` or `--name v`) in argv."""
  value = None
  for i, arg in enumerate(argv[1:], 1):
    if arg == "--":
      break
    match = re.match(rf"^--?{name}(=(.*))?$", arg)
    if match:
      if match.group(1) is not None:
        value = match.group(2)
      elif i + 1 < len(argv):
        value = argv[i + 1]
  return value


def unknown_key_message(config: ml_collections.ConfigDict, path: str,
                        arg: str) -> Optional[str]:
  """Says why `path` (e.g. "train.num_stepz") is no key of `config`, or None.

  Args:
    config: the loaded config.
    path: a dotted key path, as in `--config.<path>=<value>`.
    arg: the command-line argument it came from (quoted in the message).

  Returns:
    None when `path` names a field of `config`; otherwise a one-line message
    naming the unknown key and the closest existing key(s) at that level
    (difflib), or, when none is close, listing that level's keys.
  """
  parts = path.split(".")
  node = config
  for i, part in enumerate(parts):
    here = ".".join(parts[:i])
    if not isinstance(node, ml_collections.ConfigDict):
      return (f"unknown config key `{path}` (in {arg}): `{here}` is a value, "
              "not a group of keys.")
    if part not in node:
      keys = sorted(node.keys())
      close = difflib.get_close_matches(part, keys, n=3, cutoff=0.6)
      if close:
        names = " or ".join(f"`{'.'.join(parts[:i] + [k])}`" for k in close)
        suggestion = f"did you mean {names}?"
      else:
        level = f"`{here}`" if here else "the config"
        suggestion = f"the keys of {level} are: {', '.join(keys)}."
      return f"unknown config key `{path}` (in {arg}); {suggestion}"
    node = node[part]
  return None


def _config_key_error(argv: Sequence[str]) -> Optional[str]:
  """The message for the first `--config.<key>` of argv that names no key.

  Loads the config given by `--config` the way the flag does (its parser),
  then walks each override's key path. None when `--config` is absent or
  does not load, or when every override names a key.
  """
  config_arg = _flag_value(argv, "config")
  if config_arg is None:
    return None
  try:
    config = FLAGS["config"].parser.parse(config_arg)
  except Exception:  # pylint: disable=broad-except
    return None  # The flag's own error says what is wrong with the file.
  if not isinstance(config, ml_collections.ConfigDict):
    return None
  for arg in argv[1:]:
    if arg == "--":
      break
    match = re.match(r"^--?(?:no)?config\.([^=]+)", arg)
    if match:
      message = unknown_key_message(config, match.group(1), arg)
      if message:
        return message
  return None


def _one_line(error: BaseException) -> str:
  """An exception's message on one line: its first line, plus its last when
  it holds more (the config file's own error at the end of a traceback)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  if len(lines) == 1:
    return lines[0]
  return f"{lines[0]} {lines[-1]}"


def parse_flags(argv: Sequence[str]) -> list:
  """`app.run`'s flag parser: parses argv into FLAGS, or exits with status 2.

  On any error while parsing (an unknown `--config.<key>`, which
  ml_collections reports as a KeyError/AttributeError traceback; a value of
  the wrong type; a missing required flag; a config file that fails to load)
  it prints one line via `usage_error` instead of absl's traceback or help
  text.

  Args:
    argv: the command line, program name first.

  Returns:
    The arguments left after the flags, program name first (as absl's own
    parser).
  """
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, OSError) as e:
    message = _config_key_error(argv)
    if message is None:
      if not isinstance(e, (flags.Error, OSError)):
        raise  # Not a command-line mistake we can name: keep the traceback.
      message = _one_line(e) + " (--helpshort lists the flags)"
    usage_error(message)


# -------------------------------------------------------------------- main


# Libraries whose INFO records only repeat what the run says itself: orbax
# (several lines per checkpoint), TFDS (dataset reading) and jax's backend
# probe ("Unable to initialize backend 'tpu'" on every CPU machine).
_QUIET_INFO_SOURCES = ("orbax", "tensorflow_datasets", "xla_bridge.py")


def _quiet_orbax(record) -> bool:
  """Drops the INFO chatter of `_QUIET_INFO_SOURCES`; warnings pass."""
  return record.levelno > logging.converter.STANDARD_INFO or not any(
      s in record.pathname for s in _QUIET_INFO_SOURCES)


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
  """Validates the config and flags, then trains (see the module docstring).

  A bad value (`train.validate_config`), bad `--seeds`/`--workdir` or stray
  arguments print one line via `usage_error` (exit status 2).
  """
  logging.get_absl_handler().addFilter(_quiet_orbax)
  try:
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments {argv[1:]} (flags take the "
                           "form --name=value).")
    workdirs = (_seed_workdirs(FLAGS.seeds, FLAGS.workdir) if FLAGS.seeds
                else None)
    config = FLAGS.config
    config.keys()  # A config file that failed to load raises OSError here.
  except (app.UsageError, OSError) as e:
    usage_error(_one_line(e))
  with stderr_capture.HeldStderr() as held:  # TensorFlow's start-up notes.
    from stn_jax import train  # pylint: disable=g-import-not-at-top
  try:  # Here, once: a bad value is one line before any work.
    train.validate_config(config)
  except ValueError as e:
    usage_error(str(e))
  held.release()
  if config.distributed:  # Multi-host: one process per host.
    jax.distributed.initialize()
  logging.info("JAX devices: %s", jax.devices())
  try:
    if workdirs is not None:
      train.train_and_evaluate_seeds(config, workdirs, validated=True)
    else:
      train.train_and_evaluate(config, FLAGS.workdir, validated=True)
  except train.FinishedRunConfigError as e:
    usage_error(str(e))
  except train.NonFiniteLossError as e:
    logging.error("%s", e)
    print(f"ERROR: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
  except stop_signal.StoppedBySignal as e:
    logging.warning("%s", e)
    print(f"{PROG}: {e}", file=sys.stderr, flush=True)
    sys.exit(e.exit_code)


def run() -> None:
  """The command: `app.run(main)` with the one-line flag errors of
  `parse_flags`."""
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  run()
