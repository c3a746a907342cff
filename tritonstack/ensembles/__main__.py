from tritonstack.ensembles.cli import main

raise SystemExit(main())
