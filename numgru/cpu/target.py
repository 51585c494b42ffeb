"""Which CPU code path the compiled kernels take: vector width, registers and tile height, read
from the target that Numba compiles for (not from a table of CPU names).

Numba compiles for `NUMBA_CPU_NAME` (default: the host CPU, as LLVM names it) with the features
of `NUMBA_CPU_FEATURES` (default: the host's). The path is found by asking LLVM to compile a
16-lane float32 multiply-add for that target and reading the assembly it emits: 512-bit
registers (zmm) with fused multiply-add give "avx512", 256-bit (ymm) with fused multiply-add
"avx2", anything else (SSE2-only x86, AVX without FMA, aarch64's NEON, ...) "portable", which
uses 16-byte vectors and lets LLVM fuse the multiply-add where the target can. When
NUMBA_CPU_NAME is set but NUMBA_CPU_FEATURES is not, Numba keeps the host's features; the path
then follows the narrower of the named CPU and those features, so that `NUMBA_CPU_NAME=haswell`
on an AVX-512 machine selects the AVX2 tiles (set NUMBA_CPU_FEATURES="" as well to keep LLVM
itself from using AVX-512 instructions elsewhere).

The path is a pure function of the target, and Numba's kernel cache is keyed by the same target
(its CPU name and feature string), so cached kernels always match the layouts chosen here.
"""

import platform
from dataclasses import dataclass


@dataclass(frozen=True)
class CodePath:
    name: str  # "avx512", "avx2" or "portable"
    vector_bytes: int  # bytes per vector of the register tile: 64, 32 or 16
    registers: int  # vector registers the tile may plan with
    rows: int  # rows of the largest register tile (3 accumulators per row)
    fused: bool  # the tile's multiply-add is one rounding (llvm.fma); else llvm.fmuladd
    cpu: str  # the CPU name Numba compiles for
    reason: str  # one line: why this path

    def vector_length(self, itemsize):
        """Elements per vector for an element size in bytes (float32: 4, float64: 8)."""
        return self.vector_bytes // itemsize


def _numba_target():
    """(cpu name, feature string, whether the features are the host's) that Numba compiles for."""
    import llvmlite.binding as ll
    from numba.core import config

    name = config.CPU_NAME or ll.get_host_cpu_name()
    if config.CPU_FEATURES is not None:
        return name, config.CPU_FEATURES, False
    return name, ll.get_host_cpu_features().flatten(), True


def _probe(cpu, features):
    """(vector bits, fused) of LLVM's code for <16 x float> multiply-adds on this target, read
    from the emitted assembly; None when it cannot be asked (an llvmlite that differs)."""
    try:
        import llvmlite.binding as ll
        from llvmlite import ir

        ll.initialize_native_target()
        ll.initialize_native_asmprinter()
        module = ir.Module(name="numgru_probe")
        module.triple = ll.get_process_triple()
        vec = ir.VectorType(ir.FloatType(), 16)
        ptr = ir.PointerType()
        fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [ptr, ptr, ptr]), "probe")
        builder = ir.IRBuilder(fn.append_basic_block())
        a, b, c = (builder.load(arg, typ=vec) for arg in fn.args)
        fmuladd = ir.Function(module, ir.FunctionType(vec, [vec, vec, vec]),
                              "llvm.fmuladd.v16f32")
        builder.store(builder.call(fmuladd, [a, b, c]), fn.args[2])
        builder.ret_void()
        tm = ll.Target.from_triple(module.triple).create_target_machine(
            cpu=cpu, features=features, opt=2)
        asm = tm.emit_assembly(ll.parse_assembly(str(module))).lower()
    except Exception:
        return None
    bits = 512 if "zmm" in asm else 256 if "ymm" in asm else 128
    fused = any(op in asm for op in ("vfmadd", "vfmsub", "fmla", "vfnmadd", "xvmadd", "vfmacc"))
    fused = fused and "fmaf" not in asm  # a libm call per element is no fused instruction
    return bits, fused


def _from_features(features):
    """(vector bits, fused) from a feature string alone (when LLVM cannot be asked)."""
    flags = {f[1:] for f in features.split(",") if f.startswith("+")}
    fused = "fma" in flags or platform.machine().lower() in ("aarch64", "arm64")
    if "avx512f" in flags and fused:
        return 512, True
    if "avx2" in flags and fused:
        return 256, True
    return 128, fused


def _choose():
    name, features, host_features = _numba_target()
    found = _probe(name, features) or _from_features(features)
    why = f"LLVM target {name!r}" + (" (the host's features)" if host_features else
                                     f" (NUMBA_CPU_FEATURES={features!r})")
    from numba.core import config

    if config.CPU_NAME is not None and host_features:
        # Numba keeps the host's features for a named CPU: follow the narrower of the two.
        named = _probe(name, "") or found
        if named[0] < found[0]:
            why = (f"NUMBA_CPU_NAME={name!r}: the named CPU's {named[0]}-bit vectors (the host's "
                   f"features would allow {found[0]})")
            found = named
    bits, fused = found
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
    if bits >= 512 and fused:
        return CodePath("avx512", 64, 32, 8, True, name,
                        f"{why}: 512-bit vectors with fused multiply-add, 32 registers")
    if bits >= 256 and fused:
        return CodePath("avx2", 32, 16, 4, True, name,
                        f"{why}: 256-bit vectors with fused multiply-add, 16 registers")
    registers = 16 if x86 else 32
    return CodePath("portable", 16, registers, 4 if registers == 16 else 8, False, name,
                    f"{why}: {bits}-bit vectors{' with' if fused else ' without'} fused "
                    f"multiply-add; the portable 16-byte tiles, {registers} registers")


PATH = _choose()
