#!/usr/bin/env bash
# Install the named Debian packages that are not installed yet; do nothing when
# all of them are. `apt-get update` runs only when a package is unknown to the
# local package lists or the first install attempt fails.
#
#   scripts/apt-ensure.sh chromium postgresql redis-server
set -euo pipefail

[ $# -gt 0 ] || exit 0

installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "apt-ensure: not a Debian system; install these yourself: $*" >&2
    exit 1
fi

missing=()
for pkg in "$@"; do
    installed "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        echo "apt-ensure: need root to install: ${missing[*]}" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
APT=("${SUDO[@]}" apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0)

echo "apt-ensure: installing ${missing[*]}" >&2
need_update=0
for pkg in "${missing[@]}"; do
    # apt-cache policy prints "Candidate: (none)" or nothing for unknown packages.
    policy="$(apt-cache policy "$pkg" 2>/dev/null || true)"
    if ! grep -q 'Candidate: [^(]' <<< "$policy"; then
        need_update=1
    fi
done
if [ "$need_update" = 1 ]; then
    "${APT[@]}" update
fi
if ! "${APT[@]}" install "${missing[@]}"; then
    [ "$need_update" = 1 ] && exit 1
    "${APT[@]}" update
    "${APT[@]}" install "${missing[@]}"
fi
