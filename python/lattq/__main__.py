"""``python -m lattq``: the lattq command line (see lattq.cli)."""

import sys

from .cli import main

sys.exit(main())
