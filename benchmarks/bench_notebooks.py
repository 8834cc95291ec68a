"""Wall time of executing every chapter notebook in the quick profile (papermill).

python benchmarks/bench_notebooks.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from course_lib.cli import chapter_notebooks, run_notebook


def main() -> None:
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for notebook in chapter_notebooks():
            start = time.perf_counter()
            run_notebook(notebook, "quick", output=Path(tmp) / notebook.name)
            total += time.perf_counter() - start
    print(f"all chapters, quick profile: {total:.0f} s")


if __name__ == "__main__":
    main()
