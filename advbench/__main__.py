"""``python -m advbench`` and the ``advbench`` console script."""

import sys


def run() -> None:
    """Start the CLI; Ctrl-C while it loads (before any command runs) is one line, exit 130."""
    try:
        from advbench.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted while starting; nothing was done\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
