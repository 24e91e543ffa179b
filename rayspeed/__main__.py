"""`python -m rayspeed` is the same as the `rayspeed` command."""

from rayspeed.cli import main

raise SystemExit(main())
