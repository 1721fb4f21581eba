"""XLA compiler options of the jitted train step, chosen by name.

`XLA_OPTIONS[name][platform]` is the `compiler_options` dict that
`stn_jax.train.make_step_functions` (and the benchmarks) pass to
`jax.jit(train_step, compiler_options=...)` on that platform; a platform
without an entry compiles with XLA's defaults. The options change which
library runs an operation, not what is computed: results are the same up to
float rounding (`tests/test_cpu_xla_options.py` checks the step's loss, metrics
and update against the default compilation's).

* "default": XLA's own choices everywhere.
* "fast": on CPU, dots (matmuls) run through XLA's Eigen-based dot instead of
  YNNPACK, which made the dense models' steps faster on the project's CPU;
  YNNPACK keeps the reductions, and only the dots move
  (benchmarks/results/design_notes.md#xla_options-fast).

The option names are XLA's (`xla/debug_options_flags.cc`) and experimental:
a jaxlib that drops one fails at compile time with XLA's error naming it
("No such compile option: ..."), not silently.
"""

from __future__ import annotations

from typing import Any, Optional

import jax

XLA_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "default": {},
    "fast": {
        "cpu": {
            # YNNPACK fusions for reductions only (not dots, not elementwise).
            "xla_cpu_experimental_ynn_fusion_type":
                "LIBRARY_FUSION_TYPE_REDUCE",
        },
    },
}


def compiler_options(name: str, *,
                     platform: Optional[str] = None) -> Optional[dict]:
  """The `jax.jit(..., compiler_options=...)` dict of options set `name`.

  Args:
    name: a key of `XLA_OPTIONS` ("fast" or "default").
    platform: "cpu", "gpu", "tpu", ...; None: `jax.default_backend()`.

  Returns:
    A new dict of option name -> value, or None when `name` sets nothing on
    `platform` (XLA's defaults).

  Raises:
    ValueError: `name` is not a key of `XLA_OPTIONS`.
  """
  if name not in XLA_OPTIONS:
    raise ValueError(f"Unknown XLA options set {name!r}; expected one of "
                     f"{sorted(XLA_OPTIONS)}.")
  platform = jax.default_backend() if platform is None else platform
  options = XLA_OPTIONS[name].get(platform)
  return dict(options) if options else None
