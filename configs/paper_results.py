"""The paper's distorted-MNIST numbers (percent test error), for comparison.

From Jaderberg et al. 2015, Table 1 (R, RTS, P, E) and the text (TC); copied
from `../shared/paper-notes.md`. Keys: (distortion, model, transform), with
transform None for FCN and CNN and for the TC ST models (the paper gives one
ST-FCN and one ST-CNN number for TC; reproductions use affine there).
"""

TABLE1_DISTORTIONS = ("r", "rts", "p", "e")
TABLE1_TRANSFORMS = ("affine", "projective", "tps")

# model row -> errors for (R, RTS, P, E).
_TABLE1_ROWS = {
    ("fcn", None): (2.1, 5.2, 3.1, 3.2),
    ("cnn", None): (1.2, 0.8, 1.5, 1.4),
    ("st_fcn", "affine"): (1.2, 0.8, 1.5, 2.7),
    ("st_fcn", "projective"): (1.3, 0.9, 1.4, 2.6),
    ("st_fcn", "tps"): (1.1, 0.8, 1.4, 2.4),
    ("st_cnn", "affine"): (0.7, 0.5, 0.8, 1.2),
    ("st_cnn", "projective"): (0.8, 0.6, 0.8, 1.3),
    ("st_cnn", "tps"): (0.7, 0.5, 0.8, 1.1),
}

PAPER_ERRORS = {
    (dist, model, transform): errors[i]
    for (model, transform), errors in _TABLE1_ROWS.items()
    for i, dist in enumerate(TABLE1_DISTORTIONS)
}
# Translated + cluttered MNIST, from the text; ST models use affine here.
PAPER_ERRORS.update({
    ("tc", "fcn", None): 13.2,
    ("tc", "cnn", None): 3.5,
    ("tc", "st_fcn", "affine"): 2.0,
    ("tc", "st_cnn", "affine"): 1.7,
})


def table1_cells():
  """All 36 cells, in table order: [(distortion, model, transform)]."""
  cells = []
  for dist in TABLE1_DISTORTIONS + ("tc",):
    for (model, transform) in _TABLE1_ROWS:
      if (dist, model, transform) in PAPER_ERRORS:
        cells.append((dist, model, transform))
  return cells
