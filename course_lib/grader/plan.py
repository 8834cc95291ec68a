"""Which kernel runs which cell of a submission, and which names cross between them.

A code cell is **trusted** when it is one of the instructor's read-only cells (setup, runs,
tests): its ``grade_id`` is one of the gradebook's source cells and not a solution cell.
What runs for it is the gradebook's source text, whatever the notebook holds (nbgrader
restores edited cells, and puts deleted test cells back with a comment on top). Every other
code cell (solutions, cells the student added) is the **student's**.

- trusted cells run in the referee (the grader's clean kernel); so do the tests;
- student cells run in the student's kernel, which also runs the trusted cells before the
  first student cell (the *preamble*: imports, data, settings) for itself;
- a trusted cell that reads a name only student cells assign gets it from the student
  kernel (a function as a handle, data by value); a name that a trusted cell assigned
  keeps the trusted value even if a student cell rebinds it later (and that is reported);
- a student cell that reads a name last assigned by a trusted cell after the preamble
  gets the referee's value.

Names are found statically (:func:`cell_names`, with ``symtable``): what a cell assigns
at top level or through ``global`` in its functions, and what it or its functions read.
"""

from __future__ import annotations

import symtable
from collections.abc import Iterable
from dataclasses import dataclass, field

from .agent import IPYTHON_NAMES


def cell_names(source: str) -> tuple[set[str], set[str]]:
    """(names the cell may assign, names it may read), for IPython code."""
    assigned, read, _ = _names(source)
    return assigned, read


def imported_names(source: str) -> set[str]:
    """The names a cell binds only by ``import`` (rebinding them to the same module)."""
    return _names(source)[2]


def _names(source: str) -> tuple[set[str], set[str], set[str]]:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        code = TransformerManager().transform_cell(source)
        table = symtable.symtable(code, "<cell>", "exec")
    except (SyntaxError, ValueError):  # the cell fails when it runs: no names
        return set(), set(), set()
    assigned: set[str] = set()
    read: set[str] = set()
    imported: set[str] = set()
    for symbol in table.get_symbols():
        name = symbol.get_name()
        if symbol.is_assigned() or symbol.is_imported() or symbol.is_namespace():
            assigned.add(name)
        if symbol.is_imported() and not symbol.is_assigned() and not symbol.is_namespace():
            imported.add(name)
        if symbol.is_referenced():
            read.add(name)
    for child in _descendants(table):
        for symbol in child.get_symbols():
            if not symbol.is_global():
                continue
            if symbol.is_declared_global() and symbol.is_assigned():
                assigned.add(symbol.get_name())
            if symbol.is_referenced():
                read.add(symbol.get_name())
    return assigned - IPYTHON_NAMES, read - IPYTHON_NAMES, imported


def _descendants(table: symtable.SymbolTable) -> Iterable[symtable.SymbolTable]:
    for child in table.get_children():
        yield child
        yield from _descendants(child)


@dataclass
class CellPlan:
    """One code cell: who runs it and what it does with names."""

    index: int
    grade_id: str | None
    trusted: bool
    test: bool
    points: float
    assigned: set[str] = field(default_factory=set)
    read: set[str] = field(default_factory=set)
    preamble: bool = False
    imported: set[str] = field(default_factory=set)
    code: str = ""


@dataclass
class Plan:
    """The cells of one submission, in order, and the name bookkeeping between kernels."""

    cells: list[CellPlan]
    trusted_by: dict[str, int] = field(default_factory=dict)
    student_by: dict[str, int] = field(default_factory=dict)
    last_by: dict[str, int] = field(default_factory=dict)
    pulled: dict[str, int] = field(default_factory=dict)

    def for_referee(self, cell: CellPlan) -> tuple[list[str], list[tuple[str, int]]]:
        """Before the referee runs ``cell``: (names to fetch from the student kernel,
        [(name, student cell)] rebindings of trusted names that it ignores)."""
        fetch = sorted(n for n in cell.read if n in self.student_by and n not in self.trusted_by)
        by_index = self.cells_by_index
        shadowed = sorted(
            (n, self.last_by[n])
            for n in cell.read - cell.assigned
            if n in self.trusted_by
            and self.last_by[n] != self.trusted_by[n]
            and n not in by_index[self.last_by[n]].imported
        )
        return fetch, shadowed

    def for_student(self, cell: CellPlan) -> list[str]:
        """Before the student kernel runs ``cell``: names to pull from the referee."""
        names = []
        for name in sorted(cell.read):
            source = self.last_by.get(name)
            if source is None or source != self.trusted_by.get(name):
                continue  # the student kernel's own value
            if self.cells_by_index[source].preamble or self.pulled.get(name) == source:
                continue  # it computed this itself, or has it already
            names.append(name)
            self.pulled[name] = source
        return names

    def snapshot_names(self, cell: CellPlan) -> list[str]:
        """Names a test cell needs from the referee when the student kernel re-runs it."""
        return sorted(
            n
            for n in cell.read
            if n in self.trusted_by
            and self.last_by[n] == self.trusted_by[n]
            and not self.cells_by_index[self.trusted_by[n]].preamble
        )

    def ran(self, cell: CellPlan) -> None:
        """Record the names ``cell`` assigned (call after it ran, in notebook order)."""
        for name in cell.assigned:
            self.last_by[name] = cell.index
            (self.trusted_by if cell.trusted else self.student_by)[name] = cell.index

    @property
    def cells_by_index(self) -> dict[int, CellPlan]:
        return {c.index: c for c in self.cells}


def make_plan(
    nb, source_cells: dict[str, str], points: dict[str, float], solutions: set[str]
) -> Plan:
    """The plan of notebook ``nb``. ``source_cells``: grade_id -> source text of the
    instructor's read-only cells; ``points``: grade_id -> points of autograded tests;
    ``solutions``: grade_ids of solution cells."""
    cells = []
    for index, cell in enumerate(nb.cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        trusted = grade_id is not None and grade_id not in solutions and grade_id in source_cells
        code = source_cells[grade_id] if trusted else cell.source
        if cell.cell_type != "code" or not code.strip():
            continue
        assigned, read, imported = _names(code)
        cell_plan = CellPlan(
            index, grade_id, trusted, trusted and grade_id in points, points.get(grade_id, 0.0)
        )
        cell_plan.assigned, cell_plan.read, cell_plan.imported, cell_plan.code = (
            assigned,
            read,
            imported,
            code,
        )
        cells.append(cell_plan)
    for cell in cells:
        if not cell.trusted or cell.test:
            break
        cell.preamble = True
    return Plan(cells)
