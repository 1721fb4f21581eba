#!/usr/bin/env bash
# Sets everything up and runs the main job: the transform demo picture.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup.sh
.venv/bin/python -m experiments.warp_demo --out docs/warp_demo.png
