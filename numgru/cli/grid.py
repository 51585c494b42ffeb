"""DESIGN.md's benchmark grid, in one place for `numgru bench` and benchmarks/."""

GRID = {  # name: (batch, steps, input, hidden, layers)
    "seed": (5, 10, 10, 20, 1),
    "stream": (1, 100, 64, 128, 1),
    "medium": (32, 100, 64, 256, 1),
    "large": (64, 50, 256, 512, 1),
    "long": (16, 500, 32, 128, 2),
}


def gemm_flops(B, T, I, H, layers, directions=1):
    """Forward GEMM FLOPs of a stack of GRU layers: 2·B·T·(I_k + H)·3H per layer and direction,
    I_k the layer's input (I, then directions·H). Training (forward and backward) is 3 times
    this."""
    total = 0
    for k in range(layers):
        in_k = I if k == 0 else directions * H
        total += directions * 2 * B * T * (in_k + H) * 3 * H
    return total
