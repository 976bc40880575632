"""tinyvae: convolutional VAEs from scratch in NumPy, with numba kernels.

Layout is NHWC throughout. See README.md for a tour and lessons/ for the course.
"""
__version__ = "0.1.0"
