import sys

from tritonstack.rollout.cli import main

sys.exit(main())
