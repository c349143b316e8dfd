"""``python -m rerund``: the same command line as the ``rerund`` script."""

import sys

from rerund.cli.main import main

sys.exit(main())
