#!/usr/bin/env bash
# Install the project into one Python environment: the steps `make venv` runs and the CPU image
# runs, kept in one place so CI (which runs `make test` on a fresh clone) exercises the image's
# install too.
#
# Usage: docker/install.sh PYTHON PIP_ARGS...
#   PYTHON    interpreter of the environment to install into (.venv/bin/python, /opt/venv/bin/python)
#   PIP_ARGS  how to install the project itself: -e ".[dev]" for development, "." for an image
# Environment:
#   TORCH_INDEX_URL  where torch comes from; unset = pip's own configuration (a wheel on disk
#                    or PyPI); the CPU image sets https://download.pytorch.org/whl/cpu
#
# Order matters. torch goes first, pinned, so pip takes the CPU wheel instead of backtracking
# to the CUDA build (gigabytes). nvidia-pytriton goes last with --no-deps: we use its
# tritonserver binary, not its Python API, whose tritonclient[http] pin conflicts with Locust.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 PYTHON PIP_ARGS... (for example: $0 .venv/bin/python -e '.[dev]')" >&2
    exit 2
fi
py=$1
shift

TORCH_VERSION=2.13.0
PYTRITON_VERSION=0.7.0

"$py" -m pip install -q --upgrade pip
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    "$py" -m pip install -q --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"
else
    "$py" -m pip install -q "torch==${TORCH_VERSION}"
fi
"$py" -m pip install -q "$@"
"$py" -m pip install -q --no-deps "nvidia-pytriton==${PYTRITON_VERSION}"
