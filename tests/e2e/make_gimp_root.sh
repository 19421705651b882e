#!/bin/sh
# Build (or reuse) a Debian 13 chroot with GIMP 3 for the end-to-end tests.
#
#   tests/e2e/make_gimp_root.sh            # builds ${NC_GIMP_ROOT:-/var/cache/neural-collage/gimp3-root}
#   NC_GIMP_ROOT=/some/dir tests/e2e/make_gimp_root.sh
#   NC_GIMP_ROOT_ZMQ=1 ...                  # also install python3-zmq (tests the pyzmq bridge path)
#
# Xvfb comes along so the tests can open the plug-in's dialogs (interactive run mode); a ready root without
# it gets it added in place.
#
# Needs root and debootstrap. The root is built in ROOT.tmp and renamed when complete, so a half-built root
# is never mistaken for a good one. Takes about a minute on a fast mirror; a ready root is reused as is.
set -eu

ROOT="${NC_GIMP_ROOT:-/var/cache/neural-collage/gimp3-root}"
MIRROR="${NC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE="${NC_DEBIAN_SUITE:-trixie}"
PACKAGES="gimp gir1.2-gimp-3.0 python3-gi gir1.2-freedesktop xvfb xauth"
if [ "${NC_GIMP_ROOT_ZMQ:-0}" = "1" ]; then
    PACKAGES="$PACKAGES python3-zmq"
fi

ready() {
    [ -x "$1/usr/bin/gimp-console-3.0" ] || return 1
    # gir1.2-freedesktop: without it every Python plug-in fails on the 'cairo' typelib
    ls "$1"/usr/lib/*/girepository-1.0/cairo-1.0.typelib >/dev/null 2>&1
}

if [ -d "$ROOT" ] && ready "$ROOT"; then
    if [ ! -x "$ROOT/usr/bin/Xvfb" ] && [ "$(id -u)" = "0" ]; then
        cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
        chroot "$ROOT" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends xvfb xauth ||
            echo "make_gimp_root.sh: could not add Xvfb (dialog tests will be skipped)" >&2
    fi
    echo "GIMP root ready: $ROOT"
    exit 0
fi

if [ "$(id -u)" != "0" ]; then
    echo "make_gimp_root.sh: building $ROOT needs root (debootstrap, chroot)" >&2
    exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "make_gimp_root.sh: debootstrap is missing (apt-get install debootstrap)" >&2
    exit 2
fi

TMP="$ROOT.tmp"
mkdir -p "$(dirname "$ROOT")"
if [ -d "$TMP" ] && [ ! -x "$TMP/usr/bin/apt-get" ]; then
    rm -rf "$TMP"   # a debootstrap that died half-way
fi
if [ ! -x "$TMP/usr/bin/apt-get" ]; then
    debootstrap --variant=minbase "$SUITE" "$TMP" "$MIRROR"
fi
cp /etc/resolv.conf "$TMP/etc/resolv.conf" 2>/dev/null || true
chroot "$TMP" env DEBIAN_FRONTEND=noninteractive apt-get update
# shellcheck disable=SC2086
chroot "$TMP" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES
chroot "$TMP" apt-get clean
if ! ready "$TMP"; then
    echo "make_gimp_root.sh: GIMP did not install correctly in $TMP" >&2
    exit 1
fi
if [ -d "$ROOT" ]; then
    rm -rf "$ROOT"
fi
mv "$TMP" "$ROOT"
echo "GIMP root ready: $ROOT"
