#!/bin/sh
# Build (or reuse) a Debian chroot with GIMP 3 for the end-to-end tests.
#
#   tests/e2e/make_gimp_root.sh              # GIMP 3.0.4: Debian 13 (trixie) in /var/cache/neural-collage/gimp3-root
#   tests/e2e/make_gimp_root.sh 3.2          # GIMP 3.2.6: Debian forky in /var/cache/neural-collage/gimp32-root
#   tests/e2e/make_gimp_root.sh 3.2 zmq      # the same plus python3-zmq (gimp32-zmq-root): the pyzmq bridge path
#   NC_GIMP_ROOT=/some/dir tests/e2e/make_gimp_root.sh 3.2
#
# Arguments: GIMP version (3.0 = trixie, 3.2 = forky; default ${NC_GIMP_VERSION:-3.0}) and "zmq" (or
# NC_GIMP_ROOT_ZMQ=1) for python3-zmq in GIMP's Python. Roots without and with python3-zmq are separate
# folders, so tests that share a root never see pyzmq appear or vanish. NC_DEBIAN_SUITE overrides the suite.
# A zmq root is made from a ready plain root of the same version when there is one (a copy plus one apt-get
# install), else from scratch.
#
# Xvfb comes along so the tests can open the plug-in's dialogs (interactive run mode); a ready root without
# it gets it added in place.
#
# Needs root and debootstrap. The root is built in ROOT.tmp and renamed when complete, so a half-built root
# is never mistaken for a good one; ROOT.lock (flock) makes a second builder wait for the first. About a minute (trixie) or two (forky) on a fast mirror; a ready root is
# reused as is. Prints "GIMP root ready: ROOT" at the end.
set -eu

VERSION="${1:-${NC_GIMP_VERSION:-3.0}}"
ZMQ="${NC_GIMP_ROOT_ZMQ:-0}"
if [ "${2:-}" = "zmq" ]; then
    ZMQ=1
fi
CACHE=/var/cache/neural-collage
case "$VERSION" in
    3.0) DEFAULT_SUITE=trixie; BASE="$CACHE/gimp3" ;;
    3.2) DEFAULT_SUITE=forky; BASE="$CACHE/gimp32" ;;
    *) echo "make_gimp_root.sh: unknown GIMP version '$VERSION' (3.0 or 3.2)" >&2; exit 2 ;;
esac
PLAIN_ROOT="$BASE-root"
if [ "$ZMQ" = "1" ]; then
    DEFAULT_ROOT="$BASE-zmq-root"
else
    DEFAULT_ROOT="$PLAIN_ROOT"
fi
ROOT="${NC_GIMP_ROOT:-$DEFAULT_ROOT}"
SUITE="${NC_DEBIAN_SUITE:-$DEFAULT_SUITE}"
MIRROR="${NC_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BINARY="gimp-console-$VERSION"
PACKAGES="gimp gir1.2-gimp-3.0 python3-gi gir1.2-freedesktop xvfb xauth"
if [ "$ZMQ" = "1" ]; then
    PACKAGES="$PACKAGES python3-zmq"
fi

ready() {
    [ -x "$1/usr/bin/$BINARY" ] || return 1
    # gir1.2-freedesktop: without it every Python plug-in fails on the 'cairo' typelib
    ls "$1"/usr/lib/*/girepository-1.0/cairo-1.0.typelib >/dev/null 2>&1 || return 1
    if [ "$ZMQ" = "1" ]; then
        ls -d "$1"/usr/lib/python3/dist-packages/zmq >/dev/null 2>&1 || return 1
    fi
    return 0
}

# apt inside the chroot, with /proc mounted in a private mount namespace (nothing stays mounted)
in_root() {
    r="$1"
    shift
    unshare --mount --propagation private sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' \
        "$r" env DEBIAN_FRONTEND=noninteractive "$@"
}

if [ -d "$ROOT" ] && ready "$ROOT"; then
    if [ ! -x "$ROOT/usr/bin/Xvfb" ] && [ "$(id -u)" = "0" ]; then
        cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
        in_root "$ROOT" apt-get install -y --no-install-recommends xvfb xauth ||
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
# one builder per root: a second run waits for the first, then finds the root ready
exec 9>"$ROOT.lock"
flock 9
if [ -d "$ROOT" ] && ready "$ROOT"; then
    echo "GIMP root ready: $ROOT"
    exit 0
fi
if [ -d "$TMP" ] && [ ! -x "$TMP/usr/bin/apt-get" ]; then
    rm -rf "$TMP"   # a debootstrap (or copy) that died half-way
fi
if [ ! -x "$TMP/usr/bin/apt-get" ]; then
    SAVED_ZMQ="$ZMQ"
    ZMQ=0
    if [ "$SAVED_ZMQ" = "1" ] && [ "$ROOT" != "$PLAIN_ROOT" ] && [ -d "$PLAIN_ROOT" ] && ready "$PLAIN_ROOT"; then
        echo "make_gimp_root.sh: copying $PLAIN_ROOT to $TMP"
        cp -a "$PLAIN_ROOT" "$TMP.copy"
        find "$TMP.copy/tmp" -mindepth 1 -delete   # the tests' scratch folders of the plain root
        mv "$TMP.copy" "$TMP"
    else
        # bookworm's debootstrap has no script for forky (testing): the sid script bootstraps it
        SCRIPT=""
        if [ ! -e "/usr/share/debootstrap/scripts/$SUITE" ] && [ -e /usr/share/debootstrap/scripts/sid ]; then
            SCRIPT=/usr/share/debootstrap/scripts/sid
        fi
        # shellcheck disable=SC2086
        debootstrap --variant=minbase "$SUITE" "$TMP" "$MIRROR" $SCRIPT
    fi
    ZMQ="$SAVED_ZMQ"
fi
# the archive snapshot served here can carry an expired Release date (seen for forky)
echo 'Acquire::Check-Valid-Until "false";' > "$TMP/etc/apt/apt.conf.d/99no-valid-until"
cp /etc/resolv.conf "$TMP/etc/resolv.conf" 2>/dev/null || true
in_root "$TMP" apt-get update
# shellcheck disable=SC2086
in_root "$TMP" apt-get install -y --no-install-recommends $PACKAGES
in_root "$TMP" apt-get clean
if ! ready "$TMP"; then
    echo "make_gimp_root.sh: GIMP $VERSION did not install correctly in $TMP" >&2
    exit 1
fi
if [ -d "$ROOT" ]; then
    rm -rf "$ROOT"
fi
mv "$TMP" "$ROOT"
echo "GIMP root ready: $ROOT"
