"""Rewriting one section of a markdown document: what the benchmarks' ``--markdown`` options do."""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, heading: str, text: str, new_document: str = "") -> None:
    """Replace the section of ``path`` that starts with the line ``heading`` (up to the next ``## `` heading or
    the end) with ``text``, which starts with that heading; append ``text`` when there is no such section. A
    missing file starts as ``new_document``."""
    doc = path.read_text() if path.exists() else new_document
    pattern = re.compile(rf"{re.escape(heading)}\n.*?(?=\n## |\Z)", re.S)
    body = text.rstrip("\n") + "\n"
    doc = pattern.sub(lambda _: body, doc) if pattern.search(doc) else doc.rstrip("\n") + "\n\n" + body
    path.write_text(doc)
