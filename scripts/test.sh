#!/usr/bin/env bash
# The whole test suite: lint, unit and integration tests, bridge fuzzing, and the end-to-end tests in a real
# GIMP 3 (a Debian 13 chroot with GIMP 3 is built once and cached in /var/cache/neural-collage; needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
# system tools the tests need: debootstrap (GIMP 3 chroot), the texture packages (dataset tests)
if ! command -v debootstrap >/dev/null || ! dpkg -s ufoai-textures extremetuxracer-data >/dev/null 2>&1; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        debootstrap ufoai-textures extremetuxracer-data >/dev/null
fi
.venv/bin/python -m engine.train.data >/dev/null
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
