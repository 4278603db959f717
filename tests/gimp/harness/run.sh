#!/usr/bin/env bash
# Run a Python snippet in the real GIMP 3 of the harness chroot (built first if needed).
#
# usage: run.sh [-p PLUGIN_DIR]... [-B HOST_DIR]... [-e VAR=VAL]... [-t SECS] [-d DISPLAY] [-k]
#               SNIPPET.py|-
#   -p DIR      install a plug-in for this run: DIR holds <basename DIR>.py; it is copied to
#               ~/.config/GIMP/3.0/plug-ins/<basename DIR>/ in this run's fresh profile
#   -B DIR      bind-mount the host folder DIR at the same path in the chroot (inputs, outputs)
#   -e VAR=VAL  an environment variable for GIMP, the snippet and the plug-ins
#   -t SECS     stop GIMP after SECS seconds (default 300); the exit code is then 124
#   -d DISPLAY  run the GUI GIMP (gimp-3.0) on that X display instead of gimp-console-3.0
#               (/tmp/.X11-unix is shared with the chroot); the one with an undo history
#   -k          keep this run's HOME and print where it is
# The snippet is python-fu-eval code run inside GIMP (`from gi.repository import Gimp`).
# The exit code is GIMP's: 0 when the snippet ran, 64 when it raised; GIMP's own warnings on
# stderr are noise. Every run starts from a fresh HOME copied from the profile build.sh made,
# with /proc and the -B folders mounted in a private mount namespace that ends with the run.
# Needs root.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

TIMEOUT=300; KEEP=0; DISP=; PLUGINS=(); BINDS=(); ENVS=()
usage() { sed -n '4,18p' "$0" >&2; exit 2; }
while getopts "p:B:e:t:d:kh" opt; do
    case $opt in
        p) PLUGINS+=("$(cd "$OPTARG" && pwd)") ;;
        B) BINDS+=("$(cd "$OPTARG" && pwd)") ;;
        e) [[ $OPTARG == *=* ]] || usage; ENVS+=("$OPTARG") ;;
        t) TIMEOUT=$OPTARG ;;
        d) DISP=$OPTARG ;;
        k) KEEP=1 ;;
        *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
[ "$(id -u)" = 0 ] || { echo "gimp3 harness: running GIMP in its chroot needs root" >&2; exit 1; }

"$HARNESS/build.sh" >/dev/null
# Shared: other runs go on beside this one, but no build or clean-up touches the chroot.
exec 9>>"$GIMP3_LOCK"
flock -s 9
touch "$GIMP3_ROOT/.last-used"

RUNHOME_HOST=$(mktemp -d "$GIMP3_ROOT/tmp/home.XXXXXX")
RUNHOME=${RUNHOME_HOST#"$GIMP3_ROOT"}
cleanup() {
    for dir in "${BINDS[@]+"${BINDS[@]}"}"; do rmdir "$GIMP3_ROOT$dir" 2>/dev/null || true; done
    if [ "$KEEP" = 1 ]; then echo "gimp3 harness: HOME kept in $RUNHOME_HOST" >&2
    else rm -rf "$RUNHOME_HOST"; fi
}
trap cleanup EXIT
cp -a "$GIMP3_ROOT$GIMP3_TEMPLATE_HOME/." "$RUNHOME_HOST/"
PLUGIN_HOME="$RUNHOME_HOST/.config/GIMP/3.0/plug-ins"
mkdir -p "$PLUGIN_HOME"
for dir in "${PLUGINS[@]+"${PLUGINS[@]}"}"; do
    name=$(basename "$dir")
    [ -f "$dir/$name.py" ] || { echo "gimp3 harness: $dir has no $name.py" >&2; exit 2; }
    rm -rf "${PLUGIN_HOME:?}/$name"
    cp -a "$dir" "$PLUGIN_HOME/$name"
    chmod 755 "$PLUGIN_HOME/$name/$name.py"
done
if [ "$1" = - ]; then cat >"$RUNHOME_HOST/snippet.py"; else cp "$1" "$RUNHOME_HOST/snippet.py"; fi

if [ -n "$DISP" ]; then
    BINDS+=(/tmp/.X11-unix)
    ENVS+=("DISPLAY=$DISP" NO_AT_BRIDGE=1)
    GIMP=(gimp-3.0 --no-splash)
else
    GIMP=(gimp-console-3.0 -i)
fi

set +e
unshare --mount --propagation private bash -c '
    set -e
    root=$1; home=$2; timeout=$3; binds=$4; shift 4
    mount -t proc proc "$root/proc"
    for ((i = 0; i < binds; i++)); do mkdir -p "$root$1"; mount --bind "$1" "$root$1"; shift; done
    envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
    exec chroot "$root" env -i HOME="$home" PATH=/usr/bin:/bin LANG=C.UTF-8 \
        "${envs[@]+"${envs[@]}"}" timeout -k 10 "$timeout" "$@" \
        --batch-interpreter python-fu-eval -b - --quit <"$root$home/snippet.py"
' run.sh "$GIMP3_ROOT" "$RUNHOME" "$TIMEOUT" "${#BINDS[@]}" "${BINDS[@]+"${BINDS[@]}"}" \
    "${ENVS[@]+"${ENVS[@]}"}" -- "${GIMP[@]}"
status=$?
set -e
exit $status
