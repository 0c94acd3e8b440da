"""One self-contained HTML report of a scoring run (or a training run) that an analyst reads at a glance.

The document needs no network to view: CSS is inline, there are no scripts, and every plot is
hand-written inline SVG. Hand-written SVG rather than a plotting library: the four chart kinds
here (a stacked histogram on a log axis, a bar timeline, a line chart, and a per-packet strip)
are a few dozen lines each; matplotlib is not a netae dependency, would add tens of MB and a
second or more of import time to render them, and its SVG output (glyphs as paths, one ``<g>``
per artist) is several times larger and harder to style with the page's CSS than the few
``<rect>``/``<path>`` elements written here. The per-packet strips, one per table row, would
also each be a separate figure there.

Everything taken from a capture or a model file (file names, explanations, feature names,
label names) is treated as hostile: it reaches the page only through ``html.escape``. Numbers
are formatted here. Rendering is deterministic: the same run gives the same bytes.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netae.features import feature_label
from netae.incidents import Incidents, human_seconds
from netae.output import community_ids, table_incidents
from netae.protocols import ICMP_PROTOCOLS, PORTED, PROTOCOL_NAMES
from netae.tables import ScoreTable, format_ip, format_ips

if TYPE_CHECKING:
    from netae.modelfile import TrainedModel
    from netae.workflow import ScoreRun, TrainRun

__all__ = ["render_report", "render_training_report"]

Labels = Sequence[frozenset[str] | None]

# Colours: benign blue, attack red, unlabelled grey; flows above the threshold red when unlabelled.
C_BENIGN = "#4c78a8"
C_ATTACK = "#e0453a"
C_UNLABELLED = "#a8a8a8"
C_BELOW = "#8fa9c9"
C_ABOVE = "#e0453a"
C_THRESHOLD = "#222222"
C_TRAIN = "#4c78a8"
C_VAL = "#f08c1a"
C_ALL = "#d9dde3"

_PROTO = PROTOCOL_NAMES
STRIP_MAX_PKTS = 96  # packets drawn per strip; longer flows show a window around the worst packet

_CSS = """
:root { --fg:#1d2330; --muted:#5d6675; --line:#d8dce3; --bg:#f5f6f8; --card:#fff; --red:#c62828; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  color:var(--fg); background:var(--bg); }
header { background:#1d2330; color:#fff; padding:14px 28px; }
header h1 { margin:0; font-size:20px; font-weight:600; }
header .sub { color:#b9c0cc; font-size:13px; margin-top:2px; }
nav { margin-top:8px; font-size:13px; }
nav a { color:#cfe0ff; margin-right:16px; text-decoration:none; }
main { max-width:1240px; margin:0 auto; padding:8px 24px 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:14px 20px 18px;
  margin-top:16px; }
h2 { margin:0 0 10px; font-size:17px; font-weight:600; }
h3 { margin:14px 0 6px; font-size:14px; font-weight:600; color:var(--muted); }
p.note { color:var(--muted); margin:4px 0 8px; font-size:13px; }
.tiles { display:flex; flex-wrap:wrap; gap:10px; }
.tile { border:1px solid var(--line); border-radius:6px; padding:8px 14px; min-width:130px; }
.tile .v { font-size:22px; font-weight:600; font-variant-numeric:tabular-nums; }
.tile .k { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.tile.alert .v { color:var(--red); }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { text-align:left; padding:4px 10px 4px 0; vertical-align:top; border-bottom:1px solid #eceef2; }
th { font-size:12px; color:var(--muted); font-weight:600; border-bottom:1px solid var(--line); }
td.num, th.num { text-align:right; white-space:nowrap; }
table.flows, table.list { width:100%; }
table.flows td, table.list td { padding-top:6px; padding-bottom:6px; }
table.flows .key, table.list .key { font-weight:600; font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;
  font-size:12.5px;
  white-space:nowrap; }
.file { color:var(--muted); font-size:11.5px; font-family:inherit; }
.score { font-weight:600; color:var(--red); }
.why { font-size:12.5px; }
td.flow { max-width:300px; }
td.when { white-space:nowrap; }
.lab { display:inline-block; padding:0 6px; border-radius:3px; font-size:11.5px; color:#fff; }
.lab.attack { background:#e0453a; } .lab.benign { background:#4c78a8; } .lab.none { background:#a8a8a8; }
.strip-note { color:var(--muted); font-size:11px; }
.grid2 { display:grid; grid-template-columns:1fr 1fr; gap:8px 32px; }
dl.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 14px; margin:0; }
dl.kv dt { color:var(--muted); } dl.kv dd { margin:0; font-variant-numeric:tabular-nums; }
code, .mono { font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace; font-size:12.5px; }
svg text { font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif; fill:#333; }
svg .axis { stroke:#888; stroke-width:1; } svg .grid { stroke:#eceef2; stroke-width:1; }
.legend { display:flex; flex-wrap:wrap; gap:4px 18px; font-size:12.5px; color:var(--muted); margin:4px 0; }
table.sub { width:100%; margin:4px 0 6px; font-size:12px; } table.sub td { padding:2px 8px 2px 0; }
details summary { cursor:pointer; color:#2f5fb3; font-size:12.5px; margin-top:3px; }
td.wide { max-width:640px; } .small { font-size:11px; } svg.spark { display:block; }
nav.toc { font-size:13px; }
.sw { display:inline-block; width:11px; height:11px; border-radius:2px; vertical-align:-1px; margin-right:5px; }
"""


def _e(value: object) -> str:
    """Escape anything for HTML text and attribute values (capture contents are hostile)."""
    return html.escape(str(value), quote=True)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.4g}"


def _utc(ts_ns: int, *, seconds: bool = True) -> str:
    dt = datetime.fromtimestamp(ts_ns / 1e9, tz=UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _until(first_ns: int, last_ns: int) -> str:
    """The last-seen time (time of day only on the same day), and the duration."""
    full = _utc(last_ns)
    same_day = full[:10] == _utc(first_ns)[:10]
    return f"{full[11:] if same_day else full} ({_duration((last_ns - first_ns) / 1e9)})"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _int(n: int) -> str:
    return f"{n:,}".replace(",", "\u202f")  # narrow no-break space as thousands separator


def _n(n: int, word: str, plural: str | None = None) -> str:
    """'1 flow', '2 flows', '1 234 flows': a count with its noun in the right number."""
    return f"{_int(n)} {word if n == 1 else plural or word + 's'}"


def _value(v: object) -> str:
    """A setting or metadata value for people: yes/no, 4 significant digits, separated thousands."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return _int(v) if abs(v) >= 10_000 else str(v)
    if isinstance(v, float):
        return _fmt(v)
    if isinstance(v, list | tuple):
        return ", ".join(_value(x) for x in v)
    return str(v)


# ----------------------------------------------------------------------------------- axes / ticks


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    step = _nice_step(hi - lo, n)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def _sqrt_ticks(hi: float) -> list[float]:
    """Ticks for a square-root count axis: 0, then 1-2-5 values up to ``hi``, spread evenly."""
    cands = [m * 10.0**d for d in range(0, 9) for m in (1, 2, 5)]
    out = [0.0]
    for c in cands:
        if c > hi:
            break
        if math.sqrt(c) - math.sqrt(out[-1]) >= math.sqrt(hi) / 7:
            out.append(c)
    return out


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks within [lo, hi] (decades only when the range is wide)."""
    decades = math.log10(hi) - math.log10(lo)
    mults = (1.0,) if decades > 4 else (1.0, 2.0, 5.0) if decades > 0.7 else (1.0, 1.5, 2.0, 3.0, 5.0, 7.0)
    out = []
    for d in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in mults:
            v = m * 10.0**d
            if lo <= v <= hi:
                out.append(v)
    return out


class _Frame:
    """A plot area inside an SVG: data ranges mapped to pixels, plus axes drawing."""

    def __init__(
        self, *, width: int, height: int, left: int = 56, right: int = 28, top: int = 14, bottom: int = 40
    ) -> None:
        self.width, self.height = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = height - bottom, top  # y0 is the bottom (pixel y grows downward)
        self.parts: list[str] = []

    def add(self, s: str) -> None:
        self.parts.append(s)

    def yaxis(self, ticks: list[float], to_px: Any, label: str, fmt: Any = _fmt) -> None:
        for t in ticks:
            y = to_px(t)
            self.add(f'<line class="grid" x1="{self.x0}" x2="{self.x1}" y1="{y:.1f}" y2="{y:.1f}"/>')
            self.add(f'<text x="{self.x0 - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{_e(fmt(t))}</text>')
        self.add(f'<line class="axis" x1="{self.x0}" x2="{self.x0}" y1="{self.y0}" y2="{self.y1}"/>')
        yc = (self.y0 + self.y1) / 2
        self.add(
            f'<text x="13" y="{yc:.1f}" font-size="11.5" text-anchor="middle" '
            f'transform="rotate(-90 13 {yc:.1f})">{_e(label)}</text>'
        )

    def xaxis(self, ticks: list[tuple[float, str]], label: str) -> None:
        self.add(f'<line class="axis" x1="{self.x0}" x2="{self.x1}" y1="{self.y0}" y2="{self.y0}"/>')
        for x, text in ticks:
            self.add(f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{self.y0}" y2="{self.y0 + 4}"/>')
            self.add(f'<text x="{x:.1f}" y="{self.y0 + 16}" font-size="11" text-anchor="middle">{_e(text)}</text>')
        xc = (self.x0 + self.x1) / 2
        self.add(f'<text x="{xc:.1f}" y="{self.height - 4}" font-size="11.5" text-anchor="middle">{_e(label)}</text>')

    def svg(self, title: str) -> str:
        return (
            f'<svg width="{self.width}" height="{self.height}" viewBox="0 0 {self.width} {self.height}" '
            f'role="img" aria-label="{_e(title)}">' + "".join(self.parts) + "</svg>"
        )


def _legend(items: Sequence[tuple[str, str]]) -> str:
    return (
        '<div class="legend">'
        + "".join(f'<span><span class="sw" style="background:{c}"></span>{_e(name)}</span>' for name, c in items)
        + "</div>"
    )


# ------------------------------------------------------------------------------------- histogram


def _score_histogram(
    scores: npt.NDArray[np.floating[Any]],
    threshold: float,
    groups: Sequence[tuple[str, npt.NDArray[np.bool_], str]],
    *,
    side_by_side: bool = False,
    width: int = 1180,
    height: int = 300,
    n_bins: int = 60,
) -> str:
    """Histogram of scores on a log x axis, the threshold as a vertical line.

    Groups are stacked (for groups that split the scores, such as below/above the threshold) or
    drawn side by side in each bin (for labels, which overlap). Counts use a square-root axis so
    that a handful of flows (a missed attack, a false alarm) stays visible beside a thousand.
    """
    s = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(s)
    positive = s[finite & (s > 0)]
    floor = float(positive.min()) if len(positive) else (threshold if threshold > 0 else 1.0)
    lo = min(floor, threshold if threshold > 0 else floor)
    hi = max(float(positive.max()) if len(positive) else lo, threshold)
    if hi <= lo * 1.0001:
        lo, hi = lo / 2, hi * 2
    margin = 0.02 * math.log10(hi / lo)
    llo, lhi = math.log10(lo) - margin, math.log10(hi) + margin
    edges = np.linspace(llo, lhi, n_bins + 1)
    logs = np.log10(np.clip(np.where(finite, s, hi), lo, hi))
    bin_of = np.clip(np.searchsorted(edges, logs, side="right") - 1, 0, n_bins - 1)
    counts = np.stack([np.bincount(bin_of[mask], minlength=n_bins) for _, mask, _ in groups])
    top = counts.max() if side_by_side else counts.sum(axis=0).max()
    y_ticks = _sqrt_ticks(max(float(top), 1.0))
    ymax = max(float(top), y_ticks[-1], 1.0)
    fr = _Frame(width=width, height=height)

    def px(lv: float) -> float:
        return fr.x0 + (lv - llo) / (lhi - llo) * (fr.x1 - fr.x0)

    def py(c: float) -> float:
        return fr.y0 - math.sqrt(c / ymax) * (fr.y0 - fr.y1)

    fr.yaxis(y_ticks, py, "flows (square-root scale)", fmt=lambda t: f"{t:g}")
    n_groups = len(groups)
    for b in range(n_bins):
        base = 0
        xa, xb = px(edges[b]), px(edges[b + 1])
        sub = (xb - xa - 1) / n_groups if side_by_side else xb - xa - 1
        for g, (name, _, colour) in enumerate(groups):
            c = int(counts[g, b])
            if not c:
                continue
            ya, yb = py(base + c), py(base)
            x = xa + 0.5 + (g * sub if side_by_side else 0)
            fr.add(
                f'<rect x="{x:.1f}" y="{ya:.1f}" width="{max(sub, 1):.1f}" height="{max(yb - ya, 1):.1f}" '
                f'fill="{colour}"><title>{_e(name)}: {_n(c, "flow")}, score '
                f"{_fmt(10 ** edges[b])}–{_fmt(10 ** edges[b + 1])}</title></rect>"
            )
            if not side_by_side:
                base += c
    fr.xaxis([(px(math.log10(t)), _fmt(t)) for t in _log_ticks(10**llo, 10**lhi)], "flow score (log scale)")
    if threshold > 0:
        xt = px(math.log10(threshold))
        n_above = int((s > threshold).sum())
        n_below = len(s) - n_above
        fr.add(
            f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{fr.y0}" y2="{fr.y1 - 4}" stroke="{C_THRESHOLD}" '
            f'stroke-width="2" stroke-dasharray="6 3"/>'
        )
        right = xt > fr.x0 + 0.8 * (fr.x1 - fr.x0)  # label on the left of a line near the right edge
        xl, anchor = (xt - 6, "end") if right else (xt + 6, "start")
        fr.add(
            f'<text x="{xl:.1f}" y="{fr.y1 + 8}" font-size="12" font-weight="600" text-anchor="{anchor}">'
            f"threshold {_e(_fmt(threshold))}</text>"
            f'<text x="{xl:.1f}" y="{fr.y1 + 24}" font-size="11.5" text-anchor="{anchor}">'
            f"{_int(n_below)} below · {_int(n_above)} above</text>"
        )
    return fr.svg("histogram of flow scores")


# ----------------------------------------------------------------------------------- line chart


def _loss_chart(
    history: Sequence[dict[str, Any]], *, best_epoch: int | None, width: int = 560, height: int = 260
) -> str:
    epochs = [int(h["epoch"]) for h in history]
    series = [
        ("training loss", [float(h["train_loss"]) for h in history], C_TRAIN),
        ("validation loss", [float(h["val_loss"]) for h in history], C_VAL),
    ]
    values = [v for _, vs, _ in series for v in vs if math.isfinite(v)]
    if not epochs or not values:
        return '<p class="note">No training history in the model.</p>'
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    y_ticks = _linear_ticks(max(lo - pad, 0.0) if lo >= 0 else lo - pad, hi + pad, 5)
    ylo, yhi = y_ticks[0], y_ticks[-1]
    e_lo, e_hi = min(epochs), max(epochs)
    if e_hi == e_lo:
        e_lo, e_hi = e_lo - 1, e_hi + 1
    fr = _Frame(width=width, height=height)

    def px(e: float) -> float:
        return fr.x0 + 10 + (e - e_lo) / (e_hi - e_lo) * (fr.x1 - fr.x0 - 20)

    def py(v: float) -> float:
        return fr.y0 - (v - ylo) / ((yhi - ylo) or 1.0) * (fr.y0 - fr.y1)

    fr.yaxis(y_ticks, py, "loss (masked MSE)")
    x_ticks = [t for t in _linear_ticks(e_lo, e_hi, 8) if float(t).is_integer() and min(epochs) <= t <= max(epochs)]
    fr.xaxis([(px(t), f"{t:g}") for t in x_ticks], "epoch")
    if best_epoch:
        xb = px(best_epoch)
        xl, anchor = (xb - 4, "end") if xb > (fr.x0 + fr.x1) / 2 else (xb + 4, "start")
        fr.add(
            f'<line x1="{xb:.1f}" x2="{xb:.1f}" y1="{fr.y0}" y2="{fr.y1}" stroke="#777" stroke-dasharray="3 3"/>'
            f'<text x="{xl:.1f}" y="{fr.y1 + 10}" font-size="11" text-anchor="{anchor}">best epoch {best_epoch}</text>'
        )
    for name, vs, colour in series:
        pts = [(px(e), py(v)) for e, v in zip(epochs, vs, strict=True) if math.isfinite(v)]
        d = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(pts))
        fr.add(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (x, y), e, v in zip(pts, epochs, vs, strict=False):
            fr.add(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{_e(name)} epoch {e}: '
                f"{v:.5f}</title></circle>"
            )
    return _legend([(n, c) for n, _, c in series]) + fr.svg("training and validation loss per epoch")


# -------------------------------------------------------------------------------------- timeline

_BIN_CHOICES_S = (10, 30, 60, 300, 900, 3600, 21600, 86400, 7 * 86400)


_BIN_NAMES = {10: "10 s", 30: "30 s", 60: "minute", 300: "5 minutes", 900: "15 minutes", 3600: "hour"}
_BIN_NAMES.update({21600: "6 hours", 86400: "day", 7 * 86400: "week"})


def _timeline(
    table: ScoreTable, groups: Sequence[tuple[str, npt.NDArray[np.bool_], str]], *, width: int = 1180, height: int = 240
) -> tuple[str, str]:
    """Bars of flows started per bin (all flows in grey behind, flagged flows stacked by group).

    Bins are a minute wide, narrower for a capture of a few minutes and wider for weeks (at most
    600 bars). Returns the SVG and the bin's name ("minute").
    """
    f = table.flows
    first, t1 = int(f.first_ns.min()), int(f.last_ns.max())
    span_s = max((t1 - first) / 1e9, 1.0)
    bin_s = next((b for b in _BIN_CHOICES_S if span_s / b <= 600 and (b >= 60 or span_s / b <= 60)), 7 * 86400)
    bin_ns = bin_s * 1_000_000_000
    t0 = first // bin_ns * bin_ns
    n_bins = max(1, math.ceil((t1 + 1 - t0) / bin_ns))
    bin_of = np.clip((f.first_ns - t0) // bin_ns, 0, n_bins - 1).astype(np.int64)
    all_counts = np.bincount(bin_of, minlength=n_bins)
    counts = np.stack([np.bincount(bin_of[m & table.is_anomaly], minlength=n_bins) for _, m, _ in groups])
    y_ticks = _sqrt_ticks(max(float(all_counts.max()), 1.0))
    ymax = max(float(all_counts.max()), 1.0)
    fr = _Frame(width=width, height=height)
    bw = (fr.x1 - fr.x0) / n_bins

    def py(c: float) -> float:  # square-root scale: a lone flagged flow beside a burst stays visible
        return fr.y0 - math.sqrt(c / ymax) * (fr.y0 - fr.y1)

    per = _BIN_NAMES[bin_s]
    fr.yaxis(y_ticks, py, f"flows per {per} (sqrt)", fmt=lambda t: f"{t:g}")
    gap = 1.0 if bw > 3 else 0.0
    for b in range(n_bins):
        x = fr.x0 + b * bw
        when = _utc(t0 + b * bin_ns, seconds=bin_s < 60)
        if all_counts[b]:
            fr.add(
                f'<rect x="{x + gap / 2:.1f}" y="{py(all_counts[b]):.1f}" width="{max(bw - gap, 0.5):.2f}" '
                f'height="{fr.y0 - py(all_counts[b]):.1f}" fill="{C_ALL}"><title>{when} UTC: '
                f"{_n(int(all_counts[b]), 'flow')} started</title></rect>"
            )
        base = 0
        for g, (name, _, colour) in enumerate(groups):
            c = int(counts[g, b])
            if not c:
                continue
            ya, yb = py(base + c), py(base)
            fr.add(
                f'<rect x="{x + gap / 2:.1f}" y="{ya:.1f}" width="{max(bw - gap, 0.5):.2f}" '
                f'height="{max(yb - ya, 1):.1f}" fill="{colour}"><title>{when} UTC: {c} flagged '
                f"({_e(name)})</title></rect>"
            )
            base += c
    n_ticks = min(n_bins, 8)
    step = max(1, round(n_bins / n_ticks))
    fmt = "%H:%M:%S" if bin_s < 60 else "%H:%M" if span_s < 2 * 86400 else "%m-%d %H:%M"
    ticks = []
    for b in range(0, n_bins + 1, step):
        ts = t0 + b * bin_ns
        ticks.append((fr.x0 + b * bw, datetime.fromtimestamp(ts / 1e9, tz=UTC).strftime(fmt)))
    fr.xaxis(ticks, f"flow start time (UTC, from {_utc(t0, seconds=False)})")
    return fr.svg("flagged flows over time"), per


# --------------------------------------------------------------------------------- packet strips


def _error_colour(ratio: float) -> str:
    """Error relative to the threshold: pale blue-grey (x1/8 or less), amber (x1), dark red (x8+)."""
    t = min(max((math.log2(max(ratio, 1e-12)) + 3) / 6, 0.0), 1.0)
    stops = ((0.0, (200, 210, 224)), (0.5, (246, 190, 80)), (0.75, (224, 69, 58)), (1.0, (120, 0, 0)))
    for (ta, ca), (tb, cb) in zip(stops[:-1], stops[1:], strict=True):
        if t <= tb:
            w = (t - ta) / (tb - ta)
            r, g, b = (round(a + (bb - a) * w) for a, bb in zip(ca, cb, strict=True))
            return f"#{r:02x}{g:02x}{b:02x}"
    return "#780000"


def _packet_strip(
    ts_ns: npt.NDArray[np.int64],
    ip_len: npt.NDArray[np.int64],
    is_fwd: npt.NDArray[np.bool_],
    error: npt.NDArray[np.float32],
    worst: set[int],
    threshold: float,
    *,
    first_index: int,
    width: int = 300,
    height: int = 64,
) -> str:
    """Per-packet bars: colour = reconstruction error, up/down = fwd/bwd, height = size (log), x = gaps (log)."""
    n = len(ts_ns)
    mid = height / 2
    half = mid - 3
    gaps_us = np.diff(ts_ns).astype(np.float64) / 1000.0 if n > 1 else np.zeros(0)
    steps = 0.35 + np.log10(1.0 + np.maximum(gaps_us, 0.0) / 100.0)
    pos = np.concatenate([[0.0], np.cumsum(steps)])
    bar_w = min(max(0.7 * (width - 8) / max(n, 1), 1.2), 7.0)
    # A short flow is not stretched over the strip: at most 12 px per unit of log gap.
    unit_px = min((width - 8 - bar_w) / (float(pos[-1]) or 1.0), 12.0)
    xs = 4 + pos * unit_px
    log_max = math.log(1500 / 20)
    parts = [f'<line x1="0" x2="{width}" y1="{mid}" y2="{mid}" stroke="#b0b6bf" stroke-width="0.8"/>']
    for j in range(n):
        size = int(ip_len[j])
        h = min(max(half * math.log(max(size, 21) / 20) / log_max, 4.0), half)
        y = mid - h if is_fwd[j] else mid
        err = float(error[j])
        ratio = err / threshold if threshold > 0 else 1.0
        k = first_index + j
        stroke = ' stroke="#000" stroke-width="1.3"' if k in worst else ""
        gap = f", +{gaps_us[j - 1] / 1e6:.3g} s" if j else ""
        parts.append(
            f'<rect x="{xs[j]:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{h:.1f}" fill="{_error_colour(ratio)}"'
            f"{stroke}><title>packet {k} {'fwd' if is_fwd[j] else 'bwd'} {size} B{gap}, error {err:.3g}"
            f"</title></rect>"
        )
        if k in worst:  # a marker at the strip's edge, pointing at the bar
            yt, dy = (0.5, 5) if is_fwd[j] else (height - 0.5, -5)
            cx = xs[j] + bar_w / 2
            parts.append(f'<path d="M{cx - 3.5:.1f},{yt} L{cx + 3.5:.1f},{yt} L{cx:.1f},{yt + dy}" fill="#000"/>')
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="per-packet reconstruction error">' + "".join(parts) + "</svg>"
    )


def _strip_legend() -> str:
    ramp = "".join(
        f'<rect x="{i * 6}" y="0" width="6" height="10" fill="{_error_colour(2 ** (-3 + 6 * i / 23))}"/>'
        for i in range(24)
    )
    ramp_svg = (
        f'<svg width="190" height="24" viewBox="0 0 190 24" role="img" aria-label="error colour scale">{ramp}'
        '<text x="0" y="22" font-size="10">≤⅛×</text><text x="72" y="22" font-size="10" text-anchor="middle">'
        'threshold</text><text x="144" y="22" font-size="10" text-anchor="end">≥8×</text></svg>'
    )
    return (
        '<div class="legend" style="align-items:center">'
        f"<span>packet colour: reconstruction error vs threshold {ramp_svg}</span>"
        "<span>bars up: sent by the initiator · down: replies</span>"
        "<span>bar height: packet size (log)</span><span>spacing: gap between packets (log)</span>"
        "<span>▼ and outline: the flow's worst packets</span></div>"
    )


# ------------------------------------------------------------------------------------- sections


def _flow_key(table: ScoreTable, i: int) -> str:
    f = table.flows
    src = format_ip(int(f.src_hi[i]), int(f.src_lo[i]))
    dst = format_ip(int(f.dst_hi[i]), int(f.dst_lo[i]))
    proto = int(f.proto[i])
    name = _PROTO.get(proto, str(proto))
    if proto in PORTED:
        a = f"[{src}]:{int(f.src_port[i])}" if ":" in src else f"{src}:{int(f.src_port[i])}"
        return (
            f"{a} → {dst}:{int(f.dst_port[i])}/{name}"
            if ":" not in dst
            else f"{a} → [{dst}]:{int(f.dst_port[i])}/{name}"
        )
    if proto in ICMP_PROTOCOLS:
        return f"{src} → {dst}/{name} type {int(f.src_port[i])} code {int(f.dst_port[i])}"
    return f"{src} → {dst}/{name}"


def _label_groups(
    n: int, labels: Labels | None, *, above: npt.NDArray[np.bool_] | None = None
) -> list[tuple[str, npt.NDArray[np.bool_], str]]:
    if labels is None:
        if above is None:
            return [("flows", np.ones(n, dtype=bool), C_BELOW)]
        return [("below threshold", ~above, C_BELOW), ("above threshold", above, C_ABOVE)]
    is_attack = np.array([bool(m and (m - {"benign"})) for m in labels], dtype=bool)
    is_benign = np.array([m is not None and not (m - {"benign"}) for m in labels], dtype=bool)
    groups = [("benign", is_benign, C_BENIGN), ("attack", is_attack, C_ATTACK)]
    if (~is_attack & ~is_benign).any():
        groups.append(("unlabelled", ~is_attack & ~is_benign, C_UNLABELLED))
    return groups


def _tile(key: str, value: str, *, alert: bool = False) -> str:
    return (
        f'<div class="tile{" alert" if alert else ""}"><div class="v">{value}</div><div class="k">{_e(key)}</div></div>'
    )


def _summary_section(run: ScoreRun, labels: Labels | None) -> str:
    t = run.table
    f = t.flows
    n_anom = int(t.is_anomaly.sum())
    pct = 100.0 * n_anom / max(t.n_flows, 1)
    span = (int(f.last_ns.max()) - int(f.first_ns.min())) / 1e9 if t.n_flows else 0.0
    n_pkts = int(f.offsets[-1])
    tiles = [
        _tile("captures", _int(len(t.files))),
        _tile("flows", _int(t.n_flows)),
        _tile("packets", _int(n_pkts)),
        _tile("anomalies", f"{_int(n_anom)} <small>({pct:.1f}%)</small>", alert=bool(n_anom)),
        _tile("threshold", _e(_fmt(t.threshold))),
        _tile("time span", _e(_duration(span))),
    ]
    out = [
        '<section id="summary"><h2>Summary</h2>',
        f'<div class="tiles">{"".join(tiles)}</div>',
        '<h3>Captures</h3><dl class="kv">',
    ]
    per_file = np.bincount(f.file_id, minlength=len(t.files)) if t.n_flows else np.zeros(len(t.files), np.int64)
    anom_file = np.bincount(f.file_id[t.is_anomaly], minlength=len(t.files)) if t.n_flows else per_file
    for k, name in enumerate(t.files):
        out.append(
            f'<dt class="mono">{_e(name)}</dt><dd>{_n(int(per_file[k]), "flow")}, '
            f"{_int(int(anom_file[k]))} anomalous</dd>"
        )
    failures = getattr(run.data, "failures", ())
    for name, message in failures:
        out.append(f'<dt class="mono">{_e(name)}</dt><dd>unreadable: {_e(message)}</dd>')
    out.append("</dl>")
    if t.n_flows:
        out.append(
            f'<p class="note">Traffic from {_e(_utc(int(f.first_ns.min())))} to {_e(_utc(int(f.last_ns.max())))} '
            f"UTC. Scored with model <code>{_e(t.model_id or 'unknown')}</code>; a flow is anomalous when its "
            f"score (mean per-packet reconstruction error of its worst window) exceeds {_e(_fmt(t.threshold))}.</p>"
        )
    if labels is not None:
        out.append(_label_table(t, labels))
    out.append("</section>")
    return "".join(out)


def _label_table(t: ScoreTable, labels: Labels) -> str:
    from netae.evaluate import incident_ranks

    ranks = incident_ranks(list(labels), table_incidents(t))
    rows: dict[str, list[int]] = {}
    for i, m in enumerate(labels):
        names = ["(unlabelled)"] if m is None else sorted(m - {"benign"}) or ["benign"]
        for name in names:
            r = rows.setdefault(name, [0, 0])
            r[0] += 1
            r[1] += int(t.is_anomaly[i])
    order = sorted(rows, key=lambda k: (k == "(unlabelled)", k != "benign", k))
    body = []
    for name in order:
        n, flagged = rows[name]
        kind = "none" if name == "(unlabelled)" else "benign" if name == "benign" else "attack"
        share = 100.0 * flagged / max(n, 1)
        best = ranks.best.get(name) if kind == "attack" else None
        rank = (f'<a href="#inc-{best}">#{best}</a>' if best else "none") if kind == "attack" else ""
        if kind == "benign" and ranks.benign_only:
            rank = f"{_n(len(ranks.benign_only), 'benign-only incident')}, first #{ranks.benign_only[0]}"
        body.append(
            f'<tr><td><span class="lab {kind}">{_e(name)}</span></td><td class="num">{_int(n)}</td>'
            f'<td class="num">{_int(flagged)}</td><td class="num">{share:.1f}%</td><td>{rank}</td></tr>'
        )
    return (
        '<h3>Against the labels</h3><table><tr><th>label</th><th class="num">flows</th>'
        '<th class="num">flagged</th><th class="num">share flagged</th><th>best incident</th></tr>'
        + "".join(body)
        + "</table>"
    )


def _distribution_section(run: ScoreRun, labels: Labels | None) -> str:
    t = run.table
    groups = _label_groups(t.n_flows, labels, above=t.is_anomaly)
    note = (
        "Flows coloured by their label (matched by endpoints and time)."
        if labels is not None
        else "Flows right of the dashed line are flagged. Give --labels to colour benign and attack flows."
    )
    return (
        '<section id="distribution"><h2>Score distribution</h2>'
        f'<p class="note">{_e(note)} Each bar counts the flows whose score falls in it; hover for counts.</p>'
        + _legend([(name, c) for name, _, c in groups] + [("threshold (dashed)", C_THRESHOLD)])
        + _score_histogram(t.score, t.threshold, groups, side_by_side=labels is not None)
        + "</section>"
    )


def _top_flows_section(run: ScoreRun, labels: Labels | None, top_n: int) -> str:
    t = run.table
    f = t.flows
    rows = np.flatnonzero(t.is_anomaly)
    rows = rows[np.argsort(-t.score[rows], kind="stable")][: max(top_n, 0)]
    n_anom = int(t.is_anomaly.sum())
    head = (
        '<section id="top-flows"><h2>Top anomalous flows</h2>'
        f'<p class="note">The {len(rows)} highest-scoring of {_int(n_anom)} anomalous flows. '
        "Each strip draws the flow's packets in order.</p>"
    )
    if not len(rows):
        return head + '<p class="note">No flow scored above the threshold.</p></section>'
    packets = run.data.packets
    err = run.scores.packet_error
    has_packets = len(packets.ts_ns) > 0
    cids = community_ids(t, rows)
    out = [head, _strip_legend(), '<table class="flows"><tr><th>#</th><th>flow</th><th>first / last seen (UTC)</th>']
    out.append('<th class="num">packets</th><th class="num">bytes</th><th class="num">score</th>')
    if labels is not None:
        out.append("<th>label</th>")
    out.append("<th>packets: error, size, direction, gaps</th></tr>")
    for rank, i in enumerate(rows.tolist(), start=1):
        a, b = int(f.offsets[i]), int(f.offsets[i + 1])
        n = b - a
        worst = {int(k) for k in t.worst_idx[i] if k >= 0}
        lo = 0
        if n > STRIP_MAX_PKTS:
            centre = min(worst) if worst else 0
            centre = int(t.worst_idx[i, 0]) if t.worst_idx[i, 0] >= 0 else centre
            lo = min(max(centre - STRIP_MAX_PKTS // 2, 0), n - STRIP_MAX_PKTS)
        hi = min(n, lo + STRIP_MAX_PKTS)
        if has_packets:
            rows_pk = f.order[a + lo : a + hi]
            strip = _packet_strip(
                packets.ts_ns[rows_pk],
                packets.ip_len[rows_pk].astype(np.int64),
                f.is_fwd[a + lo : a + hi],
                err[a + lo : a + hi],
                worst,
                t.threshold,
                first_index=lo,
            )
            if n > STRIP_MAX_PKTS:
                strip += f'<div class="strip-note">packets {lo}–{hi - 1} of {_int(n)}</div>'
        else:
            strip = '<span class="strip-note">packets not available</span>'
        why = t.explanations[i] if t.explanations and t.explanations[i] else ""
        top = ", ".join(
            feature_label(t.feature_names[int(k)]) for k in t.top_features[i] if 0 <= k < len(t.feature_names)
        )
        file_name = t.files[int(f.file_id[i])] if t.files else ""
        out.append(
            f'<tr><td class="num">{rank}</td><td class="flow"><div class="key">{_e(_flow_key(t, i))}</div>'
            + (f'<div class="why">{_e(why)}</div>' if why else "")
            + f'<div class="file">{_e(file_name)} · worst features: {_e(top)}</div>'
            f'<div class="file mono">{_e(cids[rank - 1])}</div></td>'
            f'<td class="when">{_e(_utc(int(f.first_ns[i])))}'
            f'<div class="file">to {_e(_until(int(f.first_ns[i]), int(f.last_ns[i])))}</div></td>'
            f'<td class="num">{_int(int(f.fwd_pkts[i] + f.bwd_pkts[i]))}'
            f'<div class="file">{_int(int(f.fwd_pkts[i]))} → / {_int(int(f.bwd_pkts[i]))} ←</div></td>'
            f'<td class="num">{_int(int(f.fwd_bytes[i] + f.bwd_bytes[i]))}</td>'
            f'<td class="num score">{_e(_fmt(float(t.score[i])))}'
            f'<div class="file">{float(t.score[i]) / t.threshold if t.threshold > 0 else math.inf:.1f}× thr.</div></td>'
        )
        if labels is not None:
            m = labels[i]
            names = sorted(m - {"benign"}) or ["benign"] if m is not None else []
            kind = "none" if m is None else "benign" if names == ["benign"] else "attack"
            out.append(f'<td><span class="lab {kind}">{_e(", ".join(names) or "unlabelled")}</span></td>')
        out.append(f"<td>{strip}</td></tr>")
    out.append("</table></section>")
    return "".join(out)


INCIDENT_ROWS = 30  # incidents listed; the rest are counted
FLOWS_PER_INCIDENT = 12  # flows listed under each incident (worst first)
SPARK_BINS = 48


def _labels_text(labels: Labels | None, rows: npt.NDArray[np.int64]) -> tuple[str, str]:
    """The label names among ``rows`` and their kind (attack, benign, none), for a badge."""
    if labels is None:
        return "", ""
    names: set[str] = set()
    for i in rows.tolist():
        m = labels[i]
        if m is not None:
            names |= m
    attacks = sorted(names - {"benign"})
    if attacks:
        return ", ".join(attacks), "attack"
    return ("benign", "benign") if names else ("unlabelled", "none")


def _incident_flows(t: ScoreTable, inc: Incidents, k: int, labels: Labels | None) -> str:
    """The incident's worst flows, in a disclosure element (no script needed)."""
    members = inc.members(k)
    worst = members[np.argsort(-t.score[members], kind="stable")][:FLOWS_PER_INCIDENT]
    f = t.flows
    cids = community_ids(t, worst)
    rows = []
    for i, cid in zip(worst.tolist(), cids, strict=True):
        why = t.explanations[i] if t.explanations else ""
        lab = _labels_text(labels, np.array([i]))[0] if labels is not None else ""
        rows.append(
            f'<tr><td class="mono">{_e(_flow_key(t, i))}</td><td class="mono small">{_e(cid)}</td>'
            f'<td class="when">{_e(_utc(int(f.first_ns[i])))}</td>'
            f'<td class="num">{_int(int(f.fwd_pkts[i] + f.bwd_pkts[i]))}</td>'
            f'<td class="num">{_int(int(f.fwd_bytes[i] + f.bwd_bytes[i]))}</td>'
            f'<td class="num">{_e(_fmt(float(t.score[i])))}</td><td class="why">{_e(why)}</td>'
            + (f"<td>{_e(lab)}</td>" if labels is not None else "")
            + "</tr>"
        )
    more = len(members) - len(worst)
    return (
        f"<details><summary>{_n(len(members), 'flow')}"
        + (f" (the {len(worst)} worst shown)" if more > 0 else "")
        + '</summary><table class="sub"><tr><th>flow</th><th>Community ID</th><th>first seen (UTC)</th>'
        '<th class="num">packets</th><th class="num">bytes</th><th class="num">score</th><th>why</th>'
        + ("<th>label</th>" if labels is not None else "")
        + "</tr>"
        + "".join(rows)
        + "</table></details>"
    )


def _incidents_section(run: ScoreRun, labels: Labels | None) -> str:
    t = run.table
    inc = table_incidents(t)
    n_anom = int(t.is_anomaly.sum())
    head = (
        '<section id="incidents"><h2>Incidents</h2><p class="note">'
        f"{_n(n_anom, 'anomalous flow')} gathered into {_n(inc.n_incidents, 'incident')}: the same host (or host "
        "pair) doing the same kind of thing within the context window. Ranked by their worst flow's score, "
        "with repeats of one host's behaviour moved down so that other kinds of trouble show. "
        "Open a row for its flows.</p>"
    )
    if not inc.n_incidents:
        return head + '<p class="note">No flow scored above the threshold.</p></section>'
    out = [head, '<table class="list"><tr><th>#</th><th>incident</th><th>what happened</th><th>when (UTC)</th>']
    out.append('<th class="num">score</th>' + ("<th>label</th>" if labels is not None else "") + "</tr>")
    for k in range(min(inc.n_incidents, INCIDENT_ROWS)):
        rep = int(inc.rep[k])
        why = t.explanations[rep] if t.explanations else ""
        span_s = (int(inc.last_ns[k]) - int(inc.first_ns[k])) / 1e9
        cid = community_ids(t, np.array([rep]))[0]
        lab, kind = _labels_text(labels, inc.members(k))
        out.append(
            f'<tr id="inc-{k + 1}"><td class="num">{k + 1}</td><td><div class="key">{_e(inc.kind[k])}</div>'
            f'<div class="file mono">{_e(inc.ids[k])}</div></td>'
            f'<td class="flow wide"><div>{_e(inc.sentence[k])}</div>'
            + (f'<div class="why">why: {_e(why)}</div>' if why else "")
            + f'<div class="file">worst flow {_e(_flow_key(t, rep))} · <span class="mono">{_e(cid)}</span></div>'
            + _incident_flows(t, inc, k, labels)
            + f'</td><td class="when">{_e(_utc(int(inc.first_ns[k])))}'
            f'<div class="file">for {_e(human_seconds(span_s))}</div></td>'
            f'<td class="num score">{_e(_fmt(float(inc.score[k])))}'
            f'<div class="file">{float(inc.score[k]) / t.threshold if t.threshold > 0 else math.inf:.1f}× thr.</div>'
            "</td>" + (f'<td><span class="lab {kind}">{_e(lab)}</span></td>' if labels is not None else "") + "</tr>"
        )
    out.append("</table>")
    if inc.n_incidents > INCIDENT_ROWS:
        out.append(f'<p class="note">… and {_n(inc.n_incidents - INCIDENT_ROWS, "more incident")}; '
                   "<code>netae score --group-by incident --format csv</code> lists them all.</p>")  # fmt: skip
    out.append("</section>")
    return "".join(out)


def _sparkline(times_ns: npt.NDArray[np.int64], t0: int, t1: int, *, width: int = 220, height: int = 28) -> str:
    """A small bar sparkline of events over [t0, t1] (square-root heights), inline SVG."""
    span = max(t1 - t0, 1)
    counts = np.bincount(np.clip((times_ns - t0) * SPARK_BINS // span, 0, SPARK_BINS - 1), minlength=SPARK_BINS)
    top = max(int(counts.max()), 1)
    bw = width / SPARK_BINS
    bars = []
    for b, c in enumerate(counts.tolist()):
        if c:
            h = max(math.sqrt(c / top) * (height - 2), 1.5)
            bars.append(f'<rect x="{b * bw:.1f}" y="{height - h:.1f}" width="{max(bw - 0.6, 0.8):.1f}" '
                        f'height="{h:.1f}" fill="{C_ABOVE}"/>')  # fmt: skip
    return (
        f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">'
        f"<title>{_n(len(times_ns), 'flagged flow')}; busiest bin {_int(top)}</title>"
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}" stroke="#d8dce3"/>'
        + "".join(bars)
        + "</svg>"
    )


def _hosts_section(run: ScoreRun) -> str:
    """Source hosts of the incidents, ranked by their best incident, each with a sparkline."""
    t = run.table
    inc = table_incidents(t)
    if not inc.n_incidents:
        return ""
    f = t.flows
    host_of_inc = format_ips(f.src_hi[inc.rep], f.src_lo[inc.rep])
    flagged = np.flatnonzero(t.is_anomaly)
    src_flagged = np.array(format_ips(f.src_hi[flagged], f.src_lo[flagged]), dtype=object)
    t0, t1 = int(f.first_ns.min()), int(f.last_ns.max())
    hosts = list(dict.fromkeys(host_of_inc))  # in order of their best (first) incident
    out = [
        '<section id="hosts"><h2>Hosts</h2><p class="note">Source hosts of the incidents, by their best-ranked '
        f"incident. Each sparkline shows the host's flagged flows from {_e(_utc(t0))} to {_e(_utc(t1))} UTC.</p>",
        '<table class="list"><tr><th>host</th><th>incidents</th><th class="num">flagged flows</th>'
        "<th>flagged flows over the capture</th></tr>",
    ]
    for host in hosts[:INCIDENT_ROWS]:
        ks = [k for k, h in enumerate(host_of_inc) if h == host]
        mine = flagged[src_flagged == host]
        links = ", ".join(f'<a href="#inc-{k + 1}">#{k + 1}</a> {_e(inc.kind[k])}' for k in ks[:6])
        links += f", … {_n(len(ks) - 6, 'more')}" if len(ks) > 6 else ""
        out.append(
            f'<tr><td class="key">{_e(host)}</td><td>{links}</td><td class="num">{_int(len(mine))}</td>'
            f"<td>{_sparkline(f.first_ns[mine], t0, t1)}</td></tr>"
        )
    out.append("</table></section>")
    return "".join(out)


def _timeline_section(run: ScoreRun, labels: Labels | None) -> str:
    t = run.table
    if labels is None:
        groups = [("flagged", np.ones(t.n_flows, dtype=bool), C_ABOVE)]
    else:
        groups = [(f"flagged {name}", m, c) for name, m, c in _label_groups(t.n_flows, labels)]
    svg, per = _timeline(t, groups)
    return (
        '<section id="timeline"><h2>Anomalies over time</h2>'
        f'<p class="note">Flows flagged per {_e(per)} (by flow start), in front of all flows started then '
        "(grey).</p>" + _legend([("all flows", C_ALL)] + [(name, c) for name, _, c in groups]) + svg + "</section>"
    )


def _kv(pairs: Sequence[tuple[str, object]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs) + "</dl>"


def _model_card(model: TrainedModel, *, model_id: str) -> str:
    tr, th = model.training, model.threshold
    data_pairs: list[tuple[str, object]] = [
        ("inputs", ", ".join(tr.inputs) or "?"),
        ("flows", f"{_value(tr.flows)} ({_value(tr.fit_flows)} fit, {_value(tr.val_flows)} validation)"),
        ("packets", _value(tr.packets)),
        ("epochs", f"{tr.epochs} (best {tr.best_epoch}) on {tr.device or '?'}"),
        ("training time", f"{tr.seconds} s"),
        ("created", f"{model.created} by netae {model.netae_version}"),
        ("model id", model_id or "?"),
    ]
    if tr.failed_inputs:
        data_pairs.append(("unreadable inputs", ", ".join(tr.failed_inputs)))
    th_pairs: list[tuple[str, object]] = [("strategy", th.strategy), ("value", _fmt(th.value_))]
    th_pairs += [(f"param {k}", _value(v)) for k, v in sorted(th.params.items())]
    th_pairs += [(f"validation score q{k}", _fmt(v)) for k, v in tr.val_score_quantiles.items()]
    if model.calibration is not None:
        th_pairs.append(("recalibrated on", ", ".join(model.calibration.inputs)))
    set_rows = []
    for section, values in sorted(model.settings.to_dict().items()):
        text = ", ".join(f"{k} = {_value(v)}" for k, v in sorted(values.items()))
        set_rows.append(f'<tr><td class="mono">[{_e(section)}]</td><td class="mono">{_e(text)}</td></tr>')
    features = model.feature_names
    history = [dataclasses.asdict(e) for e in tr.history]
    return (
        '<section id="model"><h2>Model card</h2><div class="grid2">'
        f"<div><h3>Training data</h3>{_kv(data_pairs)}</div>"
        f"<div><h3>Threshold</h3>{_kv(th_pairs)}</div></div>"
        f"<h3>Training and validation loss</h3>"
        + _loss_chart(history, best_epoch=tr.best_epoch or None)
        + "<h3>Settings</h3><table>"
        + "".join(set_rows)
        + "</table>"
        + f"<h3>Features ({len(features)})</h3><p>{_e('; '.join(feature_label(str(x)) for x in features))}</p>"
        + "</section>"
    )


def _page(title: str, subtitle: str, nav: Sequence[tuple[str, str]], body: Sequence[str]) -> str:
    links = "".join(f'<a href="#{_e(anchor)}">{_e(name)}</a>' for anchor, name in nav)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f'<header><h1>{_e(title)}</h1><div class="sub">{_e(subtitle)}</div><nav>{links}</nav></header>'
        "<main>" + "".join(body) + "</main></body></html>\n"
    )


def render_report(run: ScoreRun, *, labels: Labels | None = None, top_n: int = 25, title: str = "netae report") -> str:
    """The HTML report of a scoring run: incidents, hosts, timeline, summary, top flows, scores, model card.

    ``labels`` is one entry per flow, as ``evaluate.match_labels`` returns (matched label names,
    or None when no labelled flow matched); given, benign and attack flows get their own colours.
    The table holds ``min(top_n, anomalies)`` rows, highest score first.
    """
    t = run.table
    if labels is not None and len(labels) != t.n_flows:
        raise ValueError(f"labels must have one entry per flow: got {len(labels)} for {t.n_flows} flows")
    n_anom = int(t.is_anomaly.sum())
    n_inc = table_incidents(t).n_incidents
    subtitle = (
        f"{_int(n_anom)} of {_n(t.n_flows, 'flow')} anomalous, in {_n(n_inc, 'incident')} · "
        f"model {t.model_id or 'unknown'}"
    )
    if t.n_flows:
        subtitle += f" · {_utc(int(t.flows.first_ns.min()))} – {_utc(int(t.flows.last_ns.max()))} UTC"
    nav = [
        ("incidents", "Incidents"),
        ("hosts", "Hosts"),
        ("timeline", "Timeline"),
        ("summary", "Summary"),
        ("top-flows", "Top flows"),
        ("distribution", "Scores"),
        ("model", "Model card"),
    ]
    body = [
        _incidents_section(run, labels),
        _hosts_section(run),
        _timeline_section(run, labels) if t.n_flows else "",
        _summary_section(run, labels),
        _top_flows_section(run, labels, top_n),
        _distribution_section(run, labels),
        _model_card(run.model, model_id=t.model_id),
    ]
    return _page(title, subtitle, nav, body)


def render_training_report(run: TrainRun, *, model_id: str = "", title: str = "netae training report") -> str:
    """The HTML report of a training run: the model card with loss curves, and validation scores.

    The validation scores are those the threshold was fitted on, so the histogram shows how far
    into their tail the threshold sits.
    """
    tr = run.model.training
    threshold = float(run.threshold.value_)
    val = np.asarray(run.val_scores, dtype=np.float64)
    above = val > threshold
    subtitle = f"trained on {tr.flows} flows from {len(tr.inputs)} input(s)"
    section = (
        '<section id="distribution"><h2>Validation score distribution</h2>'
        f'<p class="note">Scores of the {_int(len(val))} held-out normal flows the threshold was fitted on; '
        f"{_int(int(above.sum()))} of them {'lies' if int(above.sum()) == 1 else 'lie'} above it.</p>"
        + _legend([("below threshold", C_BELOW), ("above threshold", C_ABOVE), ("threshold (dashed)", C_THRESHOLD)])
        + (_score_histogram(val, threshold, _label_groups(len(val), None, above=above)) if len(val) else "")
        + "</section>"
    )
    nav = [("model", "Model card"), ("distribution", "Validation scores")]
    return _page(title, subtitle, nav, [_model_card(run.model, model_id=model_id), section])
