"""Everything the CLI prints, and how values are formatted for people.

Results (tables, detail blocks, JSON documents, CSV) go to stdout; messages,
warnings and progress go to stderr, so that ``edgefarm ... --json | jq`` and
``edgefarm results --csv > out.csv`` see only the data. Rich renders tables;
plain ``key: value`` lines are written without markup so that names with
brackets print as they are.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any, Iterable, List, Optional, Sequence, Tuple

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgefarm.shared.contract.schemas import TensorSpec

#: Width used for tables when stdout is a pipe or a file (rich would use 80).
PIPE_WIDTH = 240


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr), built per call so that it follows
    whatever ``sys.stdout`` / ``sys.stderr`` are at that moment."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if _isatty(stream) else PIPE_WIDTH
    return Console(stderr=stderr, width=width, highlight=False, soft_wrap=False)


def stderr_is_tty() -> bool:
    return _isatty(sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# ---------------------------------------------------------------- writing


def emit_json(data: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def emit_text(text: str) -> None:
    """Raw text on stdout, as is (CSV exports)."""
    sys.stdout.write(text)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """A message for the person at the terminal (stderr)."""
    print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    say(f"warning: {message}")


def print_fields(fields: Iterable[Tuple[str, Any]]) -> None:
    """``key: value`` lines on stdout with the values aligned: from column 10
    when every key has at most 7 letters (``inputs:  x`` / ``outputs: y``),
    else one column after the longest key."""
    fields = list(fields)
    width = max([8] + [len(key) + 1 for key, _ in fields])
    for key, value in fields:
        print(f"{key + ':':<{width}} {display(value)}")
    sys.stdout.flush()


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], title: Optional[str] = None,
                right: Sequence[str] = (), show_lines: bool = False, plain: bool = False) -> None:
    """A rich table on stdout; columns named in ``right`` are right-aligned.
    Cells are plain text (no rich markup), so ``[base]`` prints as written.
    ``plain``: no borders, only a rule under the header (cells split on spaces,
    as the main job's table is read by people and by scripts alike)."""
    table = Table(title=title, show_lines=show_lines, header_style="bold")
    if plain:
        table.box, table.show_edge = box.SIMPLE_HEAD, False
    for column in columns:
        table.add_column(Text(column), justify="right" if column in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*[Text(display(cell)) for cell in row])
    console().print(table)


# ---------------------------------------------------------------- formatting


def display(value: Any) -> str:
    """A cell or field value as text; None is ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(display(v) for v in value) if value else "-"
    return str(value)


def format_shape(shape: Sequence[int]) -> str:
    """``[1, 513, 513, 3]`` -> ``1x513x513x3`` (a scalar is ``scalar``)."""
    return "x".join(str(dim) for dim in shape) if shape else "scalar"


def format_tensor(spec: TensorSpec) -> str:
    """``sub_7 1x513x513x3 float32``."""
    return f"{spec.name} {format_shape(spec.shape)} {spec.dtype}"


def tensor_lines(inputs: List[TensorSpec], outputs: List[TensorSpec]) -> List[Tuple[str, str]]:
    """One ``inputs`` / ``outputs`` field per tensor, in the model's order."""
    lines = [("inputs", format_tensor(spec)) for spec in inputs]
    lines += [("outputs", format_tensor(spec)) for spec in outputs]
    return lines


def format_bytes(size: Optional[float]) -> Optional[str]:
    if size is None:
        return None
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return None  # not reached


def format_ms(value: Optional[float]) -> Optional[str]:
    if value is None:
        return None
    if value >= 100:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3g}"  # keep sub-µs models readable


def format_percent(fraction: Optional[float]) -> Optional[str]:
    """A metric stored as a fraction (0..1) shown as a percentage."""
    return None if fraction is None else f"{fraction * 100:.2f}%"


def format_ratio(value: Optional[float]) -> Optional[str]:
    return None if value is None else f"{value:.2f}x"


def format_points(delta: Optional[float]) -> Optional[str]:
    """An accuracy difference between two fractions, in percentage points."""
    return None if delta is None else f"{delta * 100:+.2f} pt"


def format_time(value: Optional[datetime]) -> Optional[str]:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone()
    return value.strftime("%Y-%m-%d %H:%M:%S")


def short_sha(sha256: Optional[str]) -> Optional[str]:
    return sha256[:12] if sha256 else None
