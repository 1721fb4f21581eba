"""CPU-fast forms of the models' layers and of the train step's compilation.

Each module computes the same function as a plain JAX counterpart, in forms
XLA's CPU backend runs faster; the models get them once, where they are
built (`stn_jax.models.KERNELS["fast"]`), and the train step by name
(`config.train.xla_options`):

* `stn_jax.cpu.kernels`: convolutions (DFT or banded matmuls) and max-pooling
  for `flax.linen.Conv(conv_general_dilated=...)` and the models' `max_pool`.
* `stn_jax.cpu.warp`: grid generation and bilinear sampling fused over the
  batch (the plain form is `stn_jax.warp`).
* `stn_jax.cpu.xla_options`: named sets of XLA compiler options for
  `jax.jit(..., compiler_options=...)`.

Why each exists and what it measured: benchmarks/results/design_notes.md.
"""
