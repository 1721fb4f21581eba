r"""The learning rate of RTS ST-FCN TPS at the `quick` protocol: 3 values x 3 seeds.

    python -m experiments.sweep --sweep=configs/sweeps/lr_rts_st_fcn_tps_quick.py \
        --workdir_root=workdirs/sweeps/lr_rts_st_fcn_tps_quick \
        --results_dir=results/sweeps/lr_rts_st_fcn_tps_quick/runs
    python -m experiments.sweep_report \
        --workdir_root=workdirs/sweeps/lr_rts_st_fcn_tps_quick \
        --out_dir=results/sweeps/lr_rts_st_fcn_tps_quick

A sweep file for `experiments.sweep --sweep=<this file>`: `CONFIG` is the
base config (`configs/distorted_mnist.py:<arg>`), `SEEDS` the seeds 0..N-1 of
every setting, and `get_hyper(h)` returns the settings (dicts of config
key -> value) built with the helpers of `experiments/sweep_grid.py`, passed
in as `h`: `h.sweep(key, values)`, `h.product(lists)`, `h.zip(lists)`.
The quick protocol's learning rate is 1e-3 (Adam, cosine schedule); the
sweep brackets it by half a decade each way. The ST-FCN's three seeds of a
setting train as one vmapped process (minutes per setting on 2 CPU cores);
the same sweep of the ST-CNN is `lr_rts_st_cnn_tps_quick.py`.
"""

CONFIG = "configs/distorted_mnist.py:rts,st_fcn,tps,quick"
SEEDS = 3


def get_hyper(h):
  return h.product([
      h.sweep("train.learning_rate", [3e-4, 1e-3, 3e-3]),
  ])
