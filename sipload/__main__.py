"""``python -m sipload``: the same as the ``sipload`` console script."""

from sipload.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
