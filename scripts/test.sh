#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (what CI runs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh test
source scripts/mnist_env.sh
# Three workers on the CI machine's two cores: a third keeps both busy while
# a worker waits on a test's subprocess (measured: 836 s against 907 s with
# two). worksteal evens out the few minute-long tests; `-n 0` runs in one
# process.
exec .venv/bin/python -m pytest -q -n 3 --dist worksteal --durations=15 "$@"
