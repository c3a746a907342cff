import sys

from tritonstack.http.cli import main

sys.exit(main())
