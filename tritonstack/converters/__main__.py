"""``python -m tritonstack.converters``: see :mod:`converters.cli`."""

from tritonstack.converters.cli import main

raise SystemExit(main())
