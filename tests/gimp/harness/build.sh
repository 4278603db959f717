#!/usr/bin/env bash
# Build, once, the real GIMP 3 the end-to-end tests drive: a Debian trixie chroot made with
# debootstrap from the Debian mirror, with Debian's GIMP 3.0 packages and Python plug-in
# support in it. GIMP 3 is not in Debian 12 (bookworm), hence the chroot.
#
#   tests/gimp/harness/build.sh        # prints the chroot's path on stdout when it is ready
#
# Idempotent: a ready chroot is reused in a fraction of a second. Where it lives and when it is
# rebuilt: common.sh. Needs root (debootstrap, chroot, mount) on a Debian or Ubuntu host with
# apt-get; installs debootstrap (and Debian's archive keyring) on the host when missing. From
# nothing: about 4 minutes on 2 cores, about 120 MB downloaded, about 730 MB on disk.
#
# Env: LAYERLIFT_GIMP3_CACHE (the cache folder), LAYERLIFT_GIMP3_SUITE (default trixie),
#      LAYERLIFT_GIMP3_MIRROR (default: the host's own Debian mirror, else deb.debian.org).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PACKAGES="gimp python3-gi gir1.2-gimp-3.0"
STALE_DAYS=14
say() { echo "gimp3 harness: $*" >&2; }
die() { say "$*"; exit 1; }

ready() { [ -f "$GIMP3_ROOT/.ready" ]; }
if ready; then echo "$GIMP3_ROOT"; exit 0; fi

[ "$(id -u)" = 0 ] || die "building the GIMP 3 chroot needs root (debootstrap, chroot, mount); \
run the GIMP tests as root"
command -v apt-get >/dev/null 2>&1 || die "building the GIMP 3 chroot needs a Debian or Ubuntu \
host (apt-get and debootstrap)"
command -v unshare >/dev/null 2>&1 && command -v flock >/dev/null 2>&1 \
    || die "building the GIMP 3 chroot needs unshare and flock (util-linux)"

mkdir -p "$GIMP3_CACHE"
exec 9>"$GIMP3_LOCK"
if ! flock -xn 9; then
    say "another process is building $GIMP3_ROOT; waiting for it"
    flock -x 9
fi
if ready; then echo "$GIMP3_ROOT"; exit 0; fi

PARTIAL="$GIMP3_ROOT.partial"
LOG="$GIMP3_ROOT.build.log"
: >"$LOG"
started=$(date +%s)
step() { say "$1 ($(( $(date +%s) - started )) s so far; log: $LOG)"; }
fail() { say "$1; the end of $LOG:"; tail -n 25 "$LOG" >&2; exit 1; }

# A build that died half-way is started again from nothing.
if [ -e "$PARTIAL" ]; then
    grep -q " $PARTIAL/" /proc/mounts && die "$PARTIAL still has mounts under it; unmount them"
    rm -rf --one-file-system "$PARTIAL"
fi

# --- the host's tools ------------------------------------------------------------------------
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
host_packages=()
command -v debootstrap >/dev/null 2>&1 || host_packages+=(debootstrap)
[ -f "$KEYRING" ] || host_packages+=(debian-archive-keyring)
if [ ${#host_packages[@]} -gt 0 ]; then
    step "installing ${host_packages[*]} on the host"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${host_packages[@]}"; } >>"$LOG" 2>&1 \
        || fail "apt-get install ${host_packages[*]} failed"
fi

# --- debootstrap -----------------------------------------------------------------------------
# The host's own Debian mirror when it has one (a local mirror or proxy is often all a build
# machine can reach), else the public one.
host_mirror() {
    {
        awk '/^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i }' \
            /etc/apt/sources.list.d/*.sources 2>/dev/null
        sed -E -n 's/\[[^]]*\]//; s/^[[:space:]]*deb[[:space:]]+([^[:space:]]+).*/\1/p' \
            /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null
    } | grep -E '/debian/?$' | head -n 1 || true
}
MIRROR=${LAYERLIFT_GIMP3_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR=${MIRROR%/}
step "debootstrap --variant=minbase $GIMP3_SUITE from $MIRROR into $PARTIAL (about 1 min)"
debootstrap --variant=minbase --keyring="$KEYRING" "$GIMP3_SUITE" "$PARTIAL" "$MIRROR" \
    >>"$LOG" 2>&1 || fail "debootstrap failed"
cp -L /etc/resolv.conf "$PARTIAL/etc/resolv.conf" 2>/dev/null || true
# No package may start a service inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$PARTIAL/usr/sbin/policy-rc.d"
chmod 755 "$PARTIAL/usr/sbin/policy-rc.d"

# Runs a command in the chroot with /proc mounted in a private mount namespace, so that no
# mount outlives the command.
in_chroot() {
    unshare --mount --propagation private sh -ec '
        root=$1; shift
        mount -t proc proc "$root/proc"
        exec chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
    ' in_chroot "$PARTIAL" "$@"
}

# --- GIMP 3 ----------------------------------------------------------------------------------
step "apt-get install $PACKAGES in the chroot (about 1.5 min, about 120 MB)"
in_chroot sh -ec "apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $PACKAGES
    apt-get clean" >>"$LOG" 2>&1 || fail "installing GIMP 3 in the chroot failed"

# --- the profile every run starts from ---------------------------------------------------------
step "first start of GIMP, to make the profile each run copies (about 20 s)"
mkdir -p "$PARTIAL$GIMP3_TEMPLATE_HOME"
in_chroot HOME="$GIMP3_TEMPLATE_HOME" timeout -k 10 300 gimp-console-3.0 -i \
    --batch-interpreter python-fu-eval \
    -b 'from gi.repository import Gimp; print("GIMP", Gimp.version())' --quit \
    >>"$LOG" 2>&1 || fail "GIMP's first start failed"
version=$(grep -o '^GIMP 3\.[0-9.]*' "$LOG" | tail -n 1) || true
[ -n "$version" ] || fail "GIMP started but its Python did not print GIMP's version"

printf 'recipe %s\nsuite %s\nmirror %s\n%s\nbuilt %s in %s s\n' "$GIMP3_RECIPE" \
    "$GIMP3_SUITE" "$MIRROR" "$version" "$(date -u +%FT%TZ)" "$(( $(date +%s) - started ))" \
    >"$PARTIAL/.ready"
touch "$PARTIAL/.last-used"
mv "$PARTIAL" "$GIMP3_ROOT"
say "ready: $version in $GIMP3_ROOT, built in $(( $(date +%s) - started )) s, \
$(du -shx "$GIMP3_ROOT" | cut -f1) on disk"

# --- forget what older recipes built ---------------------------------------------------------
# A chroot no run has used for STALE_DAYS days, and a half-built one no build holds, goes; one
# whose lock is held (a run or a build in progress) stays. Lock files stay: they are empty.
for old in "$GIMP3_CACHE"/gimp3-*; do
    [ -d "$old" ] && [ "$old" != "$GIMP3_ROOT" ] && [ "$old" != "$PARTIAL" ] || continue
    base=${old%.partial}
    if [ "$old" = "$base" ]; then
        [ -n "$(find "$old/.last-used" -mtime +"$STALE_DAYS" 2>/dev/null)" ] \
            || [ ! -e "$old/.last-used" ] || continue
    fi
    (
        flock -xn 8 || exit 0
        grep -q " $old/" /proc/mounts && exit 0
        say "removing $old (an older recipe's chroot)"
        rm -rf --one-file-system "$old"
        rm -f "$base.build.log"
    ) 8>"$base.lock"
done
echo "$GIMP3_ROOT"
