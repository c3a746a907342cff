from tritonstack.client.cli import main

raise SystemExit(main())
