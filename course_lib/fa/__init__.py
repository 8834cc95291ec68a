"""The Persian part of the book: a Sphinx extension (``_config.yml``: extra_extensions).

Every Persian page reads two data files: ``book/fa/glossary.yml`` (the course's terms,
English and Persian; :mod:`.glossary`) and ``book/fa/results.yml`` (which saved metrics
each chapter page shows, and how; :mod:`.spec`). Tables and figures are drawn from
``results/<chapter>.json`` when the book is built (:mod:`.figures`, :mod:`.sphinx_ext`).
"""

from __future__ import annotations


def setup(app) -> dict:
    """Sphinx entry point (imports Sphinx only when the book is built)."""
    from . import sphinx_ext

    return sphinx_ext.setup(app)
