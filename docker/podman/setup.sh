#!/usr/bin/env bash
# Set up rootful Podman on a Debian bookworm host that has no Docker engine and no route to
# Docker Hub / nvcr.io (images are built FROM a local base: see base.sh next to this file).
#
#   sudo docker/podman/setup.sh          # idempotent; about 1 s when already set up
#
# Then build and run with host networking (there is no bridge network set up here):
#   podman build --format docker --network host -f docker/Dockerfile.cpu -t NAME .
#   podman run --rm --network host --init NAME
#
# Exit 3 when not root or apt-get is missing.
set -euo pipefail

[[ $(id -u) == 0 ]] || { echo "setup.sh: must run as root" >&2; exit 3; }
command -v apt-get >/dev/null || { echo "setup.sh: needs apt-get (Debian bookworm)" >&2; exit 3; }

# uidmap: newuidmap/newgidmap; catatonit: the init process behind `podman run --init`.
pkgs=(podman buildah runc debootstrap uidmap fuse-overlayfs slirp4netns catatonit)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Podman's default ulimits for root are above what this host lets a process raise to (no
# CAP_SYS_RESOURCE: the hard limits are a ceiling) and runc then fails every container with
# "error setting rlimit type 6/7: operation not permitted". Take 65536, or less where the host's
# hard limit is lower (nofile 20000 here). Podman also lowers its own nproc to kernel.pid_max
# (32768 here) before starting conmon/runc, so nproc is capped by pid_max too.
min() { local m=$1 v; for v; do [[ $v != unlimited && $v -lt $m ]] && m=$v; done; echo "$m"; }
nofile=$(min 65536 "$(ulimit -Hn)")
nproc=$(min 65536 "$(ulimit -Hu)" "$(cat /proc/sys/kernel/pid_max)")

mkdir -p /etc/containers/containers.conf.d
cat > /etc/containers/containers.conf.d/50-stack.conf.new <<CONF
# Written by docker/podman/setup.sh.
[containers]
# Explicit limits within the host's hard limits (defaults cannot be raised here).
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
# crun fails on this host's hybrid (v1 + unified) cgroup layout; runc works.
runtime = "runc"
# No systemd as PID 1: cgroupfs instead of systemd cgroups, events to a file, not journald.
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
mv /etc/containers/containers.conf.d/50-stack.conf.new /etc/containers/containers.conf.d/50-stack.conf

# Storage: the kernel's native overlay on the ext4 root (podman reports "Native Overlay Diff:
# true"). Measured here against vfs: a pip-install build 3.4 s vs 9.9 s, `podman run` 0.15 s vs
# 0.9 s, and vfs copies every layer in full. Written only when absent: switching the driver of an
# existing store needs `podman system reset`, which deletes every image.
if [[ ! -e /etc/containers/storage.conf ]]; then
    driver=overlay; grep -qw overlay /proc/filesystems || driver=vfs
    cat > /etc/containers/storage.conf <<CONF
# Written by docker/podman/setup.sh.
[storage]
driver = "$driver"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
CONF
fi
podman info --format 'podman {{.Version.Version}}: runtime {{.Host.OCIRuntime.Name}}, storage {{.Store.GraphDriverName}}, cgroups {{.Host.CgroupsVersion}}'
