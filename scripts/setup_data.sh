#!/bin/sh
# Fetch the Debian packages the texture dataset (engine/train/data.py) is built from,
# then assemble .cache/textures/. Debian 12 (bookworm) / 13; run as root (or via sudo).
# ufoai-textures: ~336 MB download (~330 MB installed); extremetuxracer-data: ~41 MB.
set -e
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends \
    ufoai-textures extremetuxracer-data
# Python deps (already present in the project env): numpy pillow opencv-python-headless torch
# python3 -m pip install numpy pillow opencv-python-headless
cd "$(dirname "$0")/.."
python3 -m engine.train.data "$@"
