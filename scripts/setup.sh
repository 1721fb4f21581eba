#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project with its test extra.
# Idempotent: re-installs only when pyproject.toml or the install mode changed.
# Source or run it.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
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
stamp=.venv/.stn_jax_installed
# The stamp names the mode too: venvs installed in another mode reinstall.
want="$(sha256sum pyproject.toml | cut -d' ' -f1) editable_mode=$mode"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  # torch is pinned in the test extra to 2.13.0 (a CPU build); never unpinned.
  .venv/bin/python -m pip install --quiet -e ".[test]" \
    --config-settings editable_mode=$mode
  echo "$want" > "$stamp"
fi
