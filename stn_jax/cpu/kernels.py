"""Fast CPU kernels for the models' convolutions and max-pooling.

XLA's CPU convolutions are slow in the backward pass (its weight gradient
runs at a fraction of the forward's speed) and `nn.max_pool`'s gradient is a
select-and-scatter. This module holds drop-in replacements that compute the
same functions with operations XLA's CPU backend runs well (large matmuls
and elementwise fusions). `stn_jax.models.build_model` gives them to the
modules for `model.kernels="fast"` (`models.KERNELS`);
`tests/test_cpu_kernels.py` checks values and gradients against the plain
versions.

* `dft_conv`: a stride-1 convolution by DFT, `out = F_out (K(w) * F_in x)`:
  the input's real 2D DFT as two matmuls (along w, then along h), a
  per-frequency complex matmul over channels, and the inverse DFT as two
  matmuls evaluated only at the output positions. The DFT is just long
  enough (`max(H + lo, Ho - lo + k - 1)` points per axis, `lo` the padding
  before) that the circular correlation equals the linear one on every
  output, so the result is the exact convolution up to float32 rounding
  (relative error ~1e-6). It does ~1/8 of the direct method's
  multiply-adds on the CNN's 7x7 layer and, unlike XLA's convolution, its
  gradients are matmuls of the same sizes.
* `banded_conv`: a stride-1 convolution as one matmul of the stacked
  `kh x (tile + kw - 1)` input windows of `tile`-column output strips by a
  banded (Toeplitz) matrix built from the kernel; its gradients are matmuls
  of the same size. For the 1-channel first layers, where XLA's gradients
  are slowest and a DFT does not pay, and the localisers' small layers.
* `conv_general_dilated`: picks `banded_conv`, `dft_conv` or XLA's own
  convolution per layer from its shapes; signature-compatible
  with `jax.lax.conv_general_dilated` so it plugs into
  `flax.linen.Conv(conv_general_dilated=...)`.
* `max_pool`: non-overlapping max-pooling as a pairwise maximum of the
  window's strided slices, whose gradient is elementwise instead of a
  select-and-scatter. Like XLA's and torch's pools it gives a tie's
  gradient to the first maximum in the window.

Layouts are flax's: images `[B, H, W, C]`, kernels `[kh, kw, C, O]`.
"""

from __future__ import annotations

import functools
from typing import Sequence, Union

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


def _nonempty_out_size(in_size, kernel, pads) -> tuple[int, int]:
  """`_out_size`, or a ValueError when the convolution has no output."""
  ho, wo = _out_size(in_size, kernel, pads)
  if ho < 1 or wo < 1:
    raise ValueError(f"the convolution of a {in_size[0]}x{in_size[1]} input "
                     f"by a {kernel[0]}x{kernel[1]} kernel with padding "
                     f"{pads} has no output.")
  return ho, wo


def _non_negative(pads) -> bool:
  return all(lo >= 0 and hi >= 0 for lo, hi in pads)


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
  """float64 matrices of a stride-1 convolution as separable DFTs.

  The DFT has `U x N_w` points, the fewest for which the circular
  correlation equals the linear one on every output; one-sided
  (`V = N_w // 2 + 1`) along w, as the input is real. Complex values are
  (re, im) pairs.
  Returns `(w_dft, h_dft, ker, h_inv, w_inv, (U, V), (Ho, Wo))`:
    w_dft `[(part, v), w]` `[2V, W]`: the real input's DFT along w;
    h_dft `[(part_out, u), (h, part_in)]` `[2U, 2H]`: the complex DFT along h;
    ker `[2, U, V, kh*kw]`: the kernel's transform, conjugate direction
      (correlation), so that the output's transform is `X * K`;
    h_inv `[(y, part_out), (part_in, u)]` `[2Ho, 2U]`: the inverse along h
      at the output rows;
    w_inv `[x, (part, v)]` `[Wo, 2V]`: the real part of the one-sided
      inverse along w at the output columns (weights 2 except at v = 0 and
      the Nyquist column, and the 1/(U N_w) scale).
  """
  (h, w), (kh, kw) = in_size, kernel
  ho, wo = _nonempty_out_size((h, w), (kh, kw), pads)

  def length(n, k, lo, no):
    # The correlation z[t] = sum_a x[t + a] k[a] is zero outside
    # [-(k-1), n-1]; the outputs read t = y - lo for y < no. The circular
    # one adds z[t + m N], m != 0: no output reads a nonzero alias once
    # N > (n-1) + lo and N > (no-1-lo) + (k-1). The shortest such N (13,
    # not the full support's 16, for a 7x7 SAME layer on 10x10 maps) means
    # fewer frequencies to mix.
    return max(n + lo, no - lo + k - 1, 1)

  nu, nw = length(h, kh, pads[0][0], ho), length(w, kw, pads[1][0], wo)
  nv = nw // 2 + 1
  u, v = np.arange(nu), np.arange(nv)
  # X1[h, v] = sum_r x[h, r] e^{-2 pi i v r / N_w}.
  th = 2 * np.pi * np.outer(v, np.arange(w)) / nw
  w_dft = np.concatenate([np.cos(th), -np.sin(th)])
  # X[u, v] = sum_h X1[h, v] e^{-2 pi i u h / U}: (a + ib)(c - is).
  th = 2 * np.pi * np.outer(u, np.arange(h)) / nu  # [U, H]
  c, s = np.cos(th), np.sin(th)
  h_dft = np.stack([np.stack([c, s], -1), np.stack([-s, c], -1)])
  h_dft = h_dft.reshape(2 * nu, 2 * h)
  # K[u, v] = sum_{a, b} k[a, b] e^{+2 pi i (u a / U + v b / N_w)}.
  kphase = 2 * np.pi * (
      np.outer(u, np.arange(kh))[:, None, :, None] / nu +
      np.outer(v, np.arange(kw))[None, :, None, :] / nw)
  ker = np.stack([np.cos(kphase), np.sin(kphase)]).reshape(2, nu, nv,
                                                           kh * kw)
  # Z[y, v] = sum_u Y[u, v] e^{+2 pi i u (y - lo_h) / U}: (a + ib)(c + is).
  th = 2 * np.pi * np.outer(np.arange(ho) - pads[0][0], u) / nu  # [Ho, U]
  c, s = np.cos(th), np.sin(th)
  h_inv = np.stack([np.stack([c, -s], 1), np.stack([s, c], 1)], 1)
  h_inv = h_inv.reshape(2 * ho, 2 * nu)
  # out[y, x] = sum_v weight_v Re(Z[y, v] e^{+2 pi i v (x - lo_w) / N_w}).
  weight = np.full(nv, 2.0)
  weight[0] = 1.0
  if nw % 2 == 0:
    weight[-1] = 1.0
  th = 2 * np.pi * np.outer(np.arange(wo) - pads[1][0], v) / nw  # [Wo, V]
  scale = weight / (nu * nw)
  w_inv = np.concatenate([np.cos(th) * scale, -np.sin(th) * scale], 1)
  return w_dft, h_dft, ker, h_inv, w_inv, (nu, nv), (ho, wo)


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
  w_dft, h_dft, ker, h_inv, w_inv, (nu, nv), (ho, wo) = _dft_matrices(
      (h, wd), (kh, kw), pads)
  nf = nu * nv  # Complex frequencies.
  dt = jnp.result_type(x.dtype, w.dtype)
  const = lambda m: jnp.asarray(m, dt)
  dot = functools.partial(jnp.matmul, precision=precision)
  # Positions first, images and channels last: each transform is a matmul
  # (batched over rows for the w-stages) on contiguous operands, with no
  # transposes between them (XLA's CPU transposes cost as much as matmuls).
  xt = x.transpose(1, 2, 0, 3).reshape(h, wd, b * c)
  x1 = dot(jnp.broadcast_to(const(w_dft), (h,) + w_dft.shape), xt)
  xs = dot(const(h_dft), x1.reshape(2 * h, nv * b * c))  # [(2, U), (V, B, C)]
  xs = xs.reshape(2, nf, b, c)
  ks = dot(const(ker).reshape(2 * nf, kh * kw), w.reshape(kh * kw, c * o))
  ks = ks.reshape(2, nf, c, o)  # K(w)
  re = dot(xs[0], ks[0]) - dot(xs[1], ks[1])  # [F, B, O]
  im = dot(xs[0], ks[1]) + dot(xs[1], ks[0])
  y = jnp.stack([re, im]).reshape(2 * nu, nv * b * o)
  z = dot(const(h_inv), y).reshape(ho, 2 * nv, b * o)
  out = dot(jnp.broadcast_to(const(w_inv), (ho,) + w_inv.shape), z)
  return out.reshape(ho, wo, b, o).transpose(2, 0, 1, 3)


@functools.lru_cache(maxsize=64)
def _band_selector(tile: int, kw: int) -> np.ndarray:
  """`[tile + kw - 1, tile, kw]` 0/1: `sel[s, x, j] = (s == x + j)`."""
  sel = np.zeros((tile + kw - 1, tile, kw), np.float32)
  for x in range(tile):
    sel[x + np.arange(kw), x, np.arange(kw)] = 1.0
  return sel


def band_tile(out_width: int, kw: int) -> int:
  """`banded_conv`'s default tile: the whole output width if it is at most
  `kw`, else `kw - 2` output columns (at least 1).

  Smaller tiles do fewer multiply-adds (`(tile + kw - 1) / kw` of the
  direct method's) but smaller matmuls and a larger stack of windows;
  `kw - 2` balances the two on the models' 9x9 and 5x5 first layers, and
  one strip covers the localisers' small second layers (4x4 and 1x1
  outputs) (benchmarks/results/design_notes.md#kernels-band-tile).
  """
  if out_width <= kw:
    return out_width
  return max(1, kw - 2)


def banded_conv(x, w, *, padding: Padding = "SAME", tile: int | None = None,
                precision=None):
  """Stride-1 2D convolution as one matmul with a banded (Toeplitz) kernel.

  For layers with few input channels (the models' 1-channel first layers),
  where XLA's CPU convolution gradients run at a small fraction of its
  matmul speed: the output is cut into rows of `tile`-column strips; each
  strip reads a `kh x (tile + kw - 1) x C` window of the input, and the
  kernel becomes the `[kh * (tile + kw - 1) * C, tile * O]` matrix that maps
  a window to its strip (zeros outside the band). So the forward pass, the
  input gradient and the weight gradient are each one dense matmul (plus
  the window stack and its transpose, an overlap-add), differentiated by
  plain autodiff. It does `(tile + kw - 1) / kw` of the direct method's
  multiply-adds (15/9 for 9x9 kernels at tile 7), all of them in matmuls.

  Args:
    x: `[B, H, W, C]` input.
    w: `[kh, kw, C, O]` kernel.
    padding: "SAME", "VALID" or `((lo_h, hi_h), (lo_w, hi_w))` with
      non-negative pairs, as in `jax.lax.conv_general_dilated`.
    tile: output columns per strip; default `band_tile(Wo, kw)`.
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
  if not _non_negative(pads):
    raise ValueError(f"`padding` must be non-negative, got {pads}.")
  ho, wo = _nonempty_out_size((h, wd), (kh, kw), pads)
  tile = band_tile(wo, kw) if tile is None else tile
  if not isinstance(tile, (int, np.integer)) or tile < 1:
    raise ValueError(f"`tile` must be a positive int, got {tile!r}.")
  strips = -(-wo // tile)
  span = tile + kw - 1
  # Pad the right edge so that the last strip's window exists; the columns
  # it computes beyond Wo are dropped.
  width = (strips - 1) * tile + span
  xp = jnp.pad(x, ((0, 0), pads[0],
                   (pads[1][0], max(0, width - wd - pads[1][0])), (0, 0)))
  windows = jnp.stack([xp[:, a:a + ho, i * tile:i * tile + span, :]
                       for i in range(strips) for a in range(kh)], axis=2)
  windows = windows.reshape(b * ho * strips, kh * span * c)
  sel = jnp.asarray(_band_selector(tile, kw), w.dtype)
  band = jnp.einsum("sxj,ajco->ascxo", sel, w, precision=precision)
  band = band.reshape(kh * span * c, tile * o)
  out = jnp.matmul(windows, band, precision=precision)
  # Rows are (b, y, strip) and columns (x in strip, o): strips side by side.
  return out.reshape(b, ho, strips * tile, o)[:, :, :wo]


def dft_conv_flops(in_size: Sequence[int], kernel: Sequence[int],
                   channels: tuple[int, int], padding: Padding) -> int:
  """Multiply-adds per image of `dft_conv` (transforms and mixing)."""
  pads = _explicit_padding(padding, tuple(kernel))
  (h, w), (c, o) = in_size, channels
  *_, (nu, nv), (ho, wo) = _dft_matrices(tuple(in_size), tuple(kernel), pads)
  return (2 * nv * w * h * c + 4 * nu * h * nv * c  # Forward DFTs.
          + 4 * nu * nv * c * o  # Complex channel mixing.
          + 4 * ho * nu * nv * o + 2 * ho * wo * nv * o)  # Inverse DFTs.


def direct_conv_flops(in_size: Sequence[int], kernel: Sequence[int],
                      channels: tuple[int, int], padding: Padding) -> int:
  """Multiply-adds per image of the direct convolution."""
  out = _out_size(in_size, kernel, _explicit_padding(padding, tuple(kernel)))
  return int(np.prod(out) * np.prod(kernel) * channels[0] * channels[1])


# The DFT runs a layer only below half the direct method's multiply-adds:
# its gradients are matmuls like its forward (XLA's backward is slow), but at
# ratios nearer 1 `banded_conv` does better
# (benchmarks/results/design_notes.md#kernels-dft-threshold).
DFT_MAX_FLOP_RATIO = 0.5
# Layers with at most this many input channels (the 1-channel first layers)
# use `banded_conv`: XLA's gradients are slowest there, and a DFT does not pay
# as the inverse transform of the many output maps dominates
# (benchmarks/results/design_notes.md#kernels-banded-channels).
BANDED_MAX_CHANNELS = 4
# Other layers that the DFT does not take use `banded_conv` too when their
# stacked windows (kh * kw * Ho * Wo * C values per image) are at most this
# many, as the localisers' small 5x5 20->20 layers, whose matmul gradients
# beat XLA's (benchmarks/results/design_notes.md#kernels-banded-taps).
BANDED_MAX_TAPS = 20_000


def conv_algorithm(in_size: Sequence[int], kernel: Sequence[int],
                   channels: tuple[int, int], padding: Padding) -> str:
  """"banded", "dft" or "xla": what `conv_general_dilated` runs.

  For a stride-1, undilated, ungrouped NHWC convolution of an `in_size`
  input by a `kernel` with `channels = (C, O)`.
  """
  pads = _explicit_padding(padding, tuple(kernel))
  non_negative = _non_negative(pads)
  if channels[0] <= BANDED_MAX_CHANNELS and non_negative:
    return "banded"
  if (dft_conv_flops(in_size, kernel, channels, padding) <=
      DFT_MAX_FLOP_RATIO * direct_conv_flops(in_size, kernel, channels,
                                             padding)):
    return "dft"
  taps = int(np.prod(kernel) * np.prod(_out_size(in_size, kernel, pads)) *
             channels[0])
  if taps <= BANDED_MAX_TAPS and non_negative:
    return "banded"
  return "xla"


def conv_general_dilated(lhs, rhs, window_strides=(1, 1), padding="SAME",
                         lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None,
                         preferred_element_type=None):
  """`jax.lax.conv_general_dilated` for flax's `nn.Conv`, computed fast.

  Same signature and result (NHWC input, HWIO kernel). Stride-1,
  undilated, ungrouped layers with at most `BANDED_MAX_CHANNELS` input
  channels run as `banded_conv`; other such layers whose `dft_conv` costs
  at most `DFT_MAX_FLOP_RATIO` of the direct method's multiply-adds as
  `dft_conv`; the rest with at most `BANDED_MAX_TAPS` window values per
  image as `banded_conv` again; every other layer as XLA's own convolution
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
    if algo == "banded":
      return banded_conv(lhs, rhs, padding=padding, precision=precision)
    if algo == "dft":
      return dft_conv(lhs, rhs, padding=padding, precision=precision)
  return jax.lax.conv_general_dilated(
      lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)


# ------------------------------------------------------------ pooling


@jax.custom_jvp
def _first_max(a, b):
  """`jnp.maximum(a, b)` whose derivative follows `a` on ties.

  `jnp.maximum`'s derivative splits ties 1/2 : 1/2, so a pool of tied values
  would share its gradient; first-wins is XLA's and torch's rule, and costs
  one select per pair instead of two selects and a divide
  (benchmarks/results/design_notes.md#kernels-pool-ties).
  """
  return jnp.maximum(a, b)


@_first_max.defjvp
def _first_max_jvp(primals, tangents):
  a, b = primals
  da, db = tangents
  return jnp.maximum(a, b), jnp.where(a >= b, da, db)


def max_pool(x, window: int = 2):
  """Non-overlapping `window x window` max-pooling ("VALID", stride = window).

  The maximum of the window's `window**2` strided slices, taken pairwise
  (a balanced tree of maxima): elementwise work that XLA fuses into one
  loop, with an elementwise gradient, because XLA:CPU runs a reshape + max
  over the window axes (and its gradient's tie count) as slow library
  reductions (benchmarks/results/design_notes.md#kernels-max-pool).

  Args:
    x: `[B, H, W, C]`.
    window: pooling window and stride.

  Returns:
    `[B, H // window, W // window, C]`, the values of
    `nn.max_pool(x, (window, window), strides=(window, window))` (trailing
    rows/columns that do not fill a window are dropped, as there), and the
    same gradient: all of it to the window's maximum, to the first one in
    row-major window order when several tie (as XLA's and torch's pools).
  """
  if x.ndim != 4:
    raise ValueError(f"`x` must be [B, H, W, C], got shape {x.shape}.")
  if window < 1:
    raise ValueError(f"`window` must be a positive int, got {window!r}.")
  ho, wo = x.shape[1] // window, x.shape[2] // window
  x = x[:, :ho * window, :wo * window]
  parts = [x[:, a::window, b::window] for a in range(window)
           for b in range(window)]
  # Pairs of neighbours in row-major order: the earlier part stays first.
  while len(parts) > 1:
    pairs = [_first_max(p, q) for p, q in zip(parts[::2], parts[1::2])]
    parts = pairs + parts[len(pairs) * 2:]
  return parts[0]
