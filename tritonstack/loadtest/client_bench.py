"""``python -m tritonstack.loadtest.client_bench`` (README): moved to :mod:`tritonstack.loadtest.bench.client`."""

from tritonstack.loadtest.bench.client import main

if __name__ == "__main__":
    raise SystemExit(main())
