from ensembles.cli import main

raise SystemExit(main())
