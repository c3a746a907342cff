"""``python -m tritonstack.loadtest``: see ``loadtest.cli``."""

from tritonstack.loadtest.cli import main

raise SystemExit(main())
