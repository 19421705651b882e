#!/usr/bin/env bash
# The whole test suite: lint, unit and integration tests, bridge fuzzing, and the end-to-end tests in real
# GIMP 3.0 and 3.2, each with and without pyzmq (Debian chroots built once and cached in
# /var/cache/neural-collage; needs root).
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
# the GIMP chroots of the end-to-end tests, each built once and cached in /var/cache/neural-collage (GIMP
# 3.0.4 on Debian 13 and 3.2.6 on Debian forky, each without and with python3-zmq); the tests build a missing
# one themselves too, this only does it up front and in the open
# (a host with gimp-console-3.N on PATH tests that version there instead)
if [ "$(id -u)" -eq 0 ] && [ "${NC_E2E_GIMP:-auto}" != "host" ]; then
    for target in "3.0" "3.0 zmq" "3.2" "3.2 zmq"; do
        if [ "${NC_E2E_GIMP:-auto}" = "auto" ] && command -v "gimp-console-${target%% *}" >/dev/null; then
            continue
        fi
        log="$(mktemp)"
        # shellcheck disable=SC2086
        if ! sh tests/e2e/make_gimp_root.sh $target >"$log" 2>&1; then
            tail -n 40 "$log"; rm -f "$log"; exit 1
        fi
        tail -n 1 "$log"; rm -f "$log"
    done
fi
.venv/bin/python -m engine.train.data >/dev/null
.venv/bin/ruff check .
.venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
