"""``python -m course_lib.grading``: the same as ``course grade``."""

import sys

from .pipeline import main

sys.exit(main())
