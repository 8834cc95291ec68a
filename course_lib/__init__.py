"""course_lib: the shared code of the course "Efficient deep learning for embedded hardware".

One concept per module: ``data`` (CIFAR-10), ``models``, ``train``, ``measure`` (params,
MACs, latency), ``results`` (saved full-profile results), ``profiles`` (quick/full
settings), ``plots`` and ``report`` (what notebooks show), ``cli`` (the ``course`` command),
``prune/`` (chapter 2), ``nas/`` (chapter 4) and ``grading`` (nbgrader checks and tolerances).
"""

__version__ = "0.1.0"
