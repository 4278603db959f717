#!/usr/bin/env bash
# System packages the test suite drives for real: Xvfb (a virtual screen for the desktop
# screenshot and the GUI GIMP undo test), xdotool (real key presses into GIMP), Node.js (the
# Photoshop panel's tests) and the X libraries Qt's xcb plug-in loads.
# `make test` runs this; it installs what is missing when it can (root on Debian/Ubuntu) and
# otherwise names the command to run. The GIMP 3 chroot is built by the `gimp3` test fixture
# (tests/gimp/harness/build.sh: it installs debootstrap itself, then caches the chroot).
set -euo pipefail
missing=()
command -v Xvfb >/dev/null 2>&1 || missing+=(xvfb)
command -v xdotool >/dev/null 2>&1 || missing+=(xdotool)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
# Qt's xcb platform plug-in (the desktop screenshot test runs the real app under Xvfb).
if command -v dpkg-query >/dev/null 2>&1; then
    for pkg in libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 \
               libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-randr0; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$pkg")
    done
fi
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages for the tests: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
echo "error: the tests need these system packages: ${missing[*]}" >&2
echo "install them with: sudo apt-get install ${missing[*]}" >&2
exit 1
