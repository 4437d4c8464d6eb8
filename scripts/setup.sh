#!/usr/bin/env bash
# Set up a virtual environment in .venv: torch 2.13.0 first (the CPU build this machine keeps
# on disk; a plain `pip install torch` would pull several GB of CUDA packages), then the project
# with its test and forecast extras. pip keeps the installed torch because it satisfies the
# lower bound.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --disable-pip-version-check "torch==2.13.0"
python -m pip install -q --disable-pip-version-check -e ".[dev,forecast]"
