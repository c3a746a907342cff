"""``python -m tritonstack.loadtest.storm_bench`` (README): moved to :mod:`tritonstack.loadtest.bench.storm`."""

from tritonstack.loadtest.bench.storm import main

if __name__ == "__main__":
    raise SystemExit(main())
