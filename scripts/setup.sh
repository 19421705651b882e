#!/usr/bin/env bash
# Set up the engine environment in .venv (idempotent): Python >= 3.10, the CPU build of PyTorch
# (torch==2.13.0; on a machine with CUDA, install the torch build you want first, then rerun), the project and
# its test tools.  No model download: the default model ships in engine/weights/default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    .venv/bin/python -m pip install -q "${NC_TORCH_SPEC:-torch==2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/neural-collage models
