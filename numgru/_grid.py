"""DESIGN.md's benchmark grid, in one place for `numgru bench` and benchmarks/."""

GRID = {  # name: (batch, steps, input, hidden, layers)
    "seed": (5, 10, 10, 20, 1),
    "stream": (1, 100, 64, 128, 1),
    "medium": (32, 100, 64, 256, 1),
    "large": (64, 50, 256, 512, 1),
    "long": (16, 500, 32, 128, 2),
}
