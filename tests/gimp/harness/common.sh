# Sourced by build.sh and run.sh: where the GIMP 3 chroot lives and which recipe made it.
#
# The chroot is cached in $LAYERLIFT_GIMP3_CACHE (default /var/cache/layerlift-tests, which
# survives reboots, unlike /tmp) under a name that carries the recipe's hash:
#   /var/cache/layerlift-tests/gimp3-<12 hex digits>/
# The hash covers build.sh, this file and the Debian suite, so changing the recipe makes a new
# folder and the next run builds it; an old folder unused for 14 days is removed by the next
# build. Each folder has a lock file beside it (gimp3-<hash>.lock): a build holds it exclusively,
# every GIMP run holds it shared, so two test processes never build at once and a folder in use
# is never removed.

HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GIMP3_SUITE=${LAYERLIFT_GIMP3_SUITE:-trixie}
GIMP3_CACHE=${LAYERLIFT_GIMP3_CACHE:-/var/cache/layerlift-tests}
GIMP3_RECIPE=$(cat "$HARNESS/build.sh" "$HARNESS/common.sh" <(echo "suite=$GIMP3_SUITE") \
    | sha256sum | cut -c1-12)
GIMP3_ROOT="$GIMP3_CACHE/gimp3-$GIMP3_RECIPE"
GIMP3_LOCK="$GIMP3_ROOT.lock"
# A GIMP profile made once by build.sh (the first start of GIMP queries its ~120 plug-ins,
# about 20 s); each run copies it into a fresh HOME. Path inside the chroot.
GIMP3_TEMPLATE_HOME=/root/gimp3-template-home
