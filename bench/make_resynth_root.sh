#!/bin/sh
# Build (or reuse) the GIMP 3.2 root with Resynthesizer for bench/photo_edit.py's anchor (issue 17).
#
#   sh bench/make_resynth_root.sh                 # /var/cache/neural-collage/gimp32-resynth-root
#   NC_RESYNTH_ROOT=/some/dir sh bench/make_resynth_root.sh
#
# A copy of the e2e tests' GIMP 3.2.6 root (Debian forky, tests/e2e/make_gimp_root.sh 3.2; built first when
# missing) plus Debian's gimp-plugin-registry, whose forky build carries Resynthesizer for GIMP 3
# (PDB procedure plug-in-resynthesizer). A separate folder: the e2e root itself is never changed, so the
# tests never see a plug-in appear in it. Built in ROOT.tmp and renamed when complete; ROOT.lock (flock)
# makes a second builder wait for the first. Needs root. Prints "Resynthesizer root ready: ROOT".
set -eu

CACHE=/var/cache/neural-collage
BASE="${NC_GIMP_ROOT_32:-$CACHE/gimp32-root}"
ROOT="${NC_RESYNTH_ROOT:-$CACHE/gimp32-resynth-root}"
HERE="$(cd "$(dirname "$0")" && pwd)"

ready() {
    [ -x "$1/usr/bin/gimp-console-3.2" ] || return 1
    ls "$1"/usr/lib/*/gimp/3.0/plug-ins/resynthesizer/resynthesizer >/dev/null 2>&1 || return 1
    return 0
}

in_root() {
    r="$1"
    shift
    unshare --mount --propagation private sh -c 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"' \
        "$r" env DEBIAN_FRONTEND=noninteractive "$@"
}

if [ -d "$ROOT" ] && ready "$ROOT"; then
    echo "Resynthesizer root ready: $ROOT"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "make_resynth_root.sh: building $ROOT needs root (chroot)" >&2
    exit 2
fi
if [ ! -x "$BASE/usr/bin/gimp-console-3.2" ]; then
    NC_GIMP_ROOT="$BASE" sh "$HERE/../tests/e2e/make_gimp_root.sh" 3.2
fi

TMP="$ROOT.tmp"
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9
if [ -d "$ROOT" ] && ready "$ROOT"; then
    echo "Resynthesizer root ready: $ROOT"
    exit 0
fi
rm -rf "$TMP" "$TMP.copy"
echo "make_resynth_root.sh: copying $BASE to $TMP"
# the plain root's lock keeps its builder out while we copy (the e2e tests only read it)
(
    flock 8
    cp -a "$BASE" "$TMP.copy"
) 8>"$BASE.lock"
find "$TMP.copy/tmp" -mindepth 1 -delete   # the e2e tests' scratch folders
mv "$TMP.copy" "$TMP"
echo 'Acquire::Check-Valid-Until "false";' > "$TMP/etc/apt/apt.conf.d/99no-valid-until"
cp /etc/resolv.conf "$TMP/etc/resolv.conf" 2>/dev/null || true
in_root "$TMP" apt-get update
in_root "$TMP" apt-get install -y --no-install-recommends gimp-plugin-registry
in_root "$TMP" apt-get clean
if ! ready "$TMP"; then
    echo "make_resynth_root.sh: gimp-plugin-registry installed no Resynthesizer for GIMP 3 in $TMP:" >&2
    in_root "$TMP" dpkg -L gimp-plugin-registry | grep -i resynth >&2 || true
    exit 1
fi
rm -rf "$ROOT"
mv "$TMP" "$ROOT"
echo "Resynthesizer root ready: $ROOT"
