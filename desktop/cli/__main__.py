import sys

from layerlift.desktop.cli import main

sys.exit(main())
