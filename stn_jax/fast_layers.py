"""Fast CPU kernels for the models' convolutions and max-pooling.

XLA's CPU convolutions are slow in the backward pass (its weight gradient
runs at a fraction of the forward's speed) and `nn.max_pool`'s gradient is a
select-and-scatter. This module holds drop-in replacements that compute the
same functions with operations XLA's CPU backend runs well (large matmuls
and elementwise fusions). The models pick them by name (`CONV_IMPLS`,
`POOL_IMPLS`); `tests/test_fast_layers.py` checks values and gradients
against the plain versions.

* `dft_conv`: a stride-1 convolution as three matmuls,
  `out = F_out @ (K(w) * (F_in @ x))`: a 2D real DFT of the input over
  its spatial positions (one `[2UV, H*W]` matrix), a per-frequency complex
  matmul over channels, and the inverse DFT restricted to the output
  positions. The DFT is long enough (at least H + k - 1 per axis) that the
  circular convolution equals the linear one on every output, so the result
  is the exact convolution up to float32 rounding (relative error ~1e-6). It does
  ~1/2 of the direct method's flops on the CNN's 7x7 layer and, unlike
  XLA's convolution, its gradients are matmuls of the same size.
* `patches_conv`: XLA's forward convolution with a custom VJP whose input
  gradient (and, for small layers, weight gradient) are matmuls over the
  `kh*kw` shifted windows; for the 1-channel first layers and the small
  localiser layers, where a DFT does not pay.
* `conv_general_dilated`: picks `dft_conv`, `patches_conv` or XLA's own
  convolution per layer from its shapes; signature-compatible with `jax.lax.conv_general_dilated`
  so it plugs into `flax.linen.Conv(conv_general_dilated=...)`.
* `max_pool`: non-overlapping max-pooling by reshape + max, whose gradient
  is an elementwise mask instead of a select-and-scatter. Ties inside a
  window share the gradient equally (XLA's and torch's pool give it all to
  one element); with ReLU inputs the tied elements are zeros whose gradient
  the ReLU discards, so training is unaffected.

Layouts are flax's: images `[B, H, W, C]`, kernels `[kh, kw, C, O]`.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Padding = Union[str, Sequence[tuple[int, int]]]

_NHWC = ("NHWC", "HWIO", "NHWC")


# ------------------------------------------------------------- padding


def _explicit_padding(padding: Padding, kernel: Sequence[int]
                      ) -> tuple[tuple[int, int], ...]:
  """Stride-1 `padding` ("SAME", "VALID" or pairs) as `((lo, hi), ...)`."""
  if isinstance(padding, str):
    mode = padding.upper()
    if mode == "VALID":
      return tuple((0, 0) for _ in kernel)
    if mode == "SAME":  # lax's rule: the extra pixel goes to the end.
      return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    raise ValueError(f"`padding` must be 'SAME', 'VALID' or (lo, hi) pairs, "
                     f"got {padding!r}.")
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  if len(pads) != len(kernel):
    raise ValueError(f"`padding` needs one (lo, hi) pair per spatial "
                     f"dimension ({len(kernel)}), got {padding!r}.")
  return pads


def _out_size(in_size: Sequence[int], kernel: Sequence[int],
              pads) -> tuple[int, ...]:
  """Output size of a stride-1 convolution with explicit `pads`."""
  return tuple(n + lo + hi - k + 1
               for n, k, (lo, hi) in zip(in_size, kernel, pads))


def _pads_within_kernel(pads, kernel: Sequence[int]) -> bool:
  """Whether each side's padding is in [0, k - 1] (`patches_conv`'s range)."""
  return all(0 <= lo <= k - 1 and 0 <= hi <= k - 1
             for (lo, hi), k in zip(pads, kernel))


def _check_conv_args(lhs, rhs) -> None:
  if lhs.ndim != 4 or rhs.ndim != 4:
    raise ValueError(f"expected a [B, H, W, C] input and a [kh, kw, C, O] "
                     f"kernel, got shapes {lhs.shape} and {rhs.shape}.")
  if lhs.shape[3] != rhs.shape[2]:
    raise ValueError(f"input channels {lhs.shape[3]} != kernel input "
                     f"channels {rhs.shape[2]}.")


def _is_nhwc(lhs, rhs, dimension_numbers) -> bool:
  """Whether `dimension_numbers` (strings or `ConvDimensionNumbers`) is NHWC."""
  want = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  try:
    got = jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape,
                                         dimension_numbers)
  except (TypeError, ValueError):
    return False
  return got == want


# ---------------------------------------------------- DFT convolution


@functools.lru_cache(maxsize=64)
def _dft_matrices(in_size: tuple[int, int], kernel: tuple[int, int],
                  pads: tuple[tuple[int, int], ...]):
  """float64 DFT matrices of a stride-1 convolution of these shapes.

  Returns `(fwd, inv, ker, out_size)`:
    fwd `[2, U, V, H*W]`: real and imaginary parts of the forward 2D DFT
      (full along h, one-sided along w) of an `H x W` input;
    inv `[Ho*Wo, 2, U, V]`: the inverse DFT evaluated at the output
      positions (with the one-sided weights and 1/(U N_w));
    ker `[2, U, V, kh*kw]`: the kernel's transform, conjugate direction
      (correlation), so `out = inv @ (X * K)`.
  """
  (h, w), (kh, kw) = in_size, kernel
  ho, wo = _out_size((h, w), (kh, kw), pads)
  if ho < 1 or wo < 1:
    raise ValueError(f"the convolution of a {h}x{w} input by a {kh}x{kw} "
                     f"kernel with padding {pads} has no output.")

  def length(n, k, lo, no):
    # Linear correlation values z[t], t = s - d, span [-(k-1), n-1]; the
    # outputs read t = y - lo for y < no. A DFT this long never wraps them.
    return max(n - 1, no - 1 - lo) + max(k - 1, lo) + 1

  nu, nw = length(h, kh, pads[0][0], ho), length(w, kw, pads[1][0], wo)
  nv = nw // 2 + 1
  u, v = np.arange(nu), np.arange(nv)
  # Forward: X[u, v] = sum_{s, r} x[s, r] exp(-2 pi i (u s / nu + v r / nw)).
  phase = (np.einsum("u,s->us", u, np.arange(h))[:, None, :, None] / nu +
           np.einsum("v,r->vr", v, np.arange(w))[None, :, None, :] / nw)
  phase = 2 * np.pi * phase  # [U, V, H, W]
  fwd = np.stack([np.cos(phase), -np.sin(phase)]).reshape(2, nu, nv, h * w)
  # Kernel: K[u, v] = sum_{a, b} k[a, b] exp(+2 pi i (u a / nu + v b / nw)).
  kphase = 2 * np.pi * (
      np.einsum("u,a->ua", u, np.arange(kh))[:, None, :, None] / nu +
      np.einsum("v,b->vb", v, np.arange(kw))[None, :, None, :] / nw)
  ker = np.stack([np.cos(kphase), np.sin(kphase)]).reshape(2, nu, nv,
                                                           kh * kw)
  # Inverse at output (y, x), t = (y - lo_h, x - lo_w): a real signal's
  # one-sided inverse, Re(Y e^{i phi}) weighted 2 except at v = 0 and the
  # Nyquist column.
  weight = np.full(nv, 2.0)
  weight[0] = 1.0
  if nw % 2 == 0:
    weight[-1] = 1.0
  iphase = 2 * np.pi * (
      np.einsum("y,u->yu", np.arange(ho) - pads[0][0], u)[:, None, :, None] /
      nu + np.einsum("x,v->xv", np.arange(wo) - pads[1][0], v)[
          None, :, None, :] / nw)  # [Ho, Wo, U, V]
  scale = weight / (nu * nw)
  inv = np.stack([np.cos(iphase) * scale, -np.sin(iphase) * scale], axis=2)
  inv = inv.reshape(ho * wo, 2, nu, nv)
  return fwd, inv, ker, (ho, wo)


def dft_conv(x, w, *, padding: Padding = "SAME", precision=None):
  """Stride-1 2D convolution (cross-correlation, like lax/torch) by DFT.

  Args:
    x: `[B, H, W, C]` input.
    w: `[kh, kw, C, O]` kernel.
    padding: "SAME", "VALID" or `((lo_h, hi_h), (lo_w, hi_w))`, as in
      `jax.lax.conv_general_dilated`.
    precision: matmul precision (`jax.lax.Precision`), or None.

  Returns:
    `[B, Ho, Wo, O]`, equal to `lax.conv_general_dilated(x, w, (1, 1),
    padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))` up to float
    rounding.
  """
  _check_conv_args(x, w)
  b, h, wd, c = x.shape
  kh, kw, _, o = w.shape
  pads = _explicit_padding(padding, (kh, kw))
  fwd, inv, ker, (ho, wo) = _dft_matrices((h, wd), (kh, kw), pads)
  nf = fwd.shape[1] * fwd.shape[2]  # Complex frequencies U * V.
  dt = jnp.result_type(x.dtype, w.dtype)
  fwd = jnp.asarray(fwd.reshape(2 * nf, h * wd), dt)
  inv = jnp.asarray(inv.reshape(ho * wo, 2 * nf), dt)
  ker = jnp.asarray(ker.reshape(2 * nf, kh * kw), dt)
  dot = functools.partial(jnp.matmul, precision=precision)
  # Positions first, so that each transform is one [freqs, positions]
  # matmul and the per-frequency channel mixing a batched matmul, with no
  # transposes between them (XLA's CPU transposes cost as much as matmuls).
  xt = x.reshape(b, h * wd, c).transpose(1, 0, 2).reshape(h * wd, b * c)
  xs = dot(fwd, xt).reshape(2, nf, b, c)  # X: (re, im) x [F, B, C]
  ks = dot(ker, w.reshape(kh * kw, c * o)).reshape(2, nf, c, o)  # K(w)
  re = dot(xs[0], ks[0]) - dot(xs[1], ks[1])  # [F, B, O]
  im = dot(xs[0], ks[1]) + dot(xs[1], ks[0])
  y = jnp.stack([re, im]).reshape(2 * nf, b * o)
  out = dot(inv, y).reshape(ho * wo, b, o)
  return out.transpose(1, 0, 2).reshape(b, ho, wo, o)


def _shifted_stack(x, kernel, out_size):
  """`[kh*kw, B, Ho, Wo, C]`: the input window of every kernel tap."""
  kh, kw = kernel
  ho, wo = out_size
  return jnp.stack([x[:, a:a + ho, b:b + wo, :]
                    for a in range(kh) for b in range(kw)])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _patches_conv(x, w, pads):
  return jax.lax.conv_general_dilated(x, w, (1, 1), pads,
                                      dimension_numbers=_NHWC)


def _patches_conv_fwd(x, w, pads):
  return _patches_conv(x, w, pads), (x, w)


def _patches_conv_bwd(pads, res, g):
  x, w = res
  kh, kw, c, o = w.shape
  b, ho, wo, _ = g.shape
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  g2 = g.reshape(b * ho * wo, o)
  if kh * kw * ho * wo * c <= PATCHES_MAX_TAPS:
    # dw[a, b, c, o] = sum_n window_(a,b)(x)[n, c] g[n, o]: one matmul over
    # the stacked windows (small here).
    taps = _shifted_stack(xp, (kh, kw), (ho, wo)).reshape(kh * kw, -1, c)
    dw = jnp.einsum("knc,no->kco", taps, g2).reshape(kh, kw, c, o)
  else:  # Large windows: XLA's own weight gradient costs less traffic.
    dw = jax.vjp(lambda w: jax.lax.conv_general_dilated(
        x, w, (1, 1), pads, dimension_numbers=_NHWC), w)[1](g)[0]
  # dx: every tap's contribution g @ w[a, b]^T (tap-major, so that each is a
  # contiguous plane), shifted back and summed.
  contrib = jnp.einsum("no,kco->knc", g2, w.reshape(kh * kw, c, o))
  contrib = contrib.reshape(kh * kw, b, ho, wo, c)
  hp, wp = xp.shape[1], xp.shape[2]
  dxp = sum(jnp.pad(contrib[a * kw + bb],
                    ((0, 0), (a, hp - ho - a), (bb, wp - wo - bb), (0, 0)))
            for a in range(kh) for bb in range(kw))
  h, wd = x.shape[1], x.shape[2]
  dx = dxp[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + wd]
  return dx, dw


_patches_conv.defvjp(_patches_conv_fwd, _patches_conv_bwd)


def patches_conv(x, w, *, padding: Padding = "SAME"):
  """Stride-1 2D convolution: XLA's forward, matmul-based gradients.

  For layers with few input channels (the 1-channel first layers), where
  XLA's backward convolutions are slow (its input gradient with 30 output
  channels: 260 ms at batch 256, 28x28, 9x9; this: 33 ms) and a DFT does
  not pay: the input gradient is `kh*kw` shifted copies of `g @ w[a, b]^T`
  summed; the weight gradient one matmul over the `kh*kw` shifted windows
  of the input when those hold at most `PATCHES_MAX_TAPS` values per image,
  else XLA's.

  Args:
    x: `[B, H, W, C]` input.
    w: `[kh, kw, C, O]` kernel.
    padding: "SAME", "VALID" or `((lo_h, hi_h), (lo_w, hi_w))`; each side
      at most `k - 1`.

  Returns:
    `[B, Ho, Wo, O]`: `lax.conv_general_dilated(x, w, (1, 1), padding,
    dimension_numbers=("NHWC", "HWIO", "NHWC"))`, the same values; the
    gradients equal that op's up to float rounding.
  """
  _check_conv_args(x, w)
  pads = _explicit_padding(padding, w.shape[:2])
  if not _pads_within_kernel(pads, w.shape[:2]):
    raise ValueError(f"`padding` must be in [0, k - 1] per side, got "
                     f"{pads} for a {w.shape[0]}x{w.shape[1]} kernel.")
  return _patches_conv(x, w, pads)


def dft_conv_flops(in_size: Sequence[int], kernel: Sequence[int],
                   channels: tuple[int, int], padding: Padding) -> int:
  """Multiply-adds per image of `dft_conv` (transforms and mixing)."""
  pads = _explicit_padding(padding, tuple(kernel))
  fwd, inv, _, _ = _dft_matrices(tuple(in_size), tuple(kernel), pads)
  nf = fwd.shape[1] * fwd.shape[2]
  c, o = channels
  return (2 * nf * fwd.shape[3] * c + 4 * nf * c * o +
          inv.shape[0] * 2 * nf * o)


def direct_conv_flops(in_size: Sequence[int], kernel: Sequence[int],
                      channels: tuple[int, int], padding: Padding) -> int:
  """Multiply-adds per image of the direct convolution."""
  out = _out_size(in_size, kernel, _explicit_padding(padding, tuple(kernel)))
  return int(np.prod(out) * np.prod(kernel) * channels[0] * channels[1])


# XLA's direct convolution runs its backward pass several times slower than
# its forward; the DFT's gradients are matmuls like its forward. Measured on
# the CNN layers at batch 256 (summarised in
# benchmarks/results/train_step_cpu.md), the DFT trains faster up to about
# this ratio of its multiply-adds to the direct method's.
DFT_MAX_FLOP_RATIO = 2.5
# Layers that the DFT does not take use `patches_conv` when their stacked
# windows (kh * kw * Ho * Wo * C values per image) are at most this many:
# it beat XLA's gradients 2-7x on the 5x5 localiser layers (up to 16900) and
# lost on the 9x9 28x28 layer (63504).
PATCHES_MAX_TAPS = 20_000
# ... and always for layers with at most this many input channels: their
# input gradient as shifted matmuls beat XLA's 1.4-8x (the 9x9 first layers).
PATCHES_MAX_CHANNELS = 4


def conv_algorithm(in_size: Sequence[int], kernel: Sequence[int],
                   channels: tuple[int, int], padding: Padding) -> str:
  """"dft", "patches" or "xla": what `conv_general_dilated` runs.

  For a stride-1, undilated, ungrouped NHWC convolution of an `in_size`
  input by a `kernel` with `channels = (C, O)`.
  """
  if (dft_conv_flops(in_size, kernel, channels, padding) <=
      DFT_MAX_FLOP_RATIO * direct_conv_flops(in_size, kernel, channels,
                                             padding)):
    return "dft"
  pads = _explicit_padding(padding, tuple(kernel))
  taps = int(np.prod(kernel) * np.prod(_out_size(in_size, kernel, pads)) *
             channels[0])
  small = taps <= PATCHES_MAX_TAPS or channels[0] <= PATCHES_MAX_CHANNELS
  if small and _pads_within_kernel(pads, kernel):
    return "patches"
  return "xla"


def conv_general_dilated(lhs, rhs, window_strides=(1, 1), padding="SAME",
                         lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None,
                         preferred_element_type=None):
  """`jax.lax.conv_general_dilated` for flax's `nn.Conv`, computed fast.

  Same signature and result (NHWC input, HWIO kernel). Stride-1,
  undilated, ungrouped layers whose `dft_conv` costs at most
  `DFT_MAX_FLOP_RATIO` of the direct method's multiply-adds run as
  `dft_conv`; other such layers with at most `PATCHES_MAX_TAPS` window
  values per image or `PATCHES_MAX_CHANNELS` input channels as
  `patches_conv`; every other layer as XLA's own convolution
  (`conv_algorithm` tells which).
  The result never depends on the choice beyond float rounding.
  """
  simple = (lhs.ndim == 4 and rhs.ndim == 4 and
            tuple(window_strides) == (1, 1) and
            lhs_dilation in (None, (1, 1)) and
            rhs_dilation in (None, (1, 1)) and feature_group_count == 1 and
            batch_group_count == 1 and preferred_element_type is None and
            (dimension_numbers is None or
             _is_nhwc(lhs, rhs, dimension_numbers)))
  if simple:
    algo = conv_algorithm(lhs.shape[1:3], rhs.shape[:2],
                          (rhs.shape[2], rhs.shape[3]), padding)
    if algo == "dft":
      return dft_conv(lhs, rhs, padding=padding, precision=precision)
    if algo == "patches":
      return patches_conv(lhs, rhs, padding=padding)
  return jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)


# ------------------------------------------------------------ pooling


def max_pool(x, window: int = 2):
  """Non-overlapping `window x window` max-pooling ("VALID", stride = window).

  Args:
    x: `[B, H, W, C]`.
    window: pooling window and stride.

  Returns:
    `[B, H // window, W // window, C]`, the values of
    `nn.max_pool(x, (window, window), strides=(window, window))` (trailing
    rows/columns that do not fill a window are dropped, as there).
    Gradient: split equally among the maxima of a window.
  """
  if x.ndim != 4:
    raise ValueError(f"`x` must be [B, H, W, C], got shape {x.shape}.")
  if window < 1:
    raise ValueError(f"`window` must be a positive int, got {window!r}.")
  b, h, w, c = x.shape
  ho, wo = h // window, w // window
  x = x[:, :ho * window, :wo * window]
  return x.reshape(b, ho, window, wo, window, c).max(axis=(2, 4))


def xla_max_pool(x, window: int = 2):
  """`nn.max_pool` with the same signature as `max_pool` (the plain version)."""
  return nn.max_pool(x, (window, window), strides=(window, window))


# name -> the convolution primitive given to `nn.Conv(conv_general_dilated=)`.
CONV_IMPLS = {
    "xla": jax.lax.conv_general_dilated,
    "fast": conv_general_dilated,
}

# name -> max_pool(x, window) for non-overlapping pooling.
POOL_IMPLS = {
    "xla": xla_max_pool,
    "fast": max_pool,
}
