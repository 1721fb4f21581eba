"""XLA compiler options of the jitted train step, chosen by name.

`XLA_OPTIONS[name][platform]` is the `compiler_options` dict that
`stn_jax.train.make_step_functions` (and the benchmarks) pass to
`jax.jit(train_step, compiler_options=...)` on that platform; a platform
without an entry compiles with XLA's defaults. The options change which
library runs an operation, not what is computed: results are the same up to
float rounding (`tests/test_xla_options.py` checks the step's loss, metrics
and update against the default compilation's).

* "default": XLA's own choices everywhere.
* "fast": on CPU, dots (matmuls) run through XLA's Eigen-based dot instead of
  YNNPACK; YNNPACK keeps the reductions. Measured on the 2-core CPU of
  `benchmarks/results/train_step_cpu.md` (jax 0.10.2, A/B of the jitted
  step in one process, alternating blocks, batch 256): FCN steps 0.89-0.90
  of the default's time, ST-FCN 0.86-0.94, the convolutional models
  0.94-1.02; vmapped over 3 seeds (quick protocol): FCN 0.91, ST-FCN
  0.86-0.96, CNN 0.99, ST-CNN 0.92. Taking YNNPACK off the elementwise ops
  as well made ST-FCN steps 3.5x slower, so only the dots move.

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
