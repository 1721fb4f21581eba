r"""The Table-1 sweep: distortion x model x transform x seed at one protocol.

Run it (one run after another, or N at a time; re-running skips finished runs
and resumes interrupted ones from their checkpoints):

    python -m experiments.sweep --sweep=configs/table1.py:quick --parallel=1
    python -m experiments.sweep --sweep=configs/table1.py:paper,seeds=3,distortions=rts+e

or print one shell command per run for a cluster scheduler:

    python -m experiments.sweep --sweep=configs/table1.py:quick --print_commands

`get_sweep(arg)` parses a comma-separated string:
  first item      the protocol: "quick" | "fast" | "paper" | "smoke".
  seeds=N         seeds 0..N-1 for every cell (default 1).
  distortions=A+B only these distortions (default r+rts+p+e+tc).
  models=A+B      only these models (default fcn+cnn+st_fcn+st_cnn).
  transforms=A+B  only these ST transforms (default affine+projective+tps).
  tc_transforms=A+B
                  ST transforms of the TC column (default affine, the paper's
                  cells); e.g. affine+projective+tps adds the runs that
                  `experiments/transforms_figure.py` shows for TC (not cells
                  of Table 1: the report leaves them out).

Each run is a dict {"name", "config", "overrides", "group"} where "config"
is the argument of `configs/distorted_mnist.py`, "overrides" are extra
`--config.key=value` flags and "group" (or None) names runs that the runner
trains together, as the seeds of one vmapped step (`stn_jax.main --seeds`);
a group's runs are named "<group>-s<seed>". The cells are the 32 of Table 1
plus the 4 of TC (TC's ST models use the affine transform).
"""

from configs import paper_results

PROTOCOLS = ("quick", "fast", "paper", "smoke")

# Models whose seeds train faster in one vmapped step than one at a time
# (benchmarks/results/vmapped_seeds_cpu.md: FCN 1.84x, ST-FCN 1.32-1.55x;
# CNN 0.64x and ST-CNN 0.68x, so those train one seed per process).
VMAP_SEEDS_MODELS = ("fcn", "st_fcn")


def _split(value: str, allowed, key: str):
  items = tuple(v for v in value.split("+") if v)
  bad = [v for v in items if v not in allowed]
  if bad or not items:
    raise ValueError(f"sweep option {key}={value!r}: expected a '+'-joined "
                     f"subset of {list(allowed)}, got {bad or 'nothing'}.")
  return items


def get_sweep(arg: str = "quick") -> list[dict]:
  """The list of runs for `arg` (see the module docstring)."""
  parts = [p for p in (arg or "quick").split(",") if p]
  protocol, options = parts[0], parts[1:]
  if protocol not in PROTOCOLS:
    raise ValueError(f"sweep protocol must be one of {list(PROTOCOLS)}, got "
                     f"{protocol!r}.")
  seeds = 1
  dists = paper_results.TABLE1_DISTORTIONS + ("tc",)
  models = ("fcn", "cnn", "st_fcn", "st_cnn")
  transforms = paper_results.TABLE1_TRANSFORMS
  tc_transforms = ("affine",)
  for option in options:
    key, sep, value = option.partition("=")
    if not sep:
      raise ValueError(f"sweep option {option!r} must look like key=value.")
    if key == "seeds":
      if not value.isdigit() or int(value) < 1:
        raise ValueError(f"sweep option seeds={value!r}: expected an int >= 1.")
      seeds = int(value)
    elif key == "distortions":
      dists = _split(value, paper_results.TABLE1_DISTORTIONS + ("tc",), key)
    elif key == "models":
      models = _split(value, ("fcn", "cnn", "st_fcn", "st_cnn"), key)
    elif key == "transforms":
      transforms = _split(value, paper_results.TABLE1_TRANSFORMS, key)
    elif key == "tc_transforms":
      tc_transforms = _split(value, paper_results.TABLE1_TRANSFORMS, key)
    else:
      raise ValueError(f"unknown sweep option {key!r}; expected seeds, "
                       "distortions, models, transforms or tc_transforms.")
  cells = [c for c in paper_results.table1_cells() if c[0] != "tc"]
  cells += [("tc", m, None) for m in ("fcn", "cnn")]
  cells += [("tc", m, t) for m in ("st_fcn", "st_cnn") for t in tc_transforms]
  runs = []
  for dist, model, transform in cells:
    if dist not in dists or model not in models:
      continue
    if transform is not None and transform not in transforms:
      continue
    parts = [dist, model] + ([transform] if transform else []) + [protocol]
    cell = "-".join(parts)
    group = cell if seeds > 1 and model in VMAP_SEEDS_MODELS else None
    for seed in range(seeds):
      runs.append({
          "name": f"{cell}-s{seed}",
          "config": ",".join(parts),
          "overrides": {"seed": seed},
          "group": group,
      })
  return runs
