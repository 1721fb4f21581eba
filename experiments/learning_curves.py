r"""Learning curves: test error against training examples seen.

    python -m experiments.learning_curves --runs_dir results/ablations \
        --out results/ablation_curves.png

Reads the run records (`results.json` copies) in `--runs_dir` that carry
`eval_curve` (the test error at every evaluation, recorded since
2026-11-30) and draws one line per record: test error (%, log scale)
against examples seen (step x batch size), labelled by the record's file
name; the paper's number of each cell is a dashed line. Records without a
curve are listed on the figure as such, not dropped silently.
"""

import argparse
import os
import sys

from configs import paper_results
from experiments import report


def curves(runs_dir: str, pattern: str = "") -> tuple:
  """`([(label, cell, [examples], [errors])], [labels without a curve])`."""
  with_curve, without = [], []
  for record in report.load_runs(runs_dir):
    label = record["_file"][:-len(".json")]
    if pattern and pattern not in label:
      continue
    curve = record.get("eval_curve")
    if not curve:
      without.append(label)
      continue
    batch = report._train_field(record, "batch_size")  # pylint: disable=protected-access
    cell = (record["distortion"], record["model"], record.get("transform"))
    with_curve.append((label, cell, [s * batch for s, _ in curve],
                       [e for _, e in curve]))
  return with_curve, without


def plot(with_curve, without, path: str, title: str) -> None:
  """Writes the figure (see the module docstring) to `path`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import matplotlib.ticker  # pylint: disable=g-import-not-at-top,unused-import

  fig, ax = plt.subplots(figsize=(8, 5))
  colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
  papers = {}
  for i, (label, cell, x, y) in enumerate(with_curve):
    ax.plot(x, y, marker=".", color=colors[i % len(colors)], label=label)
    if cell in paper_results.PAPER_ERRORS:
      papers[cell] = paper_results.PAPER_ERRORS[cell]
  for cell, value in papers.items():
    ax.axhline(value, linestyle="--", color="gray", linewidth=0.8)
    ax.text(ax.get_xlim()[1], value, f" paper {'-'.join(c for c in cell if c)}"
            f" {value}", fontsize=7, va="center", color="gray")
  ax.set_yscale("log")
  # Plain numbers (1, 2, 3 %), not powers of ten.
  ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
  ax.set_xlabel("training examples seen")
  ax.set_ylabel("test error (%)")
  ax.set_title(title, fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  if with_curve:
    ax.legend(fontsize=7)
  if without:
    fig.text(0.01, 0.01, "no curve recorded: " + ", ".join(without),
             fontsize=6, color="red", wrap=True)
  fig.tight_layout(rect=(0, 0.04 if without else 0, 1, 1))
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--runs_dir", default="results/ablations",
                      help="folder of run records (*.json)")
  parser.add_argument("--match", default="",
                      help="only records whose file name contains this")
  parser.add_argument("--out", default="results/ablation_curves.png",
                      help="PNG file to write")
  parser.add_argument("--title", default="Test error during training "
                      "(paper protocol; dashed: the paper's final number)",
                      help="figure title")
  args = parser.parse_args(argv)
  with_curve, without = curves(args.runs_dir, args.match)
  if not with_curve and not without:
    parser.error(f"no run records in {args.runs_dir!r}"
                 + (f" matching {args.match!r}" if args.match else ""))
  plot(with_curve, without, args.out, args.title)
  print(f"{len(with_curve)} curves ({len(without)} records without one) -> "
        f"{args.out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
