r"""Sweeps over any config key: grids, type checks and run names.

Used by `experiments.sweep` for its two sweep forms that vary config keys:

* the command line, `--config=configs/distorted_mnist.py:<arg>` with
  repeatable `--grid=KEY=V1,V2,...` (their product) and `--seeds=N`;
* a sweep file (e.g. `configs/sweeps/lr_rts_st_cnn_tps_quick.py`) defining

      CONFIG = "configs/distorted_mnist.py:rts,st_cnn,tps,quick"
      SEEDS = 3                       # optional (default 1)

      def get_hyper(h):               # h: this module
        return h.product([
            h.sweep("train.learning_rate", [3e-4, 1e-3, 3e-3]),
            h.zip([h.sweep("model.localizer.hidden", [20, 64]),
                   h.sweep("model.localizer.filters", [(20, 20), (32, 32)])]),
        ])

  (the shape of big_vision's `get_hyper(hyper)` and the flax examples'
  `sweep(add)`): a list of override dicts {config key: value}.

Conventions:

* Keys are dotted config paths (`train.learning_rate`), checked against the
  locked config of `CONFIG`; an unknown key is an error naming it and the
  closest existing keys. `seed` is not a grid key: seeds come from
  `--seeds` / `SEEDS`.
* `--grid` values are parsed by the same absl parsers that `stn_jax.main`
  applies to `--config.<key>=<value>` for the key's type (int, float, bool,
  str, tuple); values from a sweep file must already have that type (an int
  is accepted for a float key). A value that does not fit is an error naming
  the key and the value. Values are then checked by
  `stn_jax.train.validate_config` in `experiments.sweep` (e.g. a negative
  learning rate) before anything runs.
* `--grid` splits its values at the commas outside brackets and quotes, so
  `--grid=model.classifier.filters=(16,32),(32,64)` is two tuples.
* Run names: `<config arg with ',' -> '-'>--<key>=<value>--...-s<seed>`,
  keys sorted, values written by `format_value` (floats by `repr`, tuples
  joined by 'x'), characters outside `[A-Za-z0-9._=+-]` replaced by '_', and
  names longer than `MAX_NAME` cut and ended with a hash of the full name.
  The same overrides always give the same name (whatever the order of the
  `--grid` flags), so re-running a sweep finds its runs' workdirs.
"""

from __future__ import annotations

import builtins
import copy
import hashlib
import importlib.util
import itertools
import os
import re
from typing import Any, Iterable, Mapping, Sequence

DEFAULT_CONFIG_FILE = "configs/distorted_mnist.py"
# Longest run name (a file name is at most 255 bytes; the runner adds
# ".json" for the record and the workdir holds files of its own).
MAX_NAME = 160


class SweepError(ValueError):
  """A mistake in a sweep definition (flag, grid value or sweep file)."""


# ----------------------------------------------------------------- helpers
# The helpers a sweep file's `get_hyper(h)` calls as h.sweep, h.product,
# h.zip: each returns a list of override dicts.


def sweep(key: str, values: Iterable) -> list[dict]:
  """`[{key: v} for v in values]`: one key's values."""
  values = list(values)
  if not values:
    raise SweepError(f"sweep({key!r}, ...) has no values.")
  return [{key: v} for v in values]


def product(lists: Sequence[Sequence[Mapping]]) -> list[dict]:
  """The cartesian product of lists of override dicts, merged.

  `product([sweep("a", [1, 2]), sweep("b", [3, 4])])` gives 4 dicts, the
  last list varying fastest. A key set by two lists is an error.
  """
  out = []
  for combo in itertools.product(*[list(l) for l in lists]):
    out.append(_merge(combo))
  return out


def zip(lists: Sequence[Sequence[Mapping]]) -> list[dict]:  # pylint: disable=redefined-builtin
  """Element-wise merge of lists of override dicts of the same length.

  `zip([sweep("a", [1, 2]), sweep("b", [3, 4])])` gives {a:1,b:3}, {a:2,b:4}.
  """
  lists = [list(l) for l in lists]
  lengths = sorted({len(l) for l in lists})
  if len(lengths) > 1:
    raise SweepError(f"zip of lists of different lengths {lengths}.")
  return [_merge(combo) for combo in builtins.zip(*lists)]


def _merge(dicts: Iterable[Mapping]) -> dict:
  out = {}
  for d in dicts:
    for k, v in d.items():
      if k in out:
        raise SweepError(f"key {k!r} is set twice in one sweep setting "
                         f"(by product or zip of lists that both set it).")
      out[k] = v
  return out


# ------------------------------------------------------------- the config


def split_config_spec(spec: str) -> tuple[str, str]:
  """"configs/distorted_mnist.py:rts,st_cnn" -> (path, arg)."""
  path, _, arg = spec.partition(":")
  if not path.endswith(".py"):
    raise SweepError(f"--config must look like <file.py>:<arg>, got "
                     f"{spec!r}.")
  if not os.path.isfile(path):
    raise SweepError(f"--config: no config file at {path!r}.")
  return path, arg


def load_config(spec: str):
  """The locked ConfigDict of `path.py[:arg]` (its `get_config(arg)`)."""
  path, arg = split_config_spec(spec)
  module_spec = importlib.util.spec_from_file_location("_sweep_base_config",
                                                       path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise SweepError(f"--config: {path!r} defines no get_config(arg).")
  try:
    return module.get_config(arg) if arg else module.get_config()
  except ValueError as e:
    raise SweepError(f"--config={spec}: {e}") from None


def _unknown_key_message(config, key: str, where: str):
  # stn_jax.main's message ("did you mean ..."), the one the trainer gives.
  from stn_jax.main import unknown_key_message  # pylint: disable=g-import-not-at-top
  return unknown_key_message(config, key, where)


def field_type(config, key: str, where: str) -> type:
  """The type of the leaf `key` of `config`; SweepError if there is none."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  if key == "seed":
    raise SweepError(f"{where}: `seed` is not a grid key; use --seeds=N (or "
                     "SEEDS in a sweep file).")
  message = _unknown_key_message(config, key, where)
  if message:
    raise SweepError(message)
  parent_path, _, leaf = key.rpartition(".")
  parent = config
  for part in parent_path.split(".") if parent_path else ():
    parent = parent[part]
  if isinstance(parent[leaf], ml_collections.ConfigDict):
    raise SweepError(f"{where}: `{key}` is a group of keys, not a value; "
                     f"sweep one of {sorted(parent[leaf].keys())}.")
  return parent.get_type(leaf)


def _parser(kind: type):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections.config_flags import tuple_parser  # pylint: disable=g-import-not-at-top
  return {float: flags.FloatParser(), bool: flags.BooleanParser(),
          int: flags.IntegerParser(), str: flags.ArgumentParser(),
          tuple: tuple_parser.TupleParser()}.get(kind)


_KIND_NAMES = {float: "a float", bool: "a bool (true/false)", int: "an int",
               str: "a string", tuple: "a tuple such as (20,64)"}


def parse_value(config, key: str, text: str, where: str):
  """`text` parsed to the type of `key` in `config` (as stn_jax.main does)."""
  kind = field_type(config, key, where)
  parser = _parser(kind)
  if parser is None:
    raise SweepError(f"{where}: `{key}` has type {kind.__name__}, which a "
                     "sweep cannot set.")
  try:
    value = parser.parse(text)
  except (ValueError, TypeError, SyntaxError) as e:
    raise SweepError(f"{where}: value {text!r} of `{key}` is not "
                     f"{_KIND_NAMES[kind]} ({' '.join(str(e).split())})."
                     ) from None
  return check_value(config, key, value, where)


def check_value(config, key: str, value, where: str):
  """`value` if it fits the type of `key` (set on a copy of the locked
  config, as ml_collections enforces types); SweepError naming both if not.
  An int for a float key is returned as a float, a list for a tuple key as a
  tuple."""
  kind = field_type(config, key, where)
  if kind is float and isinstance(value, int) and not isinstance(value, bool):
    value = float(value)
  if kind is tuple and isinstance(value, list):
    value = tuple(value)
  ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
  if value is None:
    ok = False
  if ok:
    trial = copy.deepcopy(config)
    try:
      _set(trial, key, value)
    except (TypeError, ValueError):
      ok = False
  if not ok:
    raise SweepError(f"{where}: value {value!r} of `{key}` is not "
                     f"{_KIND_NAMES.get(kind, kind.__name__)}.")
  return value


def _set(config, key: str, value) -> None:
  parent_path, _, leaf = key.rpartition(".")
  node = config
  for part in parent_path.split(".") if parent_path else ():
    node = node[part]
  node[leaf] = value


def apply_overrides(config, overrides: Mapping):
  """A copy of `config` with `overrides` ({key: value}) set."""
  out = copy.deepcopy(config)
  for k, v in overrides.items():
    _set(out, k, v)
  return out


# ------------------------------------------------------------- --grid flags


def split_values(text: str) -> list[str]:
  """Splits at commas outside (), [], {} and quotes: "(1,2),3" -> 2 items."""
  items, depth, quote, start = [], 0, None, 0
  for i, ch in enumerate(text):
    if quote:
      if ch == quote:
        quote = None
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      items.append(text[start:i])
      start = i + 1
  items.append(text[start:])
  return [s.strip() for s in items]


def parse_grid(config, grids: Sequence[str]) -> list[dict]:
  """`--grid` flags -> the product of their values (list of override dicts).

  Each flag is `KEY=V1,V2,...`; values are parsed to the key's type.
  Raises SweepError naming the flag, the key or the value at fault.
  """
  lists, seen = [], set()
  for flag in grids:
    where = f"--grid={flag}"
    key, sep, values = flag.partition("=")
    key = key.strip()
    if not sep or not key:
      raise SweepError(f"{where}: expected KEY=V1,V2,...")
    if key in seen:
      raise SweepError(f"{where}: `{key}` is given by two --grid flags.")
    seen.add(key)
    texts = split_values(values)
    if any(t == "" for t in texts):
      raise SweepError(f"{where}: an empty value (values are "
                       f"comma-separated, e.g. {key}=1e-3,3e-3).")
    parsed = [parse_value(config, key, t, where) for t in texts]
    if len({format_value(v) for v in parsed}) != len(parsed):
      raise SweepError(f"{where}: a value is repeated.")
    lists.append(sweep(key, parsed))
  return product(lists) if lists else [{}]


def check_settings(config, settings: Sequence[Mapping], where: str
                   ) -> list[dict]:
  """Each setting's values checked (and normalised) against `config`."""
  out = []
  for s in settings:
    if not isinstance(s, Mapping):
      raise SweepError(f"{where}: a setting must be a dict of config keys, "
                       f"got {s!r}.")
    out.append({k: check_value(config, k, v, where) for k, v in s.items()})
  names = [describe(s) for s in out]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise SweepError(f"{where}: a setting is repeated ({dupes[0]}).")
  return out


# --------------------------------------------------------------- run names


def format_value(value: Any) -> str:
  """The text of a value in a run name: 0.001, 256x256, true, avg_pool."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, (tuple, list)):
    return "x".join(format_value(v) for v in value) or "empty"
  return str(value)


def command_value(value: Any) -> str:
  """The text of a value in `--config.<key>=<text>` (what stn_jax.main's
  parser reads back to `value`)."""
  if isinstance(value, bool):
    return "true" if value else "false"
  if isinstance(value, float):
    return repr(value)
  if isinstance(value, list):
    value = tuple(value)
  if isinstance(value, tuple):
    return repr(value)
  return str(value)


def _sanitise(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9._=+-]", "_", text)


def describe(overrides: Mapping) -> str:
  """"model.localizer.hidden=20, train.learning_rate=0.001" (keys sorted)."""
  return ", ".join(f"{k}={format_value(overrides[k])}"
                   for k in sorted(overrides)) or "(no overrides)"


def setting_name(config_arg: str, overrides: Mapping) -> str:
  """"rts,st_cnn,tps,quick", {lr: 0.001} ->
  "rts-st_cnn-tps-quick--train.learning_rate=0.001" (keys sorted)."""
  parts = [_sanitise(config_arg.replace(",", "-")) or "default"]
  for key in sorted(overrides):
    parts.append(_sanitise(f"{key}={format_value(overrides[key])}"))
  name = "--".join(parts)
  if len(name) > MAX_NAME - 8:  # room for "-s<seed>"
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    name = name[:MAX_NAME - 8 - 11] + "-" + digest
  return name


def run_name(config_arg: str, overrides: Mapping, seed: int) -> str:
  """`setting_name(...)-s<seed>`, e.g.
  "rts-st_cnn-tps-quick--train.learning_rate=0.001-s0"."""
  return f"{setting_name(config_arg, overrides)}-s{seed}"


def build_runs(config_arg: str, settings: Sequence[Mapping], seeds: int, *,
               model: str, vmap_seeds_models: Sequence[str]) -> list[dict]:
  """The runner's runs ({"name", "config", "overrides", "group", "setting"}).

  Seeds 0..seeds-1 of each setting; for models in `vmap_seeds_models` (the
  FCN family, `configs/table1.py`) with more than one seed, the seeds of a
  setting form one group (one vmapped `stn_jax.main --seeds=...` process).
  `model` may be a dict {setting index: model name} when a setting changes
  `model.name`.
  """
  if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
    raise SweepError(f"seeds must be an int >= 1, got {seeds!r}.")
  runs = []
  for i, overrides in enumerate(settings):
    name = setting_name(config_arg, overrides)
    m = model[i] if isinstance(model, Mapping) else model
    group = name if seeds > 1 and m in vmap_seeds_models else None
    for seed in range(seeds):
      runs.append({
          "name": f"{name}-s{seed}",
          "config": config_arg,
          "overrides": dict(overrides, seed=seed),
          "group": group,
          "setting": name,
      })
  return runs


