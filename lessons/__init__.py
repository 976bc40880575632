"""The tinyvae course: ten runnable chapters, ``python -m lessons.l01_dense`` to
``python -m lessons.l10_evaluating``. See lessons/README.md."""
