"""How much memory this process may still take: for refusing, before allocating, what would not fit
(a training cache, the arrays a file declares) with a message instead of an allocation failure
or the kernel's out-of-memory killer.

The figure is the kernel's own estimate of memory available without swapping (MemAvailable in
/proc/meminfo), lowered to what a cgroup limit leaves (memory.max - memory.current, cgroup v2;
limit_in_bytes - usage_in_bytes, v1): inside a container the machine's free memory is not this
process's to take. Where neither can be read (not Linux), the free physical pages. None when
nothing can be read: callers then check nothing.

NUMGRU_MEMORY_LIMIT (bytes, with an optional K, M, G or T suffix) caps the figure: a job that
shares its machine can keep numgru to its own share.
"""

import os

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _meminfo_available():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    if not text or text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _cgroup_left():
    """What the cgroup limit of this process leaves, or None without a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # v2: one unified hierarchy
            base = os.path.join("/sys/fs/cgroup", rel)
            limit, used = _read_int(os.path.join(base, "memory.max")), \
                _read_int(os.path.join(base, "memory.current"))
        elif "memory" in controllers.split(","):
            base = os.path.join("/sys/fs/cgroup/memory", rel)
            limit, used = _read_int(os.path.join(base, "memory.limit_in_bytes")), \
                _read_int(os.path.join(base, "memory.usage_in_bytes"))
            if limit is not None and limit >= 1 << 60:  # v1's "no limit"
                limit = None
        else:
            continue
        if limit is not None:
            return max(0, limit - (used or 0))
    return None


def _env_limit():
    text = os.environ.get("NUMGRU_MEMORY_LIMIT", "").strip().upper().removesuffix("B")
    if not text:
        return None
    unit = text[-1] if text[-1] in "KMGT" else ""
    number = text[:-1] if unit else text
    try:
        value = float(number) * _UNITS[unit]
    except ValueError:
        raise ValueError(f"NUMGRU_MEMORY_LIMIT: expected a number of bytes (optionally with K, M, "
                         f"G or T), got {os.environ['NUMGRU_MEMORY_LIMIT']!r}") from None
    if not value > 0:
        raise ValueError(f"NUMGRU_MEMORY_LIMIT: expected a positive size, got "
                         f"{os.environ['NUMGRU_MEMORY_LIMIT']!r}")
    return int(value)


def available_bytes():
    """Bytes this process may still allocate without swapping (see the module docstring), or
    None when the system does not say."""
    figures = [_meminfo_available(), _cgroup_left(), _env_limit()]
    if figures[0] is None:
        try:
            figures[0] = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            pass
    known = [f for f in figures if f is not None]
    return min(known) if known else None


def beyond(need):
    """None when `need` bytes fit in the memory available (or the system does not say), else
    "more than the <available> of memory available", for the caller's refusal."""
    free = available_bytes()
    if free is None or need <= free:
        return None
    return f"more than the {describe(free)} of memory available"


def describe(n):
    """n bytes for a message: '1.5 GiB (1610612736 bytes)'."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit} ({n} bytes)"
    return f"{n} bytes"
