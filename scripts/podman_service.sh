#!/usr/bin/env bash
# Rootful podman's Docker-compatible API for the Docker sandbox backend's tests, on Debian.
#
#   scripts/podman_service.sh start [DIR]   install podman+runc if missing, write the configs,
#                                           build the tiny base image, start the API service and
#                                           print its URL (unix://DIR/podman.sock) on stdout
#   scripts/podman_service.sh stop  [DIR]   remove nightcrew's containers, stop the service
#   scripts/podman_service.sh env   [DIR]   print the `export` lines for the podman CLI
#
# DIR defaults to $NIGHTCREW_PODMAN_DIR, else /tmp/nightcrew-podman. Nothing is written under
# /etc or $HOME. Why each setting is there: shared/research/sandbox.md §4.
set -euo pipefail

IMAGE="nightcrew/empty"
LABEL="nightcrew.sandbox=1"

log() { echo "podman_service: $*" >&2; }

install_podman() {
    if command -v podman >/dev/null && command -v runc >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null || { log "podman/runc missing and no apt-get"; exit 1; }
    log "installing podman and runc from Debian's packages"
    apt-get update -qq
    # crun refuses this cgroup v1/v2 hybrid layout; runc 1.1 handles it (§4.2 #2)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc >&2
}

write_configs() {
    local dir=$1
    mkdir -p "$dir/root" "$dir/runroot" "$dir/tmp"
    # conmon and its cleanup command see only conmon_env_vars: without the config paths there,
    # every container takes 20 s to be marked exited (§4.2 #3). The default ulimits exceed the
    # hard RLIMIT_NOFILE/NPROC of a process without CAP_SYS_RESOURCE (§4.2 #1).
    cat >"$dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
netns = "none"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$dir/tmp"
conmon_env_vars = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "CONTAINERS_CONF=$dir/containers.conf",
                   "CONTAINERS_STORAGE_CONF=$dir/storage.conf"]
EOF
    cat >"$dir/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$dir/root"
runroot = "$dir/runroot"
EOF
    cat >"$dir/env.sh" <<EOF
export CONTAINERS_CONF=$dir/containers.conf
export CONTAINERS_STORAGE_CONF=$dir/storage.conf
EOF
}

use_configs() {
    export CONTAINERS_CONF="$1/containers.conf" CONTAINERS_STORAGE_CONF="$1/storage.conf"
}

build_image() {
    # No registry here, and a tar of the host's /usr is 5 GB / 3 min (§4.4). The image holds
    # only the merged-/usr symlinks (the ELF loader is /lib64/ld-linux-*.so.2) and mount points;
    # the sandbox bind-mounts the host's /usr and /etc read-only over it.
    if podman image exists "$IMAGE"; then
        return
    fi
    local skel
    skel=$(mktemp -d)
    mkdir -p "$skel"/{usr,etc,tmp,workspace,proc,dev,sys,run,var/tmp}
    chmod 1777 "$skel/tmp" "$skel/var/tmp"
    for link in bin sbin lib lib64; do
        ln -s "usr/$link" "$skel/$link"
    done
    tar -C "$skel" -c . | podman import --quiet - "$IMAGE" >/dev/null
    rm -rf "$skel"
    log "built $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
}

ping_socket() {
    curl -fsS --max-time 2 --unix-socket "$1" http://d/_ping >/dev/null 2>&1
}

start_service() {
    local dir=$1 sock="$1/podman.sock"
    if ping_socket "$sock"; then
        log "already running (pid $(cat "$dir/podman.pid" 2>/dev/null || echo '?'))"
        return
    fi
    rm -f "$sock"
    # setsid: the service must outlive this script and not share its terminal's signals.
    # Run it from DIR: conmon drops an `oom` marker file into its working directory when a
    # container is OOM-killed, which would otherwise litter the caller's checkout.
    (
        cd "$dir" || exit 1
        setsid podman system service --time=0 "unix://$sock" >"$dir/service.log" 2>&1 </dev/null &
        echo $! >"$dir/podman.pid"
    )
    for _ in $(seq 100); do
        ping_socket "$sock" && return
        sleep 0.1
    done
    log "service did not answer on $sock; see $dir/service.log"
    exit 1
}

stop_service() {
    local dir=$1 pid
    if [[ -f "$dir/containers.conf" ]] && command -v podman >/dev/null; then
        use_configs "$dir"
        # a killed client leaves its containers running (§4.5): remove whatever is left of ours
        podman ps -aq --filter "label=$LABEL" | xargs -r podman rm -f -t 0 >/dev/null || true
    fi
    if [[ -f "$dir/podman.pid" ]]; then
        pid=$(cat "$dir/podman.pid")
        if kill "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            log "stopped service (pid $pid)"
        fi
        rm -f "$dir/podman.pid" "$dir/podman.sock"
    fi
    # podman leaves empty per-container cgroups under libpod_parent; rmdir skips busy ones
    find /sys/fs/cgroup/*/libpod_parent -depth -type d -exec rmdir {} + 2>/dev/null || true
}

main() {
    local cmd=${1:-} dir=${2:-${NIGHTCREW_PODMAN_DIR:-/tmp/nightcrew-podman}}
    dir=$(realpath -m "$dir")
    case "$cmd" in
        start)
            install_podman
            write_configs "$dir"
            use_configs "$dir"
            build_image
            start_service "$dir"
            echo "unix://$dir/podman.sock"
            ;;
        stop) stop_service "$dir" ;;
        env) cat "$dir/env.sh" ;;
        *) echo "usage: $0 start|stop|env [DIR]" >&2; exit 2 ;;
    esac
}

main "$@"
