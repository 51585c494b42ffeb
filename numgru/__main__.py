"""`python -m numgru ...`: the same command line as the `numgru` console script."""

import sys

from .cli.commands import main

sys.exit(main())
