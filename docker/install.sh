#!/usr/bin/env bash
# Install the project into one Python environment: the steps `make venv` runs and the images
# run, kept in one place so CI (which runs `make test` on a fresh clone) exercises the images'
# install too.
#
# Usage: docker/install.sh PYTHON PIP_ARGS...
#   PYTHON    interpreter of the environment to install into (.venv/bin/python, /opt/venv/bin/python)
#   PIP_ARGS  how to install the project itself: -e ".[dev]" for development, ".[serve]" for the
#             serving image, ".[loadtest]" for Locust, ".[client]" for a backend service
# Environment:
#   TORCH_INDEX_URL  where torch comes from (export and dev only); unset = pip's own
#                    configuration. Outside this machine PyPI's torch==2.13.0 is the CUDA build
#                    (gigabytes): set https://download.pytorch.org/whl/cpu for the CPU wheel.
#
# Order matters. Where the extras need torch (export, dev), it goes first, pinned, so pip takes
# the CPU wheel instead of backtracking to the CUDA build. Where they serve (serve, dev),
# nvidia-pytriton goes last with --no-deps: we use its tritonserver binary, not its Python API,
# whose tritonclient[http] and numpy<2 pins conflict with Locust.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 PYTHON PIP_ARGS... (for example: $0 .venv/bin/python -e '.[dev]')" >&2
    exit 2
fi
py=$1
shift

TORCH_VERSION=2.13.0
PYTRITON_VERSION=0.7.0

case "$*" in *dev*|*export*) with_torch=1 ;; *) with_torch=0 ;; esac
case "$*" in *dev*|*serve*) with_triton=1 ;; *) with_triton=0 ;; esac

"$py" -m pip install -q --upgrade pip
if [ "$with_torch" = 1 ]; then
    if [ -n "${TORCH_INDEX_URL:-}" ]; then
        "$py" -m pip install -q --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"
    else
        "$py" -m pip install -q "torch==${TORCH_VERSION}"
    fi
fi
"$py" -m pip install -q "$@"
if [ "$with_triton" = 1 ]; then
    "$py" -m pip install -q --no-deps "nvidia-pytriton==${PYTRITON_VERSION}"
fi
