"""``python -m converters``: see :mod:`converters.cli`."""

from converters.cli import main

raise SystemExit(main())
