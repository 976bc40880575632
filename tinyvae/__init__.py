"""tinyvae: convolutional VAEs from scratch in NumPy, with numba kernels.

Layout is NHWC throughout. See README.md for a tour and lessons/ for the course.
"""
from ._numba_cache import ensure_writable_cache

ensure_writable_cache()  # before any module compiles an @njit(cache=True) kernel
__version__ = "0.1.0"
