"""One self-contained HTML page of sections: text, embedded PNG figures and tables.

The page needs no server and no network: figures are base64 ``data:`` URIs, the style is
inline, there is no JavaScript and no external link; every text and table cell is escaped.
"""

from __future__ import annotations

import base64
import html
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from xspecvae.files import write_atomic

__all__ = ["Section", "write_report"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.1em; }
.subtitle { color: #666; margin-top: 0; }
nav { background: #f5f5f5; padding: 0.5em 1.5em; border-radius: 4px; }
section { margin-top: 2.5em; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #eee; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
"""


class Section(NamedTuple):
    """A part of the report: ``text`` (paragraphs separated by blank lines), ``figures`` (PNG
    paths) with optional ``captions`` (one per figure), and a ``table`` (a list of row dicts,
    or a dict of equal-length columns)."""

    title: str
    text: str = ""
    figures: Sequence[str | os.PathLike] = ()
    table: Sequence[Mapping] | Mapping[str, Sequence] | None = None
    captions: Sequence[str] = ()


def write_report(
    path: str | os.PathLike, title: str, sections: Sequence[Section], *, subtitle: str = ""
) -> Path:
    """Write ``sections`` as one self-contained HTML page at ``path`` (atomically) with a
    table of contents; raises :class:`FileNotFoundError` naming a missing figure before
    anything is written."""
    body = [f"<h1>{_escape(title)}</h1>"]
    if subtitle:
        body.append(f'<p class="subtitle">{_escape(subtitle)}</p>')
    contents = "".join(
        f'<li><a href="#section-{i}">{_escape(section.title)}</a></li>'
        for i, section in enumerate(sections, 1)
    )
    body.append(f"<nav><h2>Contents</h2><ol>{contents}</ol></nav>")
    body.extend(_section(i, section) for i, section in enumerate(sections, 1))
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    return write_atomic(path, page.encode("utf-8"))


def _escape(text: object) -> str:
    return html.escape(str(text), quote=True)


def _section(number: int, section: Section) -> str:
    if section.captions and len(section.captions) != len(section.figures):
        raise ValueError(
            f"section {section.title!r}: {len(section.captions)} captions for "
            f"{len(section.figures)} figures"
        )
    parts = [f'<section id="section-{number}">', f"<h2>{_escape(section.title)}</h2>"]
    parts.extend(
        f"<p>{_escape(paragraph.strip())}</p>"
        for paragraph in section.text.split("\n\n")
        if paragraph.strip()
    )
    captions = section.captions or [""] * len(section.figures)
    for figure, caption in zip(section.figures, captions, strict=True):
        parts.append(_figure(figure, caption))
    if section.table is not None:
        parts.append(_table(section.table))
    parts.append("</section>")
    return "\n".join(parts)


def _figure(path: str | os.PathLike, caption: str) -> str:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"report figure not found: {path}")
    data = path.read_bytes()
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError(f"report figure is not a PNG: {path}")
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    alt = _escape(caption or path.name)
    text = f"<figcaption>{_escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{alt}">{text}</figure>'


def _table(table: Sequence[Mapping] | Mapping[str, Sequence]) -> str:
    """Rows of dicts (columns in order of first appearance, blanks where a row lacks one) or
    a dict of equal-length columns, as an HTML table."""
    if isinstance(table, Mapping):
        lengths = {name: len(column) for name, column in table.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"table columns of unequal lengths: {lengths}")
        columns = list(table)
        rows = [dict(zip(columns, cells, strict=True)) for cells in zip(*table.values())]
    else:
        rows = list(table)
        columns = list(dict.fromkeys(name for row in rows for name in row))
    head = "".join(f"<th>{_escape(name)}</th>" for name in columns)
    lines = [f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>"]
    for row in rows:
        cells = "".join(_cell(row.get(name)) for name in columns)
        lines.append(f"<tr>{cells}</tr>")
    lines.append("</tbody>\n</table>")
    return "\n".join(lines)


def _cell(value: object) -> str:
    """A table cell: numbers right-aligned, floats to 4 significant digits, None blank."""
    if value is None:
        return "<td></td>"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return f'<td class="number">{int(value)}</td>'
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
        text = f"{value:.4g}" if math.isfinite(value) else str(value)
        return f'<td class="number">{text}</td>'
    return f"<td>{_escape(value)}</td>"
