"""Turning a template and its context into an HTML response: the Jinja2
environment, the number and date formats the pages share, and the security
headers every page carries (the Content-Security-Policy allows only the
server itself, so no page can load anything from another host)."""

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from edgefarm.shared.contract.rules import metric_name

from .. import __version__

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
MINUS = "\u2212"


def _missing(value: Optional[float]) -> bool:
    """None, NaN or infinite: shown as "—" (stored rows may hold NaN)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def fmt_ms(value: Optional[float]) -> str:
    if _missing(value):
        return "—"
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 0.1:
        return f"{value:.1f} ms" if value >= 10 else f"{value:.2f} ms"
    return f"{value * 1000:.3g} µs"  # sub-millisecond models (a tiny MLP runs in about 1 µs)


def fmt_signed_ms(value: Optional[float]) -> str:
    """A latency difference: '+0.52 ms', '−3.1 µs'."""
    if _missing(value):
        return "—"
    return ("+" if value >= 0 else MINUS) + fmt_ms(abs(value))


def fmt_bytes(value: Optional[int]) -> str:
    if _missing(value):
        return "—"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= size:
            scaled = value / size
            return f"{scaled:.0f} {unit}" if scaled >= 100 else f"{scaled:.1f} {unit}"
    return f"{value} B"


def fmt_score(value: Optional[float]) -> str:
    return "—" if _missing(value) else f"{value:.4f}"


def fmt_points(delta: Optional[float]) -> str:
    """An accuracy difference in percentage points: -0.02 -> '−2.0 pp'."""
    if _missing(delta):
        return "—"
    if abs(delta) < 0.0005:
        return "±0.0 pp"
    return f"{delta * 100:+.1f} pp".replace("-", MINUS)


def fmt_freqs(values: Optional[list]) -> str:
    """CPU frequencies in kHz, one per core: '1200 MHz × 4' or '600, 1200 MHz'."""
    if not values:
        return "—"
    mhz = [f"{v / 1000:g}" for v in values]
    if len(set(mhz)) == 1:
        return f"{mhz[0]} MHz" + (f" × {len(mhz)} cores" if len(mhz) > 1 else "")
    return ", ".join(mhz) + " MHz"


def fmt_ratio(ratio: Optional[float]) -> str:
    return "—" if _missing(ratio) else f"×{ratio:.2f}"


def fmt_percent(value: Optional[float]) -> str:
    return "—" if _missing(value) else f"{value * 100:.0f}%"


def fmt_when(moment: Optional[datetime]) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def fmt_ago(moment: Optional[datetime]) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((datetime.now(timezone.utc) - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def fmt_number(value: Optional[float], digits: int = 1) -> str:
    return "—" if _missing(value) else f"{value:.{digits}f}"


templates = Jinja2Templates(directory=str(TEMPLATES))
templates.env.filters.update(
    ms=fmt_ms, bytes=fmt_bytes, score=fmt_score, points=fmt_points, ratio=fmt_ratio,
    percent=fmt_percent, when=fmt_when, ago=fmt_ago, number=fmt_number,
    freqs=fmt_freqs, signed_ms=fmt_signed_ms,
)
templates.env.globals.update(version=__version__, metric_name=metric_name)


def page(request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
    context.setdefault("viewer", None)
    context.setdefault("nav", "")
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response
