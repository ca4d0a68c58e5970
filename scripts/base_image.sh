#!/usr/bin/env bash
# A minimal Debian base image for nightcrew's Dockerfile, made without any image registry:
# debootstrap from the Debian mirror this machine's apt already uses, then `podman import`.
#
#   scripts/base_image.sh          make the image unless it exists; print its name on stdout
#   scripts/base_image.sh --key    print the name only (the content key), make nothing
#
# The tag is a content key: a hash of this script (which holds the suite and the package list)
# and the architecture, so a second run finds the image and returns at once, and a change here
# makes a new one (older nightcrew-base tags are removed). Downloaded .debs are kept in the
# cache dir too. Needs root, podman (configured by the caller: CONTAINERS_CONF /
# CONTAINERS_STORAGE_CONF) and debootstrap (installed from Debian's packages when missing).
#
#   NIGHTCREW_DEBIAN_SUITE    default: this host's Debian codename, else bookworm
#   NIGHTCREW_DEBIAN_MIRROR   default: the mirror in this host's apt sources, else deb.debian.org
#   NIGHTCREW_IMAGE_CACHE     default: /var/tmp/nightcrew-image-cache
set -euo pipefail

REPO="localhost/nightcrew-base"
# What nightcrew needs at run time from the system: Python with venv, git, CA certificates.
# (minbase already has util-linux: prlimit and setpriv, which the bwrap sandbox uses.)
PACKAGES="python3,python3-venv,git,ca-certificates"

log() { echo "base_image: $*" >&2; }

suite() {
    if [[ -n ${NIGHTCREW_DEBIAN_SUITE:-} ]]; then
        echo "$NIGHTCREW_DEBIAN_SUITE"
    elif grep -qs '^ID=debian' /etc/os-release; then
        sed -n 's/^VERSION_CODENAME=//p' /etc/os-release
    else
        echo bookworm
    fi
}

mirror() {
    # The first plain Debian archive URI in apt's sources (deb822 or one-line format).
    local found=${NIGHTCREW_DEBIAN_MIRROR:-}
    if [[ -z $found ]]; then
        found=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n' | grep -v -- '-security' | head -n 1 || true)
    fi
    if [[ -z $found ]]; then
        found=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            | grep -v -- '-security' | awk '{print $2}' | head -n 1 || true)
    fi
    echo "${found:-http://deb.debian.org/debian}"
}

image_name() {
    local key
    key=$( { cat "${BASH_SOURCE[0]}"; suite; uname -m; } | sha256sum | cut -c1-16)
    echo "$REPO:$key"
}

need_debootstrap() {
    command -v debootstrap >/dev/null && return
    command -v apt-get >/dev/null || { log "debootstrap missing and no apt-get"; exit 1; }
    log "installing debootstrap from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
}

make_image() {
    local name=$1 cache=${NIGHTCREW_IMAGE_CACHE:-/var/tmp/nightcrew-image-cache} root
    [[ $(id -u) == 0 ]] || { log "needs root (debootstrap, rootful podman)"; exit 1; }
    command -v podman >/dev/null || { log "podman not found"; exit 1; }
    need_debootstrap
    mkdir -p "$cache/debs"
    root=$(mktemp -d "$cache/rootfs.XXXXXX")
    ROOTFS=$root
    trap 'rm -rf "${ROOTFS:-}"' EXIT
    log "debootstrap $(suite) from $(mirror) (minbase + $PACKAGES)"
    debootstrap --variant=minbase --include="$PACKAGES" --cache-dir="$cache/debs" \
        "$(suite)" "$root" "$(mirror)" >"$cache/debootstrap.log" 2>&1 \
        || { log "debootstrap failed; see $cache/debootstrap.log"; tail -n 5 "$cache/debootstrap.log" >&2; exit 1; }
    # What an image does not need: docs, man pages, translations, apt's lists and downloads.
    rm -rf "$root"/usr/share/{doc,man,info,locale}/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
    tar -C "$root" --numeric-owner -c . \
        | podman import --quiet --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$name" >/dev/null
    log "made $name ($(podman image inspect --format '{{.Size}}' "$name") bytes)"
    # older content keys are dead weight in the image store
    podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=$REPO" \
        | grep -vxF "$name" | xargs -r podman rmi --force >/dev/null 2>&1 || true
}

main() {
    local name
    name=$(image_name)
    case "${1:-}" in
        --key) ;;
        "") podman image exists "$name" 2>/dev/null || make_image "$name" ;;
        *) echo "usage: $0 [--key]" >&2; exit 2 ;;
    esac
    echo "$name"
}

main "$@"
