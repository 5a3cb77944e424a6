"""`python -m hbsm.demo [options]`: the same as `hbsm demo [options]`."""

import sys

from hbsm.demo.command import main

sys.exit(main())
