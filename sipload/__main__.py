"""``python -m sipload``: the same as the ``sipload`` console script."""

from sipload.cli import program

if __name__ == "__main__":
    program()
