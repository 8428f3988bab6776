"""``python -m swapbench`` is the ``swapbench`` command."""

from swapbench.cli import main

if __name__ == "__main__":
    main()
