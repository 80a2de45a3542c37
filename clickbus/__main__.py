"""`python -m clickbus` runs the command line."""

from clickbus.cli import main

raise SystemExit(main())
