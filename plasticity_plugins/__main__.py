"""``python -m plasticity_plugins``: the command line."""

import sys

from .cli import main

sys.exit(main())
