"""Tests of the distorted-MNIST generators (synthetic digits; no data needed)."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import interpolate
from scipy import ndimage
from scipy import stats

import stn_jax
from stn_jax import distortions as D
from stn_jax import input_pipeline as P

NAMES = ("r", "rts", "p", "e", "tc")
SIZES = {"r": 28, "rts": 42, "p": 28, "e": 28, "tc": 60}


def _digits(n, seed=0):
  """Random uint8 'digits' [n, 28, 28]: blobs of ink on a dark frame."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
  x[:, :4], x[:, -4:], x[:, :, :4], x[:, :, -4:] = 0, 0, 0, 0
  return x


def _blob(cx, cy, sigma=0.8):
  """float32 [28, 28] Gaussian blob centred at pixel (cx, cy)."""
  ys, xs = np.mgrid[0:28, 0:28]
  return np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * sigma ** 2)).astype(
      np.float32)


def _centroid(img):
  img = np.asarray(img)[..., 0] if np.ndim(img) == 3 else np.asarray(img)
  ys, xs = np.mgrid[0:img.shape[0], 0:img.shape[1]]
  return np.array([(xs * img).sum(), (ys * img).sum()]) / img.sum()


def _cfg(name, **overrides):
  cfg = D.default_distortion_config(name)
  cfg.update(overrides)
  return cfg


# ------------------------------------------------------------------ basics


@pytest.mark.parametrize("name", NAMES)
def test_shapes_dtype_range_and_determinism(name):
  images = _digits(4)
  images[2] = images[0]
  clutter = jnp.asarray(_digits(4, seed=1))
  fn = D.make_distort_fn(name, D.default_distortion_config(name))
  key = jax.random.key(0)
  out = fn(key, images, clutter)
  s = SIZES[name]
  assert out.shape == (4, s, s, 1) and out.dtype == jnp.float32
  assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
  assert float(out.max()) > 0.5  # the digit is visible
  np.testing.assert_array_equal(out, fn(key, images, clutter))
  # Fresh warps each training step; each example its own warp.
  step1 = fn(jax.random.fold_in(key, 1), images, clutter)
  step2 = fn(jax.random.fold_in(key, 2), images, clutter)
  assert float(jnp.abs(step1 - step2).max()) > 0.1
  assert float(jnp.abs(out[0] - out[2]).max()) > 0.1


def test_uint8_and_float_images_agree():
  images = _digits(3)
  fn = D.make_distort_fn("r", D.default_distortion_config("r"))
  key = jax.random.key(0)
  np.testing.assert_allclose(fn(key, images / 255.0), fn(key, images),
                             atol=1e-5)


def test_default_configs_match_the_paper():
  assert set(D.DISTORTIONS) == set(NAMES)
  assert dict(D.default_distortion_config("r")) == {
      "canvas_size": 28, "max_rotation_deg": 90.0}
  assert dict(D.default_distortion_config("rts")) == {
      "canvas_size": 42, "max_rotation_deg": 45.0, "min_scale": 0.7,
      "max_scale": 1.2}
  assert dict(D.default_distortion_config("p")) == {
      "canvas_size": 28, "min_scale": 0.75, "max_scale": 1.0,
      "corner_std_px": 5.0, "corners_moved_in": "input"}
  assert dict(D.default_distortion_config("e")) == {
      "canvas_size": 28, "min_scale": 0.75, "max_scale": 1.0,
      "tps_grid_size": 4, "control_std_px": 1.5, "points_moved_in": "output"}
  assert dict(D.default_distortion_config("tc")) == {
      "canvas_size": 60, "num_clutter": 6, "clutter_size": 6}
  for name in NAMES:
    assert D.get_distortion(name).output_size(
        D.default_distortion_config(name)) == SIZES[name]


def test_pixel_normalisation_matches_core():
  pts = np.array([[0.0, 0.0], [13.5, 2.0], [41.0, 41.0]], np.float32)
  hom = np.concatenate([pts, np.ones((3, 1), np.float32)], 1)
  ours = (D._px_to_norm(42) @ hom.T).T[:, :2]
  np.testing.assert_allclose(
      ours, stn_jax.pixel_to_normalized(pts, (42, 42)), atol=1e-5)
  np.testing.assert_allclose(
      (D._norm_to_px(42) @ D._px_to_norm(42)), np.eye(3), atol=1e-5)


# ------------------------------------------------------------------ R, RTS


def test_rotation_angles_uniform_in_range():
  params = D.sample_params("r", jax.random.key(1), 4000,
                           D.default_distortion_config("r"))
  angle = np.degrees(np.asarray(params["angle"]))
  assert np.abs(angle).max() <= 90.0 + 1e-4
  assert angle.min() < -88 and angle.max() > 88  # the whole range is used
  assert stats.kstest(angle, stats.uniform(-90, 180).cdf).pvalue > 1e-3


def test_rts_params_ranges_and_uniformity():
  cfg = D.default_distortion_config("rts")
  params = jax.tree.map(np.asarray,
                        D.sample_params("rts", jax.random.key(2), 4000, cfg))
  angle, scale, t = (np.degrees(params["angle"]), params["scale"],
                     params["translation"])
  assert stats.kstest(angle, stats.uniform(-45, 90).cdf).pvalue > 1e-3
  assert stats.kstest(scale, stats.uniform(0.7, 0.5).cdf).pvalue > 1e-3
  max_shift = 21.0 - 14.0 * scale
  rel = t / max_shift[:, None]
  assert np.abs(rel).max() <= 1.0 + 1e-5
  for axis in range(2):
    assert stats.kstest(rel[:, axis], stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_rts_equals_a_directly_built_warp():
  """The rendered RTS images equal a grid built point by point from the
  forward description with the core's pixel <-> normalised helpers."""
  cfg = D.default_distortion_config("rts")
  images = _digits(4)
  params = D.sample_params("rts", jax.random.key(3), 4, cfg)
  out = D.render("rts", images, params, cfg)
  ys, xs = np.mgrid[0:42, 0:42].astype(np.float32)
  a, s = np.asarray(params["angle"]), np.asarray(params["scale"])
  a, s = a[:, None, None], s[:, None, None]
  t = np.asarray(params["translation"])[:, None, None]
  # Inverse of p_c = 20.5 + t + s R(a) (p_d - 13.5).
  dx, dy = xs - 20.5 - t[..., 0], ys - 20.5 - t[..., 1]
  src = np.stack([13.5 + (np.cos(a) * dx + np.sin(a) * dy) / s,
                  13.5 + (-np.sin(a) * dx + np.cos(a) * dy) / s], -1)
  grid = stn_jax.pixel_to_normalized(src, (28, 28))
  want = jax.jit(jax.vmap(stn_jax.sample))(
      jnp.asarray(images[..., None] / 255.0, jnp.float32), grid)
  np.testing.assert_allclose(out, want, atol=1e-4)


def test_rotation_direction_and_placement_of_a_point():
  """A blob at digit pixel q lands at c + t + s R(a) (q - 13.5), R(a) turning
  clockwise on screen for a > 0 (y axis down)."""
  cfg = D.default_distortion_config("rts")
  q = np.array([20.0, 13.5])  # right of the centre
  a, s, t = np.pi / 4, 1.1, np.array([3.0, -2.0])
  params = {"angle": jnp.array([a]), "scale": jnp.array([s]),
            "translation": jnp.array([t], jnp.float32)}
  out = D.render("rts", _blob(*q)[None], params, cfg)[0]
  rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
  want = 20.5 + t + s * rot @ (q - 13.5)
  np.testing.assert_allclose(_centroid(out), want, atol=0.05)
  assert want[1] > 20.5 + t[1]  # clockwise: the right-hand point went down


def test_r_rotates_about_the_centre():
  cfg = D.default_distortion_config("r")
  params = {"angle": jnp.array([np.pi / 2])}
  out = D.render("r", _blob(20.0, 13.5)[None], params, cfg)[0]
  np.testing.assert_allclose(_centroid(out), [13.5, 20.0], atol=0.05)


def test_rts_digit_stays_on_the_canvas():
  """A white disk filling the frame's inscribed circle never leaves the canvas
  (any angle), even at the largest scale and shift; the whole unrotated frame
  fits; mass scales with s^2."""
  cfg = D.default_distortion_config("rts")
  ys, xs = np.mgrid[0:28, 0:28]
  # Pixel centres within 12.9 px: with the bilinear kernel's 1 px reach the
  # disk's ink stays inside the frame's inscribed circle (radius 14).
  disk = (((xs - 13.5) ** 2 + (ys - 13.5) ** 2) <= 12.9 ** 2).astype(np.uint8)
  square = np.ones((28, 28), np.uint8)
  n = 64
  params = dict(D.sample_params("rts", jax.random.key(4), n, cfg))
  # Push half of the examples to the extremes: largest scale, corner shift.
  scale = np.asarray(params["scale"]).copy()
  shift = np.asarray(params["translation"]).copy()
  scale[: n // 2] = 1.2
  shift[: n // 2] = np.where(shift[: n // 2] >= 0, 1.0, -1.0) * (21 - 14 * 1.2)
  params["scale"] = jnp.asarray(scale)
  params["translation"] = jnp.asarray(shift)
  out = np.asarray(D.render("rts", np.repeat(disk[None] * 255, n, 0), params,
                            cfg))[..., 0]
  np.testing.assert_allclose(out.sum((1, 2)), disk.sum() * scale ** 2,
                             rtol=0.03)
  # Exact check: on a 60x60 canvas (same pixel phase, centre 9 px further)
  # the same warp puts no ink outside the central 42x42, which equals `out`.
  big = np.asarray(D.render("rts", np.repeat(disk[None] * 255, n, 0), params,
                            _cfg("rts", canvas_size=60)))[..., 0]
  np.testing.assert_allclose(big[:, 9:51, 9:51], out, atol=1e-4)
  outside = big.copy()
  outside[:, 9:51, 9:51] = 0
  assert outside.max() < 1e-5
  # Unrotated full frame at the extreme shifts: on the 60x60 canvas nothing
  # lies beyond the central 42x42 but the bilinear fringe (the kernel reaches
  # 0.5 px past the frame's edge, at under half intensity).
  params["angle"] = jnp.zeros(n)
  sq = np.asarray(D.render("rts", np.repeat(square[None] * 255, n, 0), params,
                           _cfg("rts", canvas_size=60)))[..., 0]
  fringe = sq.copy()
  fringe[:, 9:51, 9:51] = 0
  assert fringe.max() < 0.5
  fringe[:, 8:52, 8:52] = 0
  assert fringe.max() == 0.0
  inside = sq[:, 9:51, 9:51]
  assert inside.max() == pytest.approx(1.0, abs=1e-5)


# -------------------------------------------------------------------- P, E


def test_p_and_e_displacement_scales():
  p = jax.tree.map(np.asarray, D.sample_params(
      "p", jax.random.key(5), 3000, D.default_distortion_config("p")))
  assert p["corner_offsets"].shape == (3000, 4, 2)
  assert abs(p["corner_offsets"].std() - 5.0) < 0.1
  assert abs(p["corner_offsets"].mean()) < 0.1
  assert stats.kstest(p["scale"], stats.uniform(0.75, 0.25).cdf).pvalue > 1e-3
  e = jax.tree.map(np.asarray, D.sample_params(
      "e", jax.random.key(6), 3000, D.default_distortion_config("e")))
  assert e["control_offsets"].shape == (3000, 16, 2)
  assert abs(e["control_offsets"].std() - 1.5) < 0.03
  assert abs(e["control_offsets"].mean()) < 0.03
  assert stats.kstest(e["scale"], stats.uniform(0.75, 0.25).cdf).pvalue > 1e-3
  # Independent moves: no correlation between x and y or between points.
  flat = e["control_offsets"].reshape(3000, -1)
  corr = np.corrcoef(flat.T) - np.eye(32)
  assert np.abs(corr).max() < 0.1


@pytest.mark.parametrize("name", ["p", "e"])
def test_p_and_e_without_moves_are_a_plain_scaling(name):
  cfg = D.default_distortion_config(name)
  images = _digits(2)
  key = "corner_offsets" if name == "p" else "control_offsets"
  k = 4 if name == "p" else 16
  scale = jnp.array([0.8, 0.95])
  params = {"scale": scale, key: jnp.zeros((2, k, 2))}
  out = D.render(name, images, params, cfg)
  want = D.render("rts", images, {"angle": jnp.zeros(2), "scale": scale,
                                  "translation": jnp.zeros((2, 2))},
                  _cfg("rts", canvas_size=28, max_scale=1.0))
  np.testing.assert_allclose(out, want, atol=2e-4)


def test_p_maps_the_frame_onto_the_moved_corners():
  """corners_moved_in="output": a white frame becomes the quadrilateral
  through the moved, scaled corners: its mass equals that quadrilateral's
  area (shoelace)."""
  cfg = D.default_distortion_config("p")
  cfg.corners_moved_in = "output"
  offsets = np.array([[[2.0, -1.0], [-1.5, 2.5], [1.0, 1.0], [-2.0, -2.0]],
                      [[0.5, 1.5], [2.0, 0.0], [-2.5, 1.0], [1.0, -0.5]]],
                     np.float32)
  scale = np.array([0.8, 0.9], np.float32)
  out = np.asarray(D.render("p", np.full((2, 28, 28), 255, np.uint8),
                            {"scale": scale, "corner_offsets": offsets}, cfg))
  corners = np.array([[-0.5, -0.5], [27.5, -0.5], [27.5, 27.5], [-0.5, 27.5]])
  for i in range(2):
    quad = 13.5 + scale[i] * (corners - 13.5) + offsets[i]
    x, y = quad[:, 0], quad[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    np.testing.assert_allclose(out[i].sum(), area, rtol=0.02)


def _dlt_homography(src, dst):
  """Reference 3x3 homography src -> dst by the SVD of the DLT system."""
  rows = []
  for (x, y), (u, v) in zip(src, dst):
    rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
    rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
  h = np.linalg.svd(np.asarray(rows, np.float64))[2][-1].reshape(3, 3)
  return h / h[2, 2]


@pytest.mark.parametrize("canvas", [28, 36])
def test_p_input_convention_samples_the_moved_grid_corners(canvas):
  """corners_moved_in="input": in pixels, canvas corner c samples the digit
  at centre + (c - canvas centre) / scale + offset; a reference homography
  through those 4 pixel pairs gives the grid at every pixel centre."""
  offsets = np.array([[2.0, -1.0], [-4.5, 2.5], [1.0, 6.0], [-3.0, -2.0]])
  scale = 0.8
  h = D.projective_homography(jnp.float32(scale),
                              jnp.asarray(offsets, jnp.float32),
                              canvas_size=canvas, corners_moved_in="input")
  grid = np.asarray(stn_jax.projective_grid(h, (canvas, canvas)))
  c_out = (canvas - 1) / 2.0
  out_corners = np.array([[-0.5, -0.5], [canvas - 0.5, -0.5],
                          [canvas - 0.5, canvas - 0.5], [-0.5, canvas - 0.5]])
  in_points = 13.5 + (out_corners - c_out) / scale + offsets
  ref = _dlt_homography(out_corners, in_points)
  ys, xs = np.mgrid[0:canvas, 0:canvas].astype(np.float64)
  pts = ref @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
  want_px = (pts[:2] / pts[2]).T.reshape(canvas, canvas, 2)
  np.testing.assert_allclose((grid + 1.0) * 14.0 - 0.5, want_px, atol=2e-3)


def test_p_input_convention_keeps_the_digits():
  """The reason for the "input" default (docs/reproduction.md, reading 11):
  at the paper's N(0, 5 px) the "output" convention squashes about a tenth
  of the digits to under half their ink, the "input" one almost none."""
  images = _digits(1000)
  ink = images.astype(np.float32).sum((1, 2)) / 255.0
  lost = {}
  for conv in ("input", "output"):
    cfg = D.default_distortion_config("p")
    cfg.corners_moved_in = conv
    params = D.sample_params("p", jax.random.key(3), 1000, cfg)
    out = np.asarray(D.render("p", images, params, cfg))
    kept = out.sum((1, 2, 3)) / ink / np.asarray(params["scale"]) ** 2
    lost[conv] = (kept < 0.5).mean()
  assert lost["input"] < 0.02
  assert lost["output"] > 0.05


def test_e_output_convention_moves_lattice_points_by_their_offsets():
  """points_moved_in="output": the E grid sends each moved (scaled) lattice
  point exactly back onto its lattice point in the digit."""
  lattice_px = (stn_jax.tps_source_points(16) + 1.0) * 14.0 - 0.5
  offsets = np.random.default_rng(0).normal(0, 1.5, (16, 2)).astype(np.float32)
  scale = 0.9
  grid = np.asarray(D.elastic_grid(jnp.float32(scale), jnp.asarray(offsets),
                                   canvas_size=28, points_moved_in="output"))
  grid_px = (grid + 1.0) * 14.0 - 0.5
  for k in (5, 6, 9, 10):  # inner points: their moved positions are on canvas
    moved = 13.5 + scale * (lattice_px[k] - 13.5) + offsets[k]
    at = [ndimage.map_coordinates(grid_px[..., c], [[moved[1]], [moved[0]]],
                                  order=3)[0] for c in range(2)]
    np.testing.assert_allclose(at, lattice_px[k], atol=0.05)


@pytest.mark.parametrize("canvas", [28, 36])
def test_e_input_convention_matches_a_scipy_thin_plate_spline(canvas):
  """points_moved_in="input": the canvas lattice point u samples the digit at
  centre + (u - canvas centre) / scale + offset (pixels), and every other
  pixel follows the thin-plate spline through those pairs (SciPy's
  `RBFInterpolator`, an independent TPS; the spline does not depend on the
  coordinates' units)."""
  k = 16
  offsets = np.random.default_rng(1).normal(0, 1.5, (k, 2))
  scale = 0.85
  grid = np.asarray(D.elastic_grid(jnp.float32(scale),
                                   jnp.asarray(offsets, jnp.float32),
                                   canvas_size=canvas, points_moved_in="input"))
  c_out = (canvas - 1) / 2.0
  lattice_out = (stn_jax.tps_source_points(k) + 1.0) * canvas / 2.0 - 0.5
  sampled = 13.5 + (lattice_out - c_out) / scale + offsets
  tps = interpolate.RBFInterpolator(lattice_out, sampled,
                                    kernel="thin_plate_spline", degree=1)
  ys, xs = np.mgrid[0:canvas, 0:canvas].astype(np.float64)
  want_px = tps(np.stack([xs.ravel(), ys.ravel()], -1)).reshape(
      canvas, canvas, 2)
  np.testing.assert_allclose((grid + 1.0) * 14.0 - 0.5, want_px, atol=2e-3)


@pytest.mark.parametrize("conv", ["input", "output"])
def test_e_renders_in_the_direction_of_the_moves(conv):
  """Equal moves of every lattice point shift the whole digit: by the move
  (canvas pixels) when the digit's lattice moves on the canvas ("output"),
  against it, scaled, when the sampling points move in the digit ("input")."""
  cfg = D.default_distortion_config("e")
  cfg.points_moved_in = conv
  q, scale, move = np.array([9.0, 17.0]), 0.8, np.array([2.0, -1.5])
  out = D.render("e", _blob(*q)[None],
                 {"scale": jnp.array([scale]),
                  "control_offsets": jnp.asarray(
                      np.tile(move, (1, 16, 1)), jnp.float32)}, cfg)[0]
  shift = move if conv == "output" else -scale * move
  np.testing.assert_allclose(_centroid(out), 13.5 + scale * (q - 13.5) + shift,
                             atol=0.05)


def test_e_conventions_move_the_grid_by_about_the_noise():
  """Both E readings keep nearly every digit and move the sampling grid by
  about the noise's size (1.5 px): "input" moves in digit pixels, "output"
  in canvas pixels (1/scale more in the digit). (They are still different
  tasks: docs/reproduction.md, reading 11.)"""
  images = _digits(500)
  moved = {}
  for conv in ("input", "output"):
    cfg = D.default_distortion_config("e")
    cfg.points_moved_in = conv
    params = D.sample_params("e", jax.random.key(3), 500, cfg)
    grid = functools.partial(D.elastic_grid, canvas_size=28,
                             points_moved_in=conv)
    g = jax.vmap(grid)(params["scale"], params["control_offsets"])
    g0 = jax.vmap(grid)(params["scale"],
                        jnp.zeros_like(params["control_offsets"]))
    moved[conv] = float(np.linalg.norm(np.asarray(g - g0), axis=-1).mean()
                        ) * 14.0
    out = np.asarray(D.render("e", images, params, cfg))
    ink = images.astype(np.float32).sum((1, 2)) / 255.0
    kept = out.sum((1, 2, 3)) / ink / np.asarray(params["scale"]) ** 2
    assert (kept < 0.5).mean() < 0.01, conv
  assert 1.2 < moved["input"] < 1.7
  assert 1.5 < moved["output"] < 2.1


# ------------------------------------------------------------------------ TC


def test_tc_matches_a_numpy_paste_with_max():
  cfg = D.default_distortion_config("tc")
  images, source = _digits(3, seed=1), _digits(10, seed=2)
  params = jax.tree.map(np.asarray, D.sample_params(
      "tc", jax.random.key(7), 3, cfg, num_clutter_sources=10))
  out = np.asarray(D.render("tc", images, params, cfg,
                            clutter_source=source))[..., 0]
  for i in range(3):
    want = np.zeros((60, 60), np.float32)
    ox, oy = params["digit_offset"][i]
    want[oy:oy + 28, ox:ox + 28] = images[i].astype(np.float32) / 255
    for j, (sx, sy), (dx, dy) in zip(params["clutter_index"][i],
                                     params["clutter_src"][i],
                                     params["clutter_dst"][i]):
      patch = source[j, sy:sy + 6, sx:sx + 6].astype(np.float32) / 255
      want[dy:dy + 6, dx:dx + 6] = np.maximum(want[dy:dy + 6, dx:dx + 6], patch)
    # Integer offsets: the copies are exact (XLA's /255 may round 1 ulp apart).
    np.testing.assert_allclose(out[i], want, rtol=2e-7, atol=0)


def test_tc_digit_fully_on_canvas_and_clutter_present():
  cfg = D.default_distortion_config("tc")
  n = 2000
  params = jax.tree.map(np.asarray, D.sample_params(
      "tc", jax.random.key(8), n, cfg, num_clutter_sources=50))
  off = params["digit_offset"]
  assert off.min() == 0 and off.max() == 60 - 28  # whole range, on canvas
  assert params["clutter_dst"].min() == 0 and params["clutter_dst"].max() == 54
  assert params["clutter_src"].max() == 22
  assert params["clutter_index"].min() == 0
  assert params["clutter_index"].max() == 49
  # A white digit keeps all its mass; white clutter adds 6x6 squares.
  ones = np.full((4, 28, 28), 255, np.uint8)
  fn = D.make_distort_fn("tc", cfg)
  digit_only = fn(jax.random.key(9), ones, jnp.zeros((4, 28, 28), jnp.uint8))
  np.testing.assert_allclose(digit_only.sum((1, 2, 3)), 784.0, rtol=1e-5)
  clutter_only = np.asarray(fn(jax.random.key(9), np.zeros_like(ones),
                               jnp.asarray(ones)))
  mass = clutter_only.sum((1, 2, 3))
  assert np.all(mass >= 36 - 1e-3) and np.all(mass <= 6 * 36 + 1e-3)
  assert np.all(np.isclose(clutter_only, 0, atol=1e-5)
                | np.isclose(clutter_only, 1, atol=1e-5))


# ----------------------------------------------------------------- test sets


def test_tc_test_set_cuts_clutter_from_its_own_images():
  cfg = D.default_distortion_config("tc")
  images, labels = _digits(4, seed=3), np.arange(4)
  x, y = P.make_test_set("tc", cfg, images, labels, seed=11)
  assert x.shape == (4, 60, 60, 1) and x.dtype == np.float32
  assert y.dtype == np.int32 and np.array_equal(y, labels)
  direct = D.make_distort_fn("tc", cfg)(jax.random.key(11), images, images)
  np.testing.assert_allclose(x, direct, atol=1e-5)


def test_make_test_set_fixed_chunk_independent_and_cached(tmp_path,
                                                          monkeypatch):
  cfg = D.default_distortion_config("r")
  images, labels = _digits(5, seed=3), np.arange(5) % 10
  x, y = P.make_test_set("r", cfg, images, labels, seed=11)
  assert x.shape == (5, 28, 28, 1) and x.dtype == np.float32
  assert y.dtype == np.int32 and np.array_equal(y, labels)
  # Example i is the batched function's example i on key(seed).
  direct = D.make_distort_fn("r", cfg)(jax.random.key(11), images)
  np.testing.assert_allclose(x, direct, atol=1e-5)
  monkeypatch.setattr(P, "_TEST_SET_CHUNK", 2)
  x2, _ = P.make_test_set("r", cfg, images, labels, seed=11)
  np.testing.assert_allclose(x2, x, atol=1e-5)
  other, _ = P.make_test_set("r", cfg, images, labels, seed=12)
  assert np.abs(other - x).max() > 0.1
  # Cache: written once, then read back without recomputing.
  xc, _ = P.make_test_set("r", cfg, images, labels, seed=11,
                          cache_dir=str(tmp_path))
  assert len(list(tmp_path.glob("r_seed11_*.npz"))) == 1
  np.testing.assert_allclose(xc, x, atol=1e-5)
  monkeypatch.setattr(P, "_distort_all",
                      lambda *a, **k: pytest.fail("cache not used"))
  xr, yr = P.make_test_set("r", cfg, images, labels, seed=11,
                           cache_dir=str(tmp_path))
  np.testing.assert_array_equal(xr, xc)
  np.testing.assert_array_equal(yr, labels)
  # A different config, or other images, is a different cache entry.
  with pytest.raises(pytest.fail.Exception, match="cache not used"):
    P.make_test_set("r", _cfg("r", max_rotation_deg=45.0), images, labels,
                    seed=11, cache_dir=str(tmp_path))
  with pytest.raises(pytest.fail.Exception, match="cache not used"):
    P.make_test_set("r", cfg, images[::-1], labels, seed=11,
                    cache_dir=str(tmp_path))


# ---------------------------------------------------------------- bad input


def test_bad_names_and_configs_raise():
  with pytest.raises(ValueError, match=r"`name` must be one of .*'rts'"):
    D.get_distortion("rotate")
  with pytest.raises(ValueError, match="`name`"):
    D.default_distortion_config("x")
  bad = {
      "r": [dict(max_rotation_deg=-1.0), dict(max_rotation_deg="90"),
            dict(canvas_size=27), dict(canvas_size=28.0)],
      "rts": [dict(min_scale=1.3), dict(canvas_size=30),
              dict(min_scale=0.0)],
      "p": [dict(corner_std_px=-0.1), dict(max_scale=float("nan")),
            dict(corners_moved_in="canvas"), dict(corners_moved_in=1)],
      "e": [dict(tps_grid_size=1), dict(control_std_px=-1.0),
            dict(points_moved_in="canvas"), dict(points_moved_in=None)],
      "tc": [dict(clutter_size=29), dict(num_clutter=-1),
             dict(num_clutter=True)],
  }
  for name, cases in bad.items():
    for overrides in cases:
      cfg = dict(D.default_distortion_config(name))
      cfg.update(overrides)
      with pytest.raises(ValueError, match="cfg"):
        D.make_distort_fn(name, cfg)
  missing = ml_collections.ConfigDict({"canvas_size": 28})
  with pytest.raises(ValueError, match="max_rotation_deg"):
    D.make_distort_fn("r", missing)


def test_bad_images_raise():
  fn = D.make_distort_fn("r", D.default_distortion_config("r"))
  with pytest.raises(ValueError, match=r"`images` must have shape"):
    fn(jax.random.key(0), np.zeros((2, 28, 28, 1), np.uint8))
  with pytest.raises(ValueError, match="uint8"):
    fn(jax.random.key(0), np.zeros((2, 28, 28), np.int32))
  tc = D.make_distort_fn("tc", D.default_distortion_config("tc"))
  with pytest.raises(ValueError, match="clutter_source"):
    tc(jax.random.key(0), np.zeros((2, 28, 28), np.uint8))
  with pytest.raises(ValueError, match="labels"):
    P.make_test_set("r", D.default_distortion_config("r"),
                    np.zeros((3, 28, 28), np.uint8), np.zeros(4), seed=0)
