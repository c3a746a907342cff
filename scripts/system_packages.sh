#!/usr/bin/env bash
# Debian packages the test suite and tools use beside the Python environment, installed by
# `make venv` (so `make test` and `.ci/run` on a fresh machine need nothing by hand):
#   qemu-user   qemu-x86_64 runs ONNX Runtime as an AVX2-only CPU (-cpu Haswell), so the INT8
#               tests exercise the int16-saturating kernel on any x86 host
#               (`python -m tritonstack.converters verify --emulate-cpu Haswell`).
#   prometheus  the Prometheus server and promtool: the alert rules are checked and unit-tested
#               offline (promtool), and a real Prometheus scrapes a real Triton in the drift test.
# Without root or apt-get it installs nothing and says which tests will skip.
set -euo pipefail

packages=()
command -v qemu-x86_64 >/dev/null 2>&1 || packages+=(qemu-user)
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || packages+=(prometheus)
[ "${#packages[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: ${packages[*]} not installed (needs root and apt-get): the tests that need them" \
         "(emulated AVX2 CPU, Prometheus rules and drift alert) will skip; install them with:" \
         "sudo apt-get install ${packages[*]}" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
