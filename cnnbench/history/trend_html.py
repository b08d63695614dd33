"""The static trend page (`bench.py history --html DIR`): one self-contained HTML file.

One inline SVG chart per series (a case on a machine): the per-commit value of the statistic,
the range of its worker processes as a band, change points marked (red: slower, green: faster)
with the commit range and the ratio on hover (SVG <title>), every point's commit on hover.
Charts are grouped by model; two selects (backend, device) filter them with a few lines of
inline JavaScript. No external resource of any kind: the page works from a file or an artifact.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

from cnnbench.core.units import fmt_change, fmt_ms, fmt_pct
from cnnbench.history.trends import Trend
from cnnbench.core.errors import UserError
from cnnbench.core.safeio import atomic_write

__all__ = ["render_page", "write_page", "PAGE_NAME"]

PAGE_NAME = "index.html"
_W, _H = 640, 190
_PAD_L, _PAD_R, _PAD_T, _PAD_B = 58, 12, 12, 26

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#222;max-width:1400px}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
.filters{margin:1rem 0;display:flex;gap:1.5rem;align-items:center}
.grid{display:flex;flex-wrap:wrap;gap:1rem}
figure.trend{margin:0;border:1px solid #e3e3e3;border-radius:6px;padding:.5rem;background:#fff}
figcaption{font-size:.85rem;margin-bottom:.3rem}figcaption code{font-size:.8rem}
.verdict{font-weight:600;padding:0 .35rem;border-radius:3px}
.v-changed{background:#fde2e1}.v-stable{background:#e3f4e3}.v-unstable{background:#fff1c7}.v-insufficient{background:#eee}
.band{fill:#4a78c2;fill-opacity:.18;stroke:none}.line{fill:none;stroke:#2a5aa8;stroke-width:1.5}
.pt{fill:#2a5aa8}.pt:hover{fill:#000}.axis{stroke:#999;stroke-width:1}.tick{font-size:10px;fill:#555}
.cp-slower{fill:#d62728;fill-opacity:.22;stroke:#d62728;stroke-dasharray:4 3}
.cp-faster{fill:#2ca02c;fill-opacity:.22;stroke:#2ca02c;stroke-dasharray:4 3}
.cps{font-size:.8rem;margin:.3rem 0 0 0;padding-left:1.1rem}
.muted{color:#666;font-size:.85rem}
"""

_JS = """
(function(){
  var b=document.getElementById('f-backend'), d=document.getElementById('f-device');
  function apply(){
    var shown=0;
    document.querySelectorAll('figure.trend').forEach(function(f){
      var ok=(!b.value||f.dataset.backend===b.value)&&(!d.value||f.dataset.device===d.value);
      f.style.display=ok?'':'none'; if(ok){shown++;}
    });
    document.querySelectorAll('section.model').forEach(function(s){
      s.style.display=s.querySelector('figure.trend:not([style*="none"])')?'':'none';
    });
    document.getElementById('shown').textContent=shown;
  }
  b.addEventListener('change',apply); d.addEventListener('change',apply); apply();
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _chart(t: Trend) -> str:
    pts = t.series.points
    n = len(pts)
    lows = [p.low_ms for p in pts]
    highs = [p.high_ms for p in pts]
    lo, hi = min(lows), max(highs)
    if hi <= lo:
        lo, hi = lo * 0.95, hi * 1.05 if hi > 0 else 1.0
    pad = (hi - lo) * 0.08
    lo, hi = lo - pad, hi + pad
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def x(i: float) -> float:
        return _PAD_L + (plot_w * (i / (n - 1)) if n > 1 else plot_w / 2)

    def y(v: float) -> float:
        return _PAD_T + plot_h * (1 - (v - lo) / (hi - lo))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" role="img">']
    parts.append(f'<line class="axis" x1="{_PAD_L}" y1="{_PAD_T}" x2="{_PAD_L}" y2="{_H - _PAD_B}"/>')
    parts.append(f'<line class="axis" x1="{_PAD_L}" y1="{_H - _PAD_B}" x2="{_W - _PAD_R}" y2="{_H - _PAD_B}"/>')
    for v in (lo + pad, (lo + hi) / 2, hi - pad):
        parts.append(f'<text class="tick" x="{_PAD_L - 4}" y="{y(v) + 3:.1f}" text-anchor="end">{_e(fmt_ms(v))} ms</text>')
    parts.append(
        f'<text class="tick" x="{_PAD_L}" y="{_H - 8}">{_e(pts[0].commit[:10])}</text>'
        f'<text class="tick" x="{_W - _PAD_R}" y="{_H - 8}" text-anchor="end">{_e(pts[-1].commit[:10])} ({n} commits)</text>'
    )
    for c in t.analysis.change_points:
        before, after = pts[c.index - 1], pts[c.index]
        x0, x1 = x(c.index - 1), x(c.index)
        tip = (
            f"{before.commit[:10]}..{after.commit[:10]}: {fmt_change(c.ratio)} {c.direction} "
            f"(ratio {c.ratio:.3f}, 95% {c.ratio_low:.3f}-{c.ratio_high:.3f}, confidence {c.confidence_text})"
        )
        parts.append(
            f'<rect class="cp-{c.direction}" x="{x0:.1f}" y="{_PAD_T}" width="{max(x1 - x0, 2):.1f}" '
            f'height="{plot_h}"><title>{_e(tip)}</title></rect>'
        )
    if n > 1:
        band = [f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(highs)]
        band += [f"{x(i):.1f},{y(v):.1f}" for i, v in reversed(list(enumerate(lows)))]
        parts.append(f'<polygon class="band" points="{" ".join(band)}"/>')
        line = " ".join(f"{x(i):.1f},{y(p.value_ms):.1f}" for i, p in enumerate(pts))
        parts.append(f'<polyline class="line" points="{line}"/>')
    r = 2.5 if n <= 200 else 1.2
    for i, p in enumerate(pts):
        tip = (
            f"{p.commit} ({p.branch or 'no branch'}, {p.time}): {fmt_ms(p.value_ms)} ms, "
            f"{len(p.figures)} processes {fmt_ms(p.low_ms)}-{fmt_ms(p.high_ms)} ms"
        )
        parts.append(f'<circle class="pt" cx="{x(i):.1f}" cy="{y(p.value_ms):.1f}" r="{r}"><title>{_e(tip)}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


def _figure(t: Trend) -> str:
    s = t.series
    verdict = t.verdict
    css = "insufficient" if verdict == "insufficient data" else verdict
    noise = f", noise {fmt_pct(100.0 * t.analysis.noise)}" if t.analysis.noise is not None else ""
    items = "".join(
        f"<li>{_e(s.points[c.index - 1].commit[:10])}..{_e(s.points[c.index].commit[:10])}: "
        f"{fmt_change(c.ratio)} {c.direction} (confidence {_e(c.confidence_text)})</li>"
        for c in t.analysis.change_points
    )
    return (
        f'<figure class="trend" data-backend="{_e(s.backend or "")}" data-device="{_e(s.device or "")}" '
        f'data-verdict="{_e(verdict)}">'
        f'<figcaption><code>{_e(s.key)}</code> <span class="muted">machine {_e(s.machine)}</span> '
        f'<span class="verdict v-{css}">{_e(verdict)}</span><span class="muted">{_e(noise)}</span></figcaption>'
        + (_chart(t) if s.points else "")
        + (f'<ul class="cps">{items}</ul>' if items else "")
        + "</figure>"
    )


def render_page(trends: Sequence[Trend], *, store: str, statistic: str, branch: str | None, title: str = "cnnbench trends") -> str:
    backends = sorted({t.series.backend or "" for t in trends})
    devices = sorted({t.series.device or "" for t in trends})

    def options(values: list[str]) -> str:
        return '<option value="">all</option>' + "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in values)

    by_model: dict[str, list[Trend]] = {}
    for t in trends:
        by_model.setdefault(t.series.model or "(unknown model)", []).append(t)
    sections = "".join(
        f'<section class="model"><h2>{_e(model)}</h2><div class="grid">{"".join(_figure(t) for t in items)}</div></section>'
        for model, items in by_model.items()
    )
    changed = sum(t.verdict == "changed" for t in trends)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="muted">Store {_e(store)}; branch {_e(branch or "all")}; statistic {_e(statistic)} of each worker '
        f"process's per-call times, per commit the median of its processes (line) and their range (band). "
        f"Change points: e-divisive means with Student's t-test (Otava's method), hover for the commit range. "
        f"{len(trends)} series, {changed} with a change point.</p>"
        f'<div class="filters"><label>backend <select id="f-backend">{options(backends)}</select></label>'
        f'<label>device <select id="f-device">{options(devices)}</select></label>'
        f'<span class="muted"><span id="shown">{len(trends)}</span> shown</span></div>'
        f"{sections}<script>{_JS}</script></body></html>\n"
    )


def write_page(trends: Sequence[Trend], out_dir: str | Path, **kwargs: object) -> Path:
    """Write DIR/index.html (through a temporary file and a rename) and return its path."""

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--html {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--html {out}: cannot create ({exc.strerror or exc})") from exc
    path = out / PAGE_NAME
    atomic_write(path, render_page(trends, **kwargs).encode("utf-8"))  # type: ignore[arg-type]
    return path
