#!/bin/sh
# Data v2 (engine/train/DATA_CARD.md): download the Debian packages the packed texture set is cut from, extract
# them WITHOUT installing (dpkg-deb -x) into ROOT/<package>/, then build the pack.
#   scripts/setup_data_v2.sh [OUT.pack] [ROOT]
# Defaults: OUT = .cache/textures-v2/textures-v2.pack, ROOT = /var/cache/neural-collage/pkgs.
# Debian 12 (bookworm) or 13; needs apt-get and dpkg-deb (root only for `apt-get update`).
# Downloads ~4.9 GB (0ad-data 1.4 GB, flightgear-data-base 1.3 GB, redeclipse-data 0.9 GB, supertuxkart-data
# 0.6 GB, ufoai-textures 0.3 GB, nexuiz-data 0.3 GB, megaglest-data 0.2 GB, extremetuxracer-data 41 MB) and
# extracts ~7.6 GB; the pack itself is ~32 MiB. Already extracted packages are kept (delete ROOT/<pkg> to redo).
set -e
cd "$(dirname "$0")/.."
OUT=${1:-.cache/textures-v2/textures-v2.pack}
ROOT=${2:-/var/cache/neural-collage/pkgs}
DEBS=${DEBS:-$(dirname "$ROOT")/debs}
PKGS="ufoai-textures extremetuxracer-data 0ad-data supertuxkart-data redeclipse-data megaglest-data \
flightgear-data-base nexuiz-data"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
mkdir -p "$ROOT" "$DEBS"
need=""
for p in $PKGS; do [ -d "$ROOT/$p" ] || need="$need $p"; done
if [ -n "$need" ]; then
    $SUDO apt-get update -qq
    for p in $need; do
        ls "$DEBS/${p}"_*.deb >/dev/null 2>&1 || (cd "$DEBS" && apt-get download "$p")
        deb=$(ls "$DEBS/${p}"_*.deb | tail -n 1)
        echo "extracting $deb -> $ROOT/$p"
        rm -rf "$ROOT/$p.tmp"
        dpkg-deb -x "$deb" "$ROOT/$p.tmp"
        mv "$ROOT/$p.tmp" "$ROOT/$p"
    done
fi
PY=python3; [ -x .venv/bin/python ] && PY=.venv/bin/python
$PY -m engine.train.data pack --out "$OUT" --root "$ROOT"
