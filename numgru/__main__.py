"""`python -m numgru ...`: the same command line as the `numgru` console script."""

import sys

from .cli import main

sys.exit(main())
