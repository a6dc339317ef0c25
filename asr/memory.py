"""Process memory that does not grow with the length of what is transcribed.

Two native caches make a CPU process transcribing a long file or a long stream grow by 100-200 MB over
two hours although it holds nothing more (``benchmarks/long_file_memory.py``): oneDNN keeps a compiled
kernel ("primitive") for every input shape it has seen, up to 1024 of them, and every window of a long
recording has a shape of its own; and glibc keeps the heap pages of freed tensors of ever new sizes
instead of giving them back. :func:`bound_kernel_cache` caps the first (set before the process runs its
first convolution or LSTM), :func:`release_free_memory` returns the second's free pages to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

KERNEL_CACHE_CAPACITY = 64  # oneDNN kernels kept: a few recent shapes, a few MB, instead of 1024 shapes
_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"  # read by oneDNN when it first compiles a kernel


def bound_kernel_cache(capacity: int = KERNEL_CACHE_CAPACITY) -> None:
    """Cap oneDNN's kernel cache at ``capacity`` kernels, unless the environment already sets it; no
    effect once this process has compiled its first oneDNN kernel."""
    os.environ.setdefault(_CACHE_VARIABLE, str(capacity))


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """Give the free pages of the C heap back to the system (glibc's ``malloc_trim``; about a
    millisecond; nothing elsewhere)."""
    if _TRIM is not None:
        _TRIM(0)
