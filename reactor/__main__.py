"""Entry point for `python -m reactor`."""

from reactor.cli import main

raise SystemExit(main())
