"""The name by which code in the kernels reaches the grader's link (kept for the code that
names it in a string): the silent cells :mod:`.refereed` runs in each kernel
(``course_lib.grader.remote.start(...)``, see :mod:`.agent`), and
:func:`course_lib.grading.checks.type_name`, which looks :class:`~.proxy.Proxy` up here
in ``sys.modules`` so as never to import the runner. Nothing else should import it.
"""

from .agent import arm, fetch, offline, pull, release, serve, snapshot, start
from .proxy import Proxy

__all__ = ["Proxy", "arm", "fetch", "offline", "pull", "release", "serve", "snapshot", "start"]
