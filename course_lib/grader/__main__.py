"""``python -m course_lib.grader``: the same as ``course grade``."""

import sys

from .pipeline import main

sys.exit(main())
