"""``python -m tinyvae``: see :mod:`tinyvae.cli`."""
import sys

from .cli import main

sys.exit(main())
