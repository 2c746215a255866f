"""`python -m netboot` is the same as the `netboot` command."""

from netboot.cli import main

raise SystemExit(main())
