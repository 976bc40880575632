"""The tinyvae course: eleven runnable chapters, ``python -m lessons.l01_dense`` to
``python -m lessons.l11_capstone``, with exercise copies (``lessons.exercises``)
and a checker (``lessons.check``). See lessons/README.md."""
