#!/usr/bin/env bash
# Build the project's CPU images with Debian's podman, where there is no Docker engine and no
# route to Docker Hub: host setup (setup.sh), the local Debian base (base.sh), then each target
# of docker/Dockerfile.cpu on that base. `make image` and tests/shipped/ run this.
#
#   docker/podman/build.sh [TARGET...]   # targets: mounted (default: the serving image), loadtest, http
#
# Tags: localhost/triton-stack-cpu:VERSION (mounted), localhost/triton-stack-loadtest:VERSION and
# localhost/triton-stack-http:VERSION (the HTTP front),
# VERSION is tritonstack.__version__. Run them with `podman run --network host --init ...` (docs/deployment.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

version=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' tritonstack/__init__.py | head -1)
docker/podman/setup.sh >/dev/null
base=$(docker/podman/base.sh)  # its progress on stderr, the name on stdout
for target in "${@:-mounted}"; do
    case "$target" in
        mounted) name=triton-stack-cpu ;;
        loadtest) name=triton-stack-loadtest ;;
        http) name=triton-stack-http ;;
        *) echo "build.sh: unknown target '$target' (mounted, loadtest or http)" >&2; exit 2 ;;
    esac
    SECONDS=0
    podman build --quiet --format docker --network host \
        --build-arg PYTHON_IMAGE="$base" \
        --target "$target" -t "localhost/$name:$version" -f docker/Dockerfile.cpu . >/dev/null
    echo "localhost/$name:$version built in ${SECONDS}s, $(podman image inspect --format '{{.Size}}' "localhost/$name:$version" | awk '{printf "%.0f MB", $1/1e6}')"
done
