#!/usr/bin/env bash
# Run a python-fu snippet in the GUI GIMP 3 of the ../shared/gimp3 chroot, on an X display.
# The console GIMP that gimp3-run.sh starts has no undo (the PDB cannot undo); the GUI one does,
# so the undo test drives it with real key presses from the host.
#
# usage: gimp3_gui_run.sh DISPLAY PLUGIN_DIR WORKDIR SNIPPET [VAR=VAL...]
#   WORKDIR is bind-mounted at the same path; /tmp/.X11-unix is shared for the display.
set -euo pipefail
ROOT=${GIMP3_ROOT:-/tmp/gimp3root}
TIMEOUT=${GIMP3_TIMEOUT:-240}
[ $# -ge 4 ] || { sed -n '2,7p' "$0" >&2; exit 2; }
DISP=$1; PLUGIN=$2; WORK=$3; SNIPPET=$4; shift 4
[ -f "$ROOT/.gimp3-ready" ] || { echo "gimp3_gui_run: $ROOT is not built" >&2; exit 1; }

RUNHOME_HOST=$(mktemp -d "$ROOT/tmp/gimp3gui.XXXXXX")
RUNHOME=${RUNHOME_HOST#"$ROOT"}
trap 'rm -rf "$RUNHOME_HOST"' EXIT
cp -a "$ROOT/root/gimp3-template-home/." "$RUNHOME_HOST/"
mkdir -p "$RUNHOME_HOST/.config/GIMP/3.0/plug-ins"
cp -a "$PLUGIN" "$RUNHOME_HOST/.config/GIMP/3.0/plug-ins/layerlift"
chmod 755 "$RUNHOME_HOST/.config/GIMP/3.0/plug-ins/layerlift/layerlift.py"
cp "$SNIPPET" "$RUNHOME_HOST/snippet.py"

unshare --mount --propagation private bash -c '
    set -e
    ROOT=$1; RUNHOME=$2; WORK=$3; DISP=$4; TIMEOUT=$5; shift 5
    mount -t proc proc "$ROOT/proc"
    mkdir -p "$ROOT/tmp/.X11-unix" "$ROOT$WORK"
    mount --bind /tmp/.X11-unix "$ROOT/tmp/.X11-unix"
    mount --bind "$WORK" "$ROOT$WORK"
    exec chroot "$ROOT" env -i HOME="$RUNHOME" PATH=/usr/bin:/bin LANG=C.UTF-8 \
        DISPLAY="$DISP" NO_AT_BRIDGE=1 "$@" \
        timeout -k 10 "$TIMEOUT" gimp-3.0 --no-splash --batch-interpreter python-fu-eval -b - \
        --quit < "$ROOT$RUNHOME/snippet.py"
' _ "$ROOT" "$RUNHOME" "$WORK" "$DISP" "$TIMEOUT" "$@"
