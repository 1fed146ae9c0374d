"""HTML building blocks of report.html shared by its sections: a section, a table, cells, a plotly figure.

Every value from the data is HTML-escaped here or by the caller before it reaches a cell."""

from __future__ import annotations

from html import escape
from typing import Any

import plotly.graph_objects as go

PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def figure_html(figure: go.Figure, div_id: str) -> str:
    # "fig-": a plot's id must not collide with a section's (Plotly draws into the first element with it).
    html: str = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=f"fig-{div_id}", config=PLOT_CONFIG
    )
    return f'<div class="figure">{html}</div>'


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>{body}</section>\n'


def table(headers: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    """Headers are escaped; a cell is used as is when it starts with <td, else wrapped in <td>."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for index, row in enumerate(rows):
        css = classes[index] if classes and classes[index] else ""
        cells = "".join(cell if cell.startswith("<td") else f"<td>{cell}</td>" for cell in row)
        body.append(f'<tr class="{css}">{cells}</tr>' if css else f"<tr>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def num_cell(value: Any) -> str:
    return f'<td class="num">{escape(str(value))}</td>'


def estimate_cell(estimate: dict[str, Any] | None, signed: bool = False, warning: str | None = None) -> str:
    """value and [ci_low, ci_high] (when known); `warning` (escaped) marks the cell."""
    if estimate is None or estimate.get("value") is None:
        return num_cell("-")
    spec = "+.3f" if signed else ".3f"
    text = escape(format(estimate["value"], spec))
    if estimate.get("ci_low") is not None and estimate.get("ci_high") is not None:
        text += f"<br><span class='ci'>[{format(estimate['ci_low'], spec)}, {format(estimate['ci_high'], spec)}]</span>"
    return f'<td class="num">{text}{warning_mark(warning)}</td>'


def warning_mark(warning: str | None) -> str:
    if not warning:
        return ""
    return f"<br><span class='warn' title='{escape(warning, quote=True)}'>&#9888; {escape(warning)}</span>"
