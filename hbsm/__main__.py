"""`python -m hbsm` is the `hbsm` command."""

from hbsm.cli import main

raise SystemExit(main())
