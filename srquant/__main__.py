"""``python -m srquant``: the same command line as the ``srquant`` script."""
import sys

from .cli import main

sys.exit(main())
