"""``python -m atelier`` : voir :mod:`atelier.cli`."""

import sys

from .cli import main

sys.exit(main())
