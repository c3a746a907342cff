from tritonstack.server.cli import main

raise SystemExit(main())
