"""``python -m sipload``: the same as the ``sipload`` console script."""

from sipload.cli import main

raise SystemExit(main())
