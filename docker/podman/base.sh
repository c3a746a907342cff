#!/usr/bin/env bash
# Build the local base image localhost/stack-base:bookworm-DIGEST, a stand-in for python:3.11-slim-bookworm
# on hosts that cannot reach Docker Hub: Debian bookworm minbase + Debian's Python 3.11, made with
# debootstrap from the host's own Debian mirror and `podman import`ed. Run setup.sh first.
#
#   docker/podman/base.sh [--force]     # prints the image's name; skips the build when it exists
#
# The tag carries a digest of this script, so a changed recipe makes a new base on a machine
# that kept the old one.
#
# Use it with the repo's Dockerfiles through their base-image build arg, e.g.
#   podman build --format docker --network host \
#       --build-arg PYTHON_IMAGE="$(docker/podman/base.sh)" -f docker/Dockerfile.cpu -t NAME .
#
# pip inside a container reaches the registries here only when it trusts the build machine's CA
# bundle, so that bundle is baked in as /etc/ssl/build-host-ca.crt and /etc/pip.conf points pip
# at it (only `cert`: the host's find-links/extra-index-url/constraint paths do not exist in an
# image). It sits outside /etc/ssl/certs so that update-ca-certificates in a later layer keeps it.
set -euo pipefail

IMAGE=localhost/stack-base:bookworm-$(sha256sum "$0" | cut -c1-8)
[[ $(id -u) == 0 ]] || { echo "base.sh: must run as root" >&2; exit 3; }
if [[ ${1:-} != --force ]] && podman image exists "$IMAGE"; then
    echo "$IMAGE"; exit 0
fi
exec 3>&1 1>&2  # progress on stderr; the image's name alone on stdout

# The Debian mirror the host's apt uses (deb822 "URIs:" or one-line "deb URL bookworm ...").
mirror=$({ cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null || :; } |
    awk '/^URIs:/ && $2 ~ /\/debian\/?$/ {print $2; exit}
         /^deb / && $0 ~ / bookworm / && $2 ~ /\/debian\/?$/ {print $2; exit}')
mirror=${mirror:-http://deb.debian.org/debian}; mirror=${mirror%/}
echo "mirror: $mirror"

old=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || :)
work=$(mktemp -d /var/tmp/stack-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
# minbase already has passwd (groupadd/useradd), bash and coreutils; python3-venv brings the
# ensurepip wheels so `python -m venv` makes a venv with pip; python-is-python3 gives `python`;
# libpython3.11: Triton's Python-backend stub links the shared library (Debian's python3 is
# static; python:3.11-slim is built --enable-shared and has it).
SECONDS=0
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,libpython3.11,ca-certificates \
    bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -30 "$work/debootstrap.log"; exit 1; }

echo "debootstrap: ${SECONDS}s"; SECONDS=0
cat > "$root/etc/apt/sources.list" <<SRC
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $mirror-security bookworm-security main
SRC
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/build-host-ca.crt"
printf '[global]\ncert = /etc/ssl/build-host-ca.crt\n' > "$root/etc/pip.conf"
# Keep it small: no apt lists/caches, docs, man pages or message translations (33 MB);
# hostname and resolv.conf come from podman at run time.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/log/* \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/etc/hostname "$root"/etc/resolv.conf
find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +

tar -C "$root" --numeric-owner -cf - . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' - "$IMAGE"
echo "import: ${SECONDS}s"
[[ -n $old ]] && podman rmi "$old" >/dev/null 2>&1 || :   # the replaced image, if now unused
podman image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' "$IMAGE"
echo "$IMAGE" >&3
