"""numgru's version, a leaf that the package and the files it writes both read."""

__version__ = "0.1.0"
