"""The frozen executable's entry point: the `layerlift` command line (and, with no
arguments, the tray app), exactly as the `layerlift` console script runs it.

`freeze_support` comes first so that, should a library ever start a worker process with
multiprocessing's spawn method, the child re-enters here as a worker instead of a second
LayerLift.
"""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from layerlift.desktop.cli import main

    sys.exit(main())
