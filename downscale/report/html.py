"""Assemble the report as one self-contained HTML page: inline CSS, images as base64 PNG data URIs, no
script and no external reference, so it opens offline and can be mailed as a single file.

Every figure is ``<figure id="fig-NAME" data-figure="NAME">`` with an ``<img>`` and a ``<figcaption>``;
the ``<body data-figures="…">`` attribute lists every NAME, so a program can check that each expected
figure is present. Sections come in the order given (the summary first).

Example::

    >>> page = render_document("Validation report", [Section("summary", "Summary", "", [table])], "v0.1")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from downscale.report.tables import Table


@dataclass(frozen=True)
class FigureBlock:
    """One embedded figure: ``name`` (its id is ``fig-{name}``), a title, a caption and the PNG as base64."""

    name: str
    title: str
    caption: str
    png_base64: str


@dataclass(frozen=True)
class Section:
    """A titled part of the report: an introduction and its tables and figures, in order."""

    id: str
    title: str
    intro: str
    items: list[FigureBlock | Table] = field(default_factory=list)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1d1f;
       margin: 0 auto; max-width: 1240px; padding: 0 24px 48px; line-height: 1.45; }
header { border-bottom: 2px solid #1f5f99; margin-bottom: 8px; }
h1 { font-size: 1.7em; margin: 20px 0 4px; } h2 { color: #1f5f99; margin-top: 36px; border-bottom: 1px solid #ccd; }
.subtitle { color: #555; margin: 0 0 12px; }
nav { font-size: 0.92em; margin: 8px 0 12px; } nav a { margin-right: 14px; color: #1f5f99; }
table { border-collapse: collapse; margin: 12px 0 20px; font-size: 0.9em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; color: #333; }
th, td { border: 1px solid #d0d4dc; padding: 4px 9px; text-align: right; vertical-align: top; }
th { background: #eef2f7; } td:first-child, th:first-child { text-align: left; }
tr:nth-child(even) td { background: #fafbfc; }
td.pass { background: #d9f2dd !important; color: #145a22; font-weight: 600; }
td.miss { background: #fbe0e0 !important; color: #8a1c1c; font-weight: 600; }
table.kv th { text-align: left; }
table.kv td { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.92em;
              word-break: break-all; max-width: 820px; }
figure { margin: 18px 0 28px; } figure img { max-width: 100%; height: auto; border: 1px solid #e3e6ea; }
figcaption { font-size: 0.9em; color: #333; margin-top: 4px; max-width: 1000px; }
figcaption b { color: #111; }
.intro { color: #333; max-width: 1000px; }
"""


def render_table(table: Table) -> str:
    """A :class:`Table` as an HTML ``<table>`` (pass/miss cells get a class and a tooltip)."""
    kv = " kv" if table.header == ["name", "value"] else ""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.header)
    body = []
    for row in table.rows:
        cells = []
        for c in row:
            attrs = f' class="{c.status}"' if c.status else ""
            if c.title or c.status:
                attrs += f' title="{escape(c.title or c.status)}"'
            cells.append(f"<td{attrs}>{escape(c.text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table id="{escape(table.id)}" class="table{kv}"><caption>{escape(table.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def render_figure(block: FigureBlock) -> str:
    """A :class:`FigureBlock` as ``<figure>`` with an embedded PNG and its caption."""
    name = escape(block.name)
    return (f'<figure id="fig-{name}" data-figure="{name}">'
            f'<img alt="{escape(block.title)}" src="data:image/png;base64,{block.png_base64}">'
            f"<figcaption><b>{escape(block.title)}.</b> {escape(block.caption)}</figcaption></figure>")


def render_document(title: str, sections: list[Section], subtitle: str = "", meta: dict[str, str] | None = None) -> str:
    """The whole page: a header, a table of contents and the sections in order; ``meta``: ``<meta name content>``
    pairs for programs (e.g. which evaluation the page shows)."""
    figures = [i.name for s in sections for i in s.items if isinstance(i, FigureBlock)]
    nav = "".join(f'<a href="#{escape(s.id)}">{escape(s.title)}</a>' for s in sections)
    parts = []
    for s in sections:
        items = "".join(render_figure(i) if isinstance(i, FigureBlock) else render_table(i) for i in s.items)
        intro = f'<p class="intro">{escape(s.intro)}</p>' if s.intro else ""
        parts.append(f'<section id="{escape(s.id)}"><h2>{escape(s.title)}</h2>{intro}{items}</section>')
    tags = "".join(f'<meta name="{escape(k)}" content="{escape(v)}">' for k, v in (meta or {}).items())
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{tags}<style>{CSS}</style></head>'
            f'<body data-figures="{escape(" ".join(figures))}">'
            f'<header><h1>{escape(title)}</h1><p class="subtitle">{escape(subtitle)}</p><nav>{nav}</nav></header>'
            f"<main>{''.join(parts)}</main></body></html>\n")
