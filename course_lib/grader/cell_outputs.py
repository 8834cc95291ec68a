"""The outputs the grader itself writes into a graded notebook's cells (see :mod:`.refereed`):
errors for cells that timed out, died or were not run, the notes on tests that passed only
in the student's kernel, and nbgrader's score of a test cell from its outputs.
"""

from __future__ import annotations

import nbformat
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.utils import determine_grade

from .kernels import Reply

#: The note under a test that passed in the student's kernel only, by verdict.
VERDICT_NOTES = {
    "tampering": "\n[grader] This test passed when your notebook ran it in its own kernel, but "
    "failed when the grader ran it in a separate, clean kernel. Your notebook changes what "
    "the tests see.\n",
    "unverifiable": "\n[grader] This test could not be checked: a value could not be sent "
    "between your kernel and the grader's.\n",
}


def error_output(node: NotebookNode, name: str, text: str) -> None:
    """Append an error named ``name`` to the outputs of ``node``."""
    node.outputs.append(
        new_output("error", ename=name, evalue=text, traceback=[f"\x1b[0;31m{name}\x1b[0m: {text}"])
    )


def timeout_output(node: NotebookNode, timeout: float | None) -> None:
    error_output(node, "CellTimeoutError", f"No reply from kernel before timeout ({timeout} s)")


def not_run(node: NotebookNode, why: str) -> None:
    error_output(node, "NotRun", f"This cell was not run: {why}.")


def verdict_note(node: NotebookNode, kind: str) -> None:
    """The note on a test that passed in the student's kernel only (``kind``: a key of
    :data:`VERDICT_NOTES`)."""
    node.outputs.append(new_output("stream", name="stdout", text=VERDICT_NOTES[kind]))


def record_error(node: NotebookNode, reply: Reply) -> None:
    """Like nbgrader's ``Execute``: an error reply whose error is not among the outputs (its
    traceback was hidden) becomes an error output, so that the cell cannot pass."""
    if reply.status != "error":
        return
    if not any(
        o.get("output_type") == "error" and o.get("ename") == reply.ename for o in node.outputs
    ):
        text = reply.evalue or "an error whose traceback was not shown"
        node.outputs.append(new_output("error", ename=reply.ename, evalue=text, traceback=[text]))


def score(node: NotebookNode, outputs: list, reply: Reply) -> float:
    """nbgrader's score of a test cell from its outputs; like nbgrader's ``Execute``, an
    error reply without an error output (a hidden traceback) counts as an error."""
    outputs = list(outputs)
    recorded = any(
        o.get("output_type") == "error" and o.get("ename") == reply.ename for o in outputs
    )
    if reply.status != "ok" and not recorded:
        outputs.append(
            new_output("error", ename=reply.ename or "Error", evalue=reply.evalue, traceback=[])
        )
    probe = nbformat.from_dict(
        {"cell_type": "code", "metadata": node.metadata, "source": node.source, "outputs": outputs}
    )
    points, _ = determine_grade(probe)
    return float(points or 0.0)
