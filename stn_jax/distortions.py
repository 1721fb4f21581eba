"""The paper's distorted MNIST variants (R, RTS, P, E, TC), made on the device.

Every distortion is a random warp built with the project's own grid
generators (`affine_grid`, `projective_grid`, `tps_grid`) and `sample`
(bilinear, zero padding, `align_corners=False` so that pixel `i` of an `n`
pixel image sits at normalised `(2 i + 1) / n - 1` and the image edges at
+-1). Grids map OUTPUT (canvas) pixels to INPUT (28x28 digit) positions, so
each warp below is the inverse of the forward "move the digit" description.
Everything is a pure function of a PRNG key, vmapped over the batch and
jittable; every number comes from a config (`default_distortion_config`).

Distortions (`S` = `canvas_size`, sizes in pixels):

* "r": rotation uniform in [-max_rotation_deg, +max_rotation_deg] about the
  image centre (corners that leave the canvas are cut, as in the paper).
* "rts": rotation uniform in +-max_rotation_deg, scale uniform in
  [min_scale, max_scale], and the digit placed at a uniformly random position.
  "The digit" is the 28x28 frame scaled by s: its centre is offset from the
  canvas centre by t, each axis uniform in +-(S/2 - 14 s), so the scaled,
  unrotated frame stays on the canvas. The same bound keeps the frame's
  inscribed disk (radius 14 s) on the canvas under any rotation, which holds
  the ink of a centred MNIST digit; the corners of a rotated frame may leave.
  Requires S >= 28 max_scale.
* "p": scale uniform in [min_scale, max_scale] about the centre, then 4
  corners each moved by N(0, corner_std_px) independently in x and y, and the
  plane projective map through the 4 point pairs (`projective_from_points`).
  Which corners move is `corners_moved_in`:
  "input" (the default) moves the corners of the sampling grid in the digit
  (input pixels), the convention of the STN's own projective transformer
  (T: output -> input): the canvas corners sample the digit at the scaled,
  moved points, so the map is finite over the whole canvas while those 4
  points stay in convex position; "output" moves the corners of the scaled
  digit frame on the canvas (output pixels, the forward warp), whose inverse
  sends part of the canvas through the horizon line when the moves are large
  against the frame, squashing about a tenth of the digits to a line or
  nothing at corner_std_px=5 (docs/reproduction.md, reading 11).
* "e": scale as in "p", then the points of a `tps_grid_size` x `tps_grid_size`
  lattice (its edges included), each moved by N(0, control_std_px) in x and
  y, and the thin-plate spline through the point pairs. Which lattice moves
  is `points_moved_in`: "output" (the default) moves the scaled digit
  frame's lattice on the canvas (the forward warp: the moved points are the
  TPS's source points, sent back to the digit lattice), which solves a new
  TPS system per digit; "input" moves the points where the canvas lattice
  samples the digit (the TPS's control points, in digit pixels, at the
  canvas lattice divided by the scale), the convention of the STN's own TPS
  transformer, whose source points stay fixed, so the grid is one cached
  `[S*S, K]` product per digit: much cheaper, and a milder task
  (docs/reproduction.md, reading 11, has both measured).
* "tc": the 28x28 digit at a uniformly random integer position fully on the
  canvas, plus `num_clutter` patches of `clutter_size` x `clutter_size` cut at
  uniformly random integer positions (anywhere in the 28x28 frame, so some
  patches are nearly blank, as in deepmind/mnist-cluttered) from uniformly
  random images of `clutter_source`, placed at uniformly random integer
  positions fully on the canvas. Digit and patches are copied exactly
  (`dynamic_slice` / `dynamic_update_slice`: every offset is an integer) and
  combine with a pixelwise max, so overlaps never exceed 1. "Other digits":
  a patch's source is drawn from the whole `clutter_source`; it is the
  distorted digit itself with probability 1/len(clutter_source), which is
  left as is.

Randomness: a batch call splits its key into one key per example, so
`fn(key, images)[i]` depends on `key`, `i` and `images[i]` only;
`stn_jax.input_pipeline.make_test_set` uses the same per-example keys, so a test set does not
depend on the chunk size used to make it. Training calls
`fn(jax.random.fold_in(key, step), images)` to get fresh warps every step.

Rotation sign: a positive angle turns the digit clockwise as displayed (image
y axis points down).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

import stn_jax

DIGIT_SIZE = 28
_SAMPLE_KW = dict(method="bilinear", padding_mode="zeros", align_corners=False)
Params = Mapping[str, Any]  # validated Python values of one distortion


# ------------------------------------------------------------ coordinate maps


def _px_to_norm(size: int) -> np.ndarray:
  """3x3 map pixel (x, y, 1) -> normalised, align_corners=False."""
  a, b = 2.0 / size, 1.0 / size - 1.0
  return np.array([[a, 0, b], [0, a, b], [0, 0, 1]], np.float32)


def _norm_to_px(size: int) -> np.ndarray:
  """3x3 map normalised (x, y, 1) -> pixel, align_corners=False."""
  a, b = size / 2.0, size / 2.0 - 0.5
  return np.array([[a, 0, b], [0, a, b], [0, 0, 1]], np.float32)


def _pixel_theta(m_px, *, in_size: int, out_size: int) -> jnp.ndarray:
  """`[3, 3]` output-pixel -> input-pixel affine map -> normalised `[2, 3]`."""
  theta = (jnp.asarray(_px_to_norm(in_size)) @ m_px
           @ jnp.asarray(_norm_to_px(out_size)))
  return theta[:2]


def _translate(t) -> jnp.ndarray:
  t = jnp.asarray(t, jnp.float32)
  one, zero = jnp.ones((), jnp.float32), jnp.zeros((), jnp.float32)
  return jnp.stack([jnp.stack([one, zero, t[0]]), jnp.stack([zero, one, t[1]]),
                    jnp.stack([zero, zero, one])])


def _rotate_scale(angle, scale) -> jnp.ndarray:
  """3x3 of `scale * R(angle)`, R = [[cos, -sin], [sin, cos]]."""
  c, s = jnp.cos(angle) * scale, jnp.sin(angle) * scale
  zero, one = jnp.zeros_like(c), jnp.ones_like(c)
  return jnp.stack([jnp.stack([c, -s, zero]), jnp.stack([s, c, zero]),
                    jnp.stack([zero, zero, one])])


def _centre(size: int) -> float:
  return (size - 1) / 2.0


def similarity_theta(angle, scale, translation, *, canvas_size: int):
  """The normalised `[2, 3]` theta that shows the digit rotated/scaled/moved.

  Forward (digit pixel p_d -> canvas pixel p_c):
  p_c = c_canvas + translation + scale * R(angle) (p_d - c_digit), with c the
  image centres ((n - 1) / 2). The returned theta is the inverse map (canvas ->
  digit) in normalised coordinates (align_corners=False), as `affine_grid`
  takes it, for a `[canvas_size, canvas_size]` grid over a 28x28 input.

  Args:
    angle: scalar radians (positive turns clockwise as displayed).
    scale: scalar > 0.
    translation: `[2]` (x, y) offset of the digit centre from the canvas
      centre, in canvas pixels.
    canvas_size: output size S.

  Returns:
    `[2, 3]` float32 theta.
  """
  c_out = _centre(canvas_size)
  c_in = _centre(DIGIT_SIZE)
  translation = jnp.asarray(translation, jnp.float32)
  m_px = (_translate(jnp.array([c_in, c_in]))
          @ _rotate_scale(-jnp.asarray(angle, jnp.float32),
                          1.0 / jnp.asarray(scale, jnp.float32))
          @ _translate(-(jnp.array([c_out, c_out]) + translation)))
  return _pixel_theta(m_px, in_size=DIGIT_SIZE, out_size=canvas_size)


def _digit_points_to_output_norm(points_norm, scale, offsets_px, canvas: int):
  """Digit-frame normalised points -> normalised canvas positions after the
  forward warp: scaled by `scale` about the centre, then moved by offsets."""
  points_px = (points_norm + 1.0) * (DIGIT_SIZE / 2.0) - 0.5
  c_out, c_in = _centre(canvas), _centre(DIGIT_SIZE)
  out_px = c_out + scale * (points_px - c_in) + offsets_px
  return (2.0 * out_px + 1.0) / canvas - 1.0


def _output_points_to_digit_norm(points_norm, scale, offsets_px, canvas: int):
  """Normalised canvas points -> the normalised digit points they sample
  after the inverse scaling, moved by offsets in digit pixels."""
  scale = jnp.asarray(scale, jnp.float32)
  offsets = jnp.asarray(offsets_px, jnp.float32)
  return points_norm * (canvas / (DIGIT_SIZE * scale)) + offsets * (
      2.0 / DIGIT_SIZE)


_CORNERS = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)


# -------------------------------------------------------------- per distortion
# Each `_sample_*` draws ONE example's parameters from a key; each `_render_*`
# warps ONE float32 [28, 28, 1] digit with them into [S, S, 1].


def _uniform(key, low, high, shape=()):
  return jax.random.uniform(key, shape, jnp.float32, low, high)


def _sample_r(key, p: Params, num_sources):
  del num_sources
  max_angle = np.deg2rad(p["max_rotation_deg"])
  return {"angle": _uniform(key, -max_angle, max_angle)}


def _render_r(image, params, p: Params, clutter_source):
  del clutter_source
  s = p["canvas_size"]
  theta = similarity_theta(params["angle"], 1.0, jnp.zeros(2), canvas_size=s)
  return stn_jax.sample(image, stn_jax.affine_grid(theta, (s, s)), **_SAMPLE_KW)


def _sample_rts(key, p: Params, num_sources):
  del num_sources
  k_angle, k_scale, k_t = jax.random.split(key, 3)
  max_angle = np.deg2rad(p["max_rotation_deg"])
  scale = _uniform(k_scale, p["min_scale"], p["max_scale"])
  # Keeps the scaled 28x28 frame on the canvas (see module docstring).
  max_shift = p["canvas_size"] / 2.0 - (DIGIT_SIZE / 2.0) * scale
  return {"angle": _uniform(k_angle, -max_angle, max_angle),
          "scale": scale,
          "translation": _uniform(k_t, -1.0, 1.0, (2,)) * max_shift}


def _render_rts(image, params, p: Params, clutter_source):
  del clutter_source
  s = p["canvas_size"]
  theta = similarity_theta(params["angle"], params["scale"],
                           params["translation"], canvas_size=s)
  return stn_jax.sample(image, stn_jax.affine_grid(theta, (s, s)), **_SAMPLE_KW)


def _sample_p(key, p: Params, num_sources):
  del num_sources
  k_scale, k_corner = jax.random.split(key)
  return {"scale": _uniform(k_scale, p["min_scale"], p["max_scale"]),
          "corner_offsets": p["corner_std_px"] * jax.random.normal(
              k_corner, (4, 2), jnp.float32)}


# Where the random moves of "p" (corners) and "e" (lattice points) apply:
# "input", the digit's pixels where the canvas samples it (the STN's own
# T: output -> input), or "output", the canvas (the forward warp).
MOVE_CONVENTIONS = ("input", "output")


def projective_homography(scale, corner_offsets, *, canvas_size: int,
                          corners_moved_in: str = "input"):
  """The normalised `[3, 3]` output -> input homography of the "p" warp.

  Args:
    scale: scalar, the digit's scale about the centre.
    corner_offsets: `[4, 2]` (x, y) moves in pixels of the corners
      (-1,-1), (1,-1), (1,1), (-1,1).
    canvas_size: output size S.
    corners_moved_in: "input": the moves are in digit (input) pixels, applied
      to the sampling grid's corners, which sit at the canvas corners divided
      by `scale` (normalised: +-S / (28 scale)); "output": the moves are in
      canvas pixels, applied to the corners of the scaled digit frame.

  Returns:
    `[3, 3]` H (h33 = 1). "input": H maps each canvas corner to its moved
    sampling point; "output": H maps each moved frame corner, in normalised
    canvas coordinates, to its digit-frame corner.
  """
  corners = jnp.asarray(_CORNERS)
  if corners_moved_in == "input":
    sampled = _output_points_to_digit_norm(corners, scale, corner_offsets,
                                           canvas_size)
    return stn_jax.projective_from_points(corners, sampled)
  if corners_moved_in == "output":
    moved = _digit_points_to_output_norm(corners, scale, corner_offsets,
                                         canvas_size)
    return stn_jax.projective_from_points(moved, corners)
  raise ValueError(f"`corners_moved_in` must be one of "
                   f"{list(MOVE_CONVENTIONS)}, got {corners_moved_in!r}.")


def _render_p(image, params, p: Params, clutter_source):
  del clutter_source
  s = p["canvas_size"]
  h = projective_homography(params["scale"], params["corner_offsets"],
                            canvas_size=s,
                            corners_moved_in=p["corners_moved_in"])
  return stn_jax.sample(image, stn_jax.projective_grid(h, (s, s)),
                        **_SAMPLE_KW)


def _sample_e(key, p: Params, num_sources):
  del num_sources
  k_scale, k_ctrl = jax.random.split(key)
  k = p["tps_grid_size"] ** 2
  return {"scale": _uniform(k_scale, p["min_scale"], p["max_scale"]),
          "control_offsets": p["control_std_px"] * jax.random.normal(
              k_ctrl, (k, 2), jnp.float32)}


def elastic_grid(scale, control_offsets, *, canvas_size: int,
                 points_moved_in: str = "output"):
  """The `[S, S, 2]` TPS grid of the "e" warp.

  Args:
    scale: scalar, the digit's scale about the centre.
    control_offsets: `[K, 2]` (x, y) moves in pixels of the K lattice points
      (`stn_jax.tps_source_points(K)`, row-major).
    canvas_size: output size S.
    points_moved_in: "input": the lattice is the canvas's (fixed source
      points), and the moves are in digit pixels, applied where it samples
      the digit (normalised: lattice * S / (28 scale)); "output": the lattice
      is the digit frame's, scaled onto the canvas and moved there in canvas
      pixels (the moved points are the source points).

  Returns:
    `[S, S, 2]` grid. "input": each canvas lattice point samples the digit
    exactly at its moved point; "output": each moved point samples the digit
    exactly at its lattice point.
  """
  k = control_offsets.shape[0]
  lattice = jnp.asarray(stn_jax.tps_source_points(k))
  if points_moved_in == "input":
    sampled = _output_points_to_digit_norm(lattice, scale, control_offsets,
                                           canvas_size)
    return stn_jax.tps_grid(sampled, (canvas_size, canvas_size))
  if points_moved_in == "output":
    moved = _digit_points_to_output_norm(lattice, scale, control_offsets,
                                         canvas_size)
    return stn_jax.tps_grid(lattice, (canvas_size, canvas_size),
                            source_points=moved)
  raise ValueError(f"`points_moved_in` must be one of "
                   f"{list(MOVE_CONVENTIONS)}, got {points_moved_in!r}.")


def _render_e(image, params, p: Params, clutter_source):
  del clutter_source
  grid = elastic_grid(params["scale"], params["control_offsets"],
                      canvas_size=p["canvas_size"],
                      points_moved_in=p["points_moved_in"])
  return stn_jax.sample(image, grid, **_SAMPLE_KW)


def _sample_tc(key, p: Params, num_sources):
  s, c, n = p["canvas_size"], p["clutter_size"], p["num_clutter"]
  k_digit, k_idx, k_src, k_dst = jax.random.split(key, 4)
  randint = functools.partial(jax.random.randint, dtype=jnp.int32)
  return {
      "digit_offset": randint(k_digit, (2,), 0, s - DIGIT_SIZE + 1),
      "clutter_index": randint(k_idx, (n,), 0, num_sources),
      "clutter_src": randint(k_src, (n, 2), 0, DIGIT_SIZE - c + 1),
      "clutter_dst": randint(k_dst, (n, 2), 0, s - c + 1),
  }


def _render_tc(image, params, p: Params, clutter_source):
  s, c = p["canvas_size"], p["clutter_size"]
  dx, dy = params["digit_offset"][0], params["digit_offset"][1]
  # Integer offsets: a copy is exact, and much cheaper under vmap than a
  # canvas-size bilinear sample
  # (benchmarks/results/design_notes.md#distortions-tc-copies).
  out = jax.lax.dynamic_update_slice(jnp.zeros((s, s, 1), jnp.float32), image,
                                     (dy, dx, 0))

  def paste_patch(k, canvas):
    """Patch k's pixelwise max with the canvas under it, written back."""
    src, dst = params["clutter_src"][k], params["clutter_dst"][k]
    source = _to_float(clutter_source[params["clutter_index"][k]])[..., None]
    patch = jax.lax.dynamic_slice(source, (src[1], src[0], 0), (c, c, 1))
    under = jax.lax.dynamic_slice(canvas, (dst[1], dst[0], 0), (c, c, 1))
    return jax.lax.dynamic_update_slice(canvas, jnp.maximum(under, patch),
                                        (dst[1], dst[0], 0))

  # One patch at a time onto the canvas: no canvas-size array per patch.
  return jax.lax.fori_loop(0, p["num_clutter"], paste_patch, out)


# ---------------------------------------------------------------- registry


@dataclasses.dataclass(frozen=True)
class Distortion:
  """One distortion family.

  Attributes:
    name: registry name.
    defaults: config field -> default value (the paper's numbers).
    sample_one: `(key, params, num_clutter_sources) -> dict` of one example's
      random parameters.
    render_one: `(image [28, 28, 1] f32, random params, params,
      clutter_source) -> [S, S, 1]`.
    needs_clutter: whether `clutter_source` is required.
  """
  name: str
  defaults: Mapping[str, Any]
  sample_one: Callable[..., dict]
  render_one: Callable[..., jnp.ndarray]
  needs_clutter: bool = False

  def output_size(self, cfg) -> int:
    """The canvas size S of the output `[B, S, S, 1]`."""
    return config_values(self.name, cfg)["canvas_size"]


DISTORTIONS: dict[str, Distortion] = {
    "r": Distortion("r", {"canvas_size": 28, "max_rotation_deg": 90.0},
                    _sample_r, _render_r),
    "rts": Distortion("rts", {"canvas_size": 42, "max_rotation_deg": 45.0,
                              "min_scale": 0.7, "max_scale": 1.2},
                      _sample_rts, _render_rts),
    "p": Distortion("p", {"canvas_size": 28, "min_scale": 0.75,
                          "max_scale": 1.0, "corner_std_px": 5.0,
                          "corners_moved_in": "input"},
                    _sample_p, _render_p),
    "e": Distortion("e", {"canvas_size": 28, "min_scale": 0.75,
                          "max_scale": 1.0, "tps_grid_size": 4,
                          "control_std_px": 1.5,
                          "points_moved_in": "output"},
                    _sample_e, _render_e),
    "tc": Distortion("tc", {"canvas_size": 60, "num_clutter": 6,
                            "clutter_size": 6},
                     _sample_tc, _render_tc, needs_clutter=True),
}


def get_distortion(name: str) -> Distortion:
  """The registered distortion `name` ("r", "rts", "p", "e", "tc")."""
  if name not in DISTORTIONS:
    raise ValueError(
        f"`name` must be one of {sorted(DISTORTIONS)}, got {name!r}.")
  return DISTORTIONS[name]


def default_distortion_config(name: str) -> ml_collections.ConfigDict:
  """The paper's numbers for distortion `name`, as a fresh ConfigDict."""
  return ml_collections.ConfigDict(dict(get_distortion(name).defaults))


# ------------------------------------------------------------ config checks

# field -> (type, lower bound, upper bound); bounds inclusive, None = open.
# A str field's entry is (str, its allowed values, None).
_FIELDS = {
    "canvas_size": (int, DIGIT_SIZE, None),
    "max_rotation_deg": (float, 0.0, 180.0),
    "min_scale": (float, 1e-3, None),
    "max_scale": (float, 1e-3, None),
    "corner_std_px": (float, 0.0, None),
    "control_std_px": (float, 0.0, None),
    "tps_grid_size": (int, 2, None),
    "num_clutter": (int, 0, None),
    "clutter_size": (int, 1, DIGIT_SIZE),
    "corners_moved_in": (str, MOVE_CONVENTIONS, None),
    "points_moved_in": (str, MOVE_CONVENTIONS, None),
}


def _read_field(cfg, field: str):
  if isinstance(cfg, Mapping):
    if field in cfg:
      return cfg[field]
  elif hasattr(cfg, field):
    return getattr(cfg, field)
  raise ValueError(f"`cfg` must have the field `{field}`, got {cfg!r}.")


def config_values(name: str, cfg) -> dict[str, Any]:
  """Reads and checks the fields of distortion `name` from `cfg`.

  Args:
    name: distortion name.
    cfg: ConfigDict, mapping or any attribute object holding every field of
      `default_distortion_config(name)`; other fields are ignored.

  Returns:
    dict field -> Python int/float/str, in the defaults' order.

  Raises:
    ValueError: a field is missing, of the wrong type, or out of range.
  """
  dist = get_distortion(name)
  values = {}
  for field in dist.defaults:
    kind, low, high = _FIELDS[field]
    value = _read_field(cfg, field)
    if kind is str:
      if value not in low:
        raise ValueError(
            f"`cfg.{field}` of distortion {name!r} must be one of "
            f"{list(low)}, got {value!r}.")
      values[field] = str(value)
      continue
    ok_type = (isinstance(value, (int, np.integer)) if kind is int
               else isinstance(value, (int, float, np.integer, np.floating)))
    if isinstance(value, bool) or not ok_type:
      raise ValueError(
          f"`cfg.{field}` of distortion {name!r} must be a {kind.__name__}, "
          f"got {value!r}.")
    value = kind(value)
    if not np.isfinite(value) or (low is not None and value < low) or (
        high is not None and value > high):
      raise ValueError(
          f"`cfg.{field}` of distortion {name!r} must lie in "
          f"[{low}, {'inf' if high is None else high}], got {value!r}.")
    values[field] = value
  if "min_scale" in values and values["min_scale"] > values["max_scale"]:
    raise ValueError(
        f"`cfg.min_scale` must be <= `cfg.max_scale` for distortion {name!r}, "
        f"got {values['min_scale']} > {values['max_scale']}.")
  if name == "rts" and values["canvas_size"] < DIGIT_SIZE * values["max_scale"]:
    raise ValueError(
        f"`cfg.canvas_size` of 'rts' must be >= 28 * max_scale = "
        f"{DIGIT_SIZE * values['max_scale']} so that the scaled digit fits, "
        f"got {values['canvas_size']}.")
  return values


# ------------------------------------------------------------ batched API


def _to_float(images) -> jnp.ndarray:
  """uint8 (0..255) -> float32 / 255; floating -> float32 (assumed 0..1)."""
  images = jnp.asarray(images)
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(
        f"images must be uint8 (0..255) or floating (0..1), got {images.dtype}.")
  return images.astype(jnp.float32)


def check_images(arg: str, images) -> None:
  """Raises ValueError naming `arg` unless `images` is `[N>0, 28, 28]`."""
  shape = tuple(np.shape(images))
  if len(shape) != 3 or shape[1:] != (DIGIT_SIZE, DIGIT_SIZE) or not shape[0]:
    raise ValueError(
        f"`{arg}` must have shape [N>0, {DIGIT_SIZE}, {DIGIT_SIZE}], got "
        f"{list(shape)}.")


def check_clutter(dist: Distortion, clutter_source) -> int | None:
  """Returns the number of clutter source images (None when unused)."""
  if not dist.needs_clutter:
    return None
  if clutter_source is None:
    raise ValueError(
        f"distortion {dist.name!r} needs `clutter_source` ([N, 28, 28] images "
        "to cut clutter from, e.g. the training images), got None.")
  check_images("clutter_source", clutter_source)
  return int(np.shape(clutter_source)[0])


def per_example_keys(key, batch: int):
  """`[batch]` keys, one per example (a batch's example i uses key i)."""
  return jax.random.split(key, batch)


def _sample_with_keys(dist, p, keys, num_sources):
  return jax.vmap(lambda k: dist.sample_one(k, p, num_sources))(keys)


def _render_batch(dist, p, images, params, clutter_source):
  images = _to_float(images)[..., None]
  if clutter_source is not None:
    clutter_source = jnp.asarray(clutter_source)
  out = jax.vmap(lambda im, pr: dist.render_one(im, pr, p, clutter_source))(
      images, params)
  return jnp.clip(out, 0.0, 1.0)  # bilinear of [0, 1] values; float rounding


def distort_with_keys(dist, p, keys, images, num_sources, clutter_source):
  """`[B, S, S, 1]`: `images` `[B, 28, 28]` distorted with per-example
  `keys` `[B]` (`per_example_keys`), validated values `p`."""
  params = _sample_with_keys(dist, p, keys, num_sources)
  return _render_batch(dist, p, images, params, clutter_source)


def sample_params(name: str, key, batch: int, cfg, *,
                  num_clutter_sources: int | None = None) -> dict:
  """The random parameters that `make_distort_fn(name, cfg)(key, ...)` uses.

  Args:
    name: distortion name.
    key: PRNG key (split into one key per example).
    batch: B.
    cfg: the distortion's config.
    num_clutter_sources: N of `clutter_source` (for "tc" only).

  Returns:
    dict of `[B, ...]` arrays: r: angle (radians); rts: angle, scale,
    translation `[B, 2]` (canvas px from the centre); p: scale,
    corner_offsets `[B, 4, 2]` px; e: scale, control_offsets `[B, K, 2]` px;
    tc: digit_offset `[B, 2]` (x, y) top-left px, clutter_index `[B, n]`,
    clutter_src `[B, n, 2]` (x, y) top-left in the source digit, clutter_dst
    `[B, n, 2]` (x, y) top-left on the canvas.
  """
  dist = get_distortion(name)
  p = config_values(name, cfg)
  if dist.needs_clutter and not (num_clutter_sources or 0) >= 1:
    raise ValueError(
        f"`num_clutter_sources` must be >= 1 for {name!r}, got "
        f"{num_clutter_sources!r}.")
  if not isinstance(batch, (int, np.integer)) or batch < 1:
    raise ValueError(f"`batch` must be a positive int, got {batch!r}.")
  fn = _sample_fn(name, tuple(p.items()), int(batch), num_clutter_sources)
  return fn(key)


@functools.lru_cache(maxsize=32)
def _sample_fn(name: str, frozen: tuple, batch: int, num_sources):
  dist, p = get_distortion(name), dict(frozen)
  return jax.jit(lambda key: _sample_with_keys(
      dist, p, per_example_keys(key, batch), num_sources))


def render(name: str, images, params: dict, cfg, *,
           clutter_source=None) -> jnp.ndarray:
  """Warps `images` [B, 28, 28] with given random `params` (`sample_params`).

  Returns:
    float32 `[B, S, S, 1]` in [0, 1].
  """
  dist = get_distortion(name)
  p = config_values(name, cfg)
  check_images("images", images)
  check_clutter(dist, clutter_source)
  if not dist.needs_clutter:
    clutter_source = None
  return _render_fn(name, tuple(p.items()))(images, params, clutter_source)


@functools.lru_cache(maxsize=32)
def _render_fn(name: str, frozen: tuple):
  dist, p = get_distortion(name), dict(frozen)
  return jax.jit(lambda images, params, clutter_source: _render_batch(
      dist, p, images, params, clutter_source))


@functools.lru_cache(maxsize=32)
def _distort_fn(name: str, frozen: tuple):
  dist, p = get_distortion(name), dict(frozen)

  def fn(key, images, clutter_source=None):
    check_images("images", images)
    num_sources = check_clutter(dist, clutter_source)
    if not dist.needs_clutter:
      clutter_source = None  # unused; keeps it out of the computation
    keys = per_example_keys(key, np.shape(images)[0])
    return distort_with_keys(dist, p, keys, images, num_sources,
                             clutter_source)

  return jax.jit(fn)


def make_distort_fn(name: str, cfg):
  """A jitted `fn(key, images, clutter_source=None) -> [B, S, S, 1]`.

  The function closes over the config's Python numbers (checked here).
  `images` are `[B, 28, 28]` uint8 (0..255) or float (0..1); the result is
  float32 `[B, S, S, 1]` in [0, 1], S = `cfg.canvas_size`. Each example gets
  its own key from `jax.random.split(key, B)`. `clutter_source` `[N, 28, 28]`
  is required by "tc" and ignored by the others; pass a device array
  (`jax.device_put` once) so it is not copied to the device every call.
  For training, call `fn(jax.random.fold_in(key, step), images)`.
  """
  return _distort_fn(name, tuple(config_values(name, cfg).items()))


def distort(name: str, key, images, *, cfg, clutter_source=None):
  """`make_distort_fn(name, cfg)(key, images, clutter_source)`.

  Args:
    name: "r", "rts", "p", "e" or "tc".
    key: PRNG key.
    images: `[B, 28, 28]` uint8 or float in [0, 1].
    cfg: the distortion's config (fields of `default_distortion_config`).
    clutter_source: `[N, 28, 28]` images to cut clutter from ("tc" only).

  Returns:
    float32 `[B, S, S, 1]` in [0, 1].
  """
  return make_distort_fn(name, cfg)(key, images, clutter_source)


def __getattr__(name):
  """`distortions.make_test_set`: now `stn_jax.input_pipeline.make_test_set`
  (imported on use: the input pipeline imports this module)."""
  if name == "make_test_set":
    from stn_jax import input_pipeline  # pylint: disable=g-import-not-at-top
    return input_pipeline.make_test_set
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
