"""``python -m course_lib.grading``: kept for scripts written before the runner moved to
:mod:`course_lib.grader`; the same as ``python -m course_lib.grader`` and ``course grade``."""

import sys

from ..grader.pipeline import main

sys.exit(main())
