"""Keep the memory a training step frees for the next step, instead of
giving it back to the kernel and faulting it in again.

Every step allocates and frees the same arrays (im2col matrices of up to
11 MB, activations, gradients). glibc's malloc gives the free top of its
heap back to the kernel once more of it lies free than twice its mmap
threshold, a threshold it raises only as far as the largest block it has
seen freed; the next step takes the pages again, each one a page fault
that the kernel zeroes (what that costs: benchmarks/README.md).
:func:`keep_freed_memory` sets both thresholds at once to where glibc's own
rule tops out: 32 MiB, and at most 64 MiB of free heap kept at its top.
The numbers computed do not change.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3          # mallopt's parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 * 2**20                          # blocks from here up get their own mapping
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD                  # free heap kept at the top, at most


def keep_freed_memory():
    """Have glibc's malloc keep up to 64 MiB of freed heap and serve blocks under 32 MiB
    from it, for the rest of the process. Returns True where it did so (glibc), False
    where there is no ``mallopt`` to ask (macOS, other C libraries)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
