#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project with one extra:
#   bash scripts/setup.sh train   the paper's models, data and training
#                                 (flax, optax, orbax, TFDS, ...): main.sh
#   bash scripts/setup.sh test    train + pytest, scipy and the CPU torch
#                                 the parity tests compare with: test.sh, CI
#                                 (the default)
# The library alone needs only jax and numpy (`pip install -e .`).
# Idempotent: re-installs only when pyproject.toml, the extra or the install
# mode changed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
extra=${1:-test}
case "$extra" in
  train|test) ;;
  *) echo "scripts/setup.sh: unknown extra '$extra'; expected train or test" >&2
     exit 2 ;;
esac
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
# The editable install's mode: "compat" puts the repository root on sys.path
# (a .pth file), so `import stn_jax` finds the package even from a script in
# the folder holding a clone named `stn_jax`. setuptools' default mode (an
# import hook) loses there to the namespace package that the clone folder
# itself makes, and `stn_jax.affine_grid` is missing.
mode=compat
sha=$(sha256sum pyproject.toml | cut -d' ' -f1)
stamp() { echo ".venv/.stn_jax_installed_$1"; }
want() { echo "$sha editable_mode=$mode extra=$1"; }
if [ ! -f "$(stamp "$extra")" ] || [ "$(cat "$(stamp "$extra")")" != "$(want "$extra")" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch is pinned in the test extra to 2.13.0 (a CPU build); never unpinned.
  .venv/bin/python -m pip install --quiet -e ".[$extra]" \
    --config-settings editable_mode=$mode
  want "$extra" > "$(stamp "$extra")"
  if [ "$extra" = test ]; then  # test includes train.
    want train > "$(stamp train)"
  fi
fi
