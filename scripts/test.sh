#!/usr/bin/env bash
# Sets everything up and runs the whole test suite (what CI runs).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh test
source scripts/mnist_env.sh
# Two workers, one per core of the CI machine; worksteal evens out the few
# minute-long tests. (`-n 0` runs in one process.)
exec .venv/bin/python -m pytest -q -n 2 --dist worksteal --durations=15 "$@"
