#!/usr/bin/env bash
# The main job on a fresh machine: set up the engine and run the demo on the default model
# (a label swap and a feature blend on photos shipped in engine/data/demo), writing before/after
# images to demo_out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/neural-collage demo --out "${1:-demo_out}"
