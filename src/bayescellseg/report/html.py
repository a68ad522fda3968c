"""One self-contained HTML evaluation report (figures and images inlined as base64).

The page has no external assets (no scripts, fonts, style sheets or linked images), so it can be
mailed or archived as a single file. All user-provided text (image names, dataset names, paths)
is escaped with :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GalleryEntry:
    """One image shown as a row of panels.

    Attributes:
        title: Heading (e.g. the image name).
        subtitle: One line of scores.
        panels: ``(caption, PNG or JPEG bytes)`` pairs shown side by side.
    """

    title: str
    subtitle: str
    panels: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Table:
    """A simple table.

    Attributes:
        caption: Shown above the table.
        columns: Column headers.
        rows: One sequence of cell values per row (floats are formatted, None/nan shown as "–").
        note: Optional explanation shown under the table.
    """

    caption: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class Section:
    """A section of its own (its heading, text, tables and figures), after the figures.

    Attributes:
        title: Heading.
        paragraphs: Plain-text paragraphs under the heading.
        tables: Tables, in order.
        figures: ``(caption, PNG bytes)`` pairs.
    """

    title: str
    paragraphs: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class ReportContent:
    """Everything the report shows.

    Attributes:
        title: Page title.
        intro: Short paragraphs under the title (plain text).
        warnings: Problems to show prominently (missing predictions, unreadable files, ...).
        tables: Summary tables, in order.
        figures: ``(caption, PNG bytes)`` pairs.
        sections: Sections of their own, after the figures (e.g. the trust signals).
        galleries: Section title -> gallery entries.
        details_table: Large table shown collapsed (per-image scores), or None.
        config: What was run (shown as JSON at the end).
    """

    title: str
    intro: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    tables: tuple[Table, ...] = ()
    figures: tuple[tuple[str, bytes], ...] = ()
    sections: tuple[Section, ...] = ()
    galleries: Mapping[str, Sequence[GalleryEntry]] = field(default_factory=dict)
    details_table: Table | None = None
    config: Mapping[str, Any] = field(default_factory=dict)


_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em;line-height:1.45}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.92em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
caption{text-align:left;font-weight:600;padding:.3em 0}
.note{color:#555;font-size:.88em;max-width:70em}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.5em 1em;margin:.4em 0}
.figs{display:flex;flex-wrap:wrap;gap:1em}
.figs figure{margin:0}.figs img{max-width:560px;border:1px solid #eee}
figcaption{font-size:.88em;color:#444;max-width:560px}
.entry{margin:1em 0 1.6em}.entry h3{margin:.2em 0}
.panels{display:flex;flex-wrap:wrap;gap:.5em}
.panels figure{margin:0}.panels img{width:270px;image-rendering:auto;border:1px solid #ddd}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:.85em}
"""


def png_data_uri(data: bytes) -> str:
    """``data:image/...;base64,...`` URI of PNG bytes (JPEG bytes are recognised and typed so)."""
    mime = "image/jpeg" if data[:3] == b"\xff\xd8\xff" else "image/png"
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def format_cell(value: Any) -> str:
    """Table cell text: floats with 3 decimals (or 4 significant digits when small), else str.

    None and nan become an en dash; booleans become yes/no. The result is HTML-escaped.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        text = f"{value:.4g}" if value != 0 and abs(value) < 0.01 else f"{value:.3f}"
        return html.escape(text)
    return html.escape(str(value))


def render_table(table: Table) -> str:
    """HTML of one :class:`Table`."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{format_cell(v)}</td>" for v in row) + "</tr>" for row in table.rows
    )
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    return (
        f"<table><caption>{html.escape(table.caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"
    )


def _figure(caption: str, png: bytes, width: str = "") -> str:
    alt = html.escape(caption, quote=True)
    style = f' style="width:{width}"' if width else ""
    return (
        f'<figure><img src="{png_data_uri(png)}" alt="{alt}"{style}>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def render_gallery(entries: Sequence[GalleryEntry]) -> str:
    """HTML of gallery entries (one row of panels each)."""
    if not entries:
        return '<p class="note">No images.</p>'
    parts = []
    for entry in entries:
        panels = "".join(_figure(caption, png) for caption, png in entry.panels)
        parts.append(
            f'<div class="entry"><h3>{html.escape(entry.title)}</h3>'
            f'<p class="note">{html.escape(entry.subtitle)}</p>'
            f'<div class="panels">{panels}</div></div>'
        )
    return "".join(parts)


def render_section(section: Section) -> str:
    """HTML of one :class:`Section`."""
    parts = [f"<h2>{html.escape(section.title)}</h2>"]
    parts += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
    parts += [render_table(t) for t in section.tables]
    if section.figures:
        parts.append('<div class="figs">')
        parts += [_figure(caption, png) for caption, png in section.figures]
        parts.append("</div>")
    return "".join(parts)


def render_report(content: ReportContent) -> str:
    """The complete HTML page of an evaluation report.

    Args:
        content: What to show.

    Returns:
        A self-contained HTML document (UTF-8 text).
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(content.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(content.title)}</h1>",
    ]
    parts += [f"<p>{html.escape(p)}</p>" for p in content.intro]
    parts += [f'<div class="warn">{html.escape(w)}</div>' for w in content.warnings]
    if content.tables:
        parts.append("<h2>Scores</h2>")
        parts += [render_table(t) for t in content.tables]
    if content.figures:
        parts.append('<h2>Figures</h2><div class="figs">')
        parts += [_figure(caption, png) for caption, png in content.figures]
        parts.append("</div>")
    parts += [render_section(section) for section in content.sections]
    for section, entries in content.galleries.items():
        parts.append(f"<h2>{html.escape(section)}</h2>{render_gallery(entries)}")
    if content.details_table is not None:
        n = len(content.details_table.rows)
        parts.append(
            f"<h2>Per-image scores</h2><details><summary>Show all {n} images</summary>"
            f"{render_table(content.details_table)}</details>"
        )
    if content.config:
        text = json.dumps(content.config, indent=2, default=str)
        parts.append(f"<h2>Run</h2><pre>{html.escape(text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
