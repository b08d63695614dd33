"""Render the report's blocks as one self-contained HTML page (`report.html`).

Everything is inline: the CSS, and every plot as a base64 PNG data URI (or inline SVG), so the
file can be mailed, archived or opened offline. The page has no script and loads nothing from
the network. Print styles lay it out on landscape A4 with figures and table rows kept whole.
"""

from __future__ import annotations

import base64
import html as _html
from typing import Mapping, Sequence

from cnnbench.report.blocks import Block, Bullets, Figure, Heading, Para, Table

__all__ = ["render_html", "CSS"]

CSS = """
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bad: #8a1c1c; --badbg: #fdecec;
        --warnbg: #fff8e1; --head: #f3f5f7; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--fg); margin: 0 auto; padding: 1.5rem 2rem 4rem; max-width: 1280px; }
h1 { font-size: 1.8rem; margin: 0 0 .6rem; }
h2 { font-size: 1.35rem; margin: 2.2rem 0 .6rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.12rem; margin: 1.6rem 0 .4rem; }
h4 { font-size: 1rem; margin: 1.2rem 0 .3rem; color: var(--muted); }
p, ul { margin: .45rem 0; }
code { font: 12.5px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--head);
       padding: 0 .25em; border-radius: 3px; }
nav.toc { font-size: 13px; background: var(--head); border: 1px solid var(--line); border-radius: 6px;
          padding: .5rem 1rem; margin: 1rem 0; }
nav.toc a { margin-right: 1rem; white-space: nowrap; }
.table-wrap { overflow-x: auto; margin: .4rem 0 1rem; }
table { border-collapse: collapse; font-size: 12.5px; }
caption { caption-side: top; text-align: left; font-style: italic; color: var(--muted); padding: .2rem 0; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; vertical-align: top; }
th { background: var(--head); text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.invalid td { background: var(--badbg); color: var(--bad); }
tr.warn td { background: var(--warnbg); }
p.warn { color: var(--bad); }
figure { margin: 1rem 0 1.6rem; }
figure img, figure svg { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { font-size: 12.5px; color: var(--muted); margin-top: .3rem; }
footer { margin-top: 3rem; font-size: 12px; color: var(--muted); }
@page { size: A4 landscape; margin: 10mm; }
@media print {
  body { padding: 0; max-width: none; font-size: 10pt; }
  nav.toc { display: none; }
  .table-wrap { overflow: visible; }
  table { font-size: 7.5pt; }
  thead { display: table-header-group; }
  tr, figure, img { break-inside: avoid; page-break-inside: avoid; }
  h2, h3, h4, caption { break-after: avoid; page-break-after: avoid; }
  h2 { break-before: auto; }
  figure img { max-height: 17cm; width: auto; }
  a { color: inherit; text-decoration: none; }
  tr.invalid td, tr.warn td, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""


def _e(text: str) -> str:
    return _html.escape(str(text), quote=True)


def _spans(spans) -> str:
    out = []
    for style, text in spans:
        if style == "b":
            out.append(f"<strong>{_e(text)}</strong>")
        elif style == "em":
            out.append(f"<em>{_e(text)}</em>")
        elif style == "code":
            out.append(f"<code>{_e(text)}</code>")
        else:
            out.append(_e(text))
    return "".join(out)


def _table(t: Table) -> str:
    numeric = t.numeric or (False,) * len(t.headers)
    rows = []
    for i, row in enumerate(t.rows):
        cls = t.row_classes[i] if i < len(t.row_classes) and t.row_classes[i] else ""
        cells = "".join(
            f'<td class="num">{_e(c)}</td>' if j < len(numeric) and numeric[j] else f"<td>{_e(c)}</td>"
            for j, c in enumerate(row)
        )
        rows.append(f'<tr class="{cls}">{cells}</tr>' if cls else f"<tr>{cells}</tr>")
    caption = f"<caption>{_e(t.caption)}</caption>" if t.caption else ""
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in t.headers)
    return (
        f'<div class="table-wrap"><table>{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _figure(b: Figure, images: Mapping[str, tuple[str, bytes]]) -> str:
    if b.name not in images:
        return ""
    mime, blob = images[b.name]
    if mime == "image/svg+xml":
        svg = blob.decode("utf-8")
        svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: not allowed inline
        body = f'<div role="img" aria-label="{_e(b.title)}">{svg}</div>'
    else:
        data = base64.b64encode(blob).decode("ascii")
        body = f'<img src="data:{mime};base64,{data}" alt="{_e(b.title)}">'
    return f'<figure id="fig-{_e(b.name)}">{body}<figcaption><strong>{_e(b.title)}.</strong> {_e(b.caption)}</figcaption></figure>'


def render_html(blocks: Sequence[Block], *, images: Mapping[str, tuple[str, bytes]], title: str) -> str:
    """`images` maps a plot name to (MIME type, bytes): "image/png" or "image/svg+xml"."""
    body: list[str] = []
    toc = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f'<h{b.level} id="{_e(b.anchor)}">{_e(b.text)}</h{b.level}>')
            if b.level == 1 and toc:
                links = "".join(f'<a href="#{_e(h.anchor)}">{_e(h.text)}</a>' for h in toc)
                body.append(f'<nav class="toc">{links}</nav>')
        elif isinstance(b, Para):
            cls = f' class="{_e(b.cls)}"' if b.cls else ""
            body.append(f"<p{cls}>{_spans(b.spans)}</p>")
        elif isinstance(b, Table):
            body.append(_table(b))
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_spans(item)}</li>" for item in b.items) + "</ul>")
        elif isinstance(b, Figure):
            body.append(_figure(b, images))
        else:  # pragma: no cover
            raise TypeError(f"unknown block {b!r}")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="cnnbench report">\n'
        f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + '\n<footer>Generated by cnnbench from results files; see "Conventions" for what each figure means.</footer>\n'
        "</body>\n</html>\n"
    )
