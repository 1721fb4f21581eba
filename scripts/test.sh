#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (what CI runs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
# Real MNIST for the tests that need it: the shared IDX files beside the repo.
if [ -z "${STN_JAX_MNIST_DIR:-}" ] && [ -d ../shared/data/mnist ]; then
  export STN_JAX_MNIST_DIR=$(cd ../shared/data/mnist && pwd)
fi
exec .venv/bin/python -m pytest -q "$@"
