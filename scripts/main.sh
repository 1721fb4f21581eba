#!/usr/bin/env bash
# Sets everything up and runs the main job: ST-CNN (affine) on RTS-distorted
# MNIST at the CPU-budget `quick` protocol. Extra arguments are passed on
# (e.g. --config.seed=1). Results land in $WORKDIR (default
# workdirs/rts_st_cnn_affine_quick): results.json, transforms.png,
# metrics.jsonl, TensorBoard events and checkpoints (a re-run resumes an
# interrupted run; a finished one says so and leaves its records alone).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh train
source scripts/mnist_env.sh
workdir=${WORKDIR:-workdirs/rts_st_cnn_affine_quick}
.venv/bin/python -m stn_jax.main \
  --config=configs/distorted_mnist.py:rts,st_cnn,affine,quick \
  --workdir="$workdir" "$@"
echo "results: $workdir/results.json   picture: $workdir/transforms.png"
