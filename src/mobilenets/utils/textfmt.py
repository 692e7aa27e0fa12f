"""Plain-text tables for people (the CLI prints JSON for scripts)."""

from __future__ import annotations

from collections.abc import Sequence


def render_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """Columns padded to their widest cell; ``align`` is one of 'l'/'r' per column (numbers right)."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    if align is None:
        numeric = [bool(cells[1:]) and all(_numeric(r[i]) for r in cells[1:]) for i in range(len(headers))]
        align = "".join("r" if n else "l" for n in numeric)
    lines = []
    for n, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(s: str) -> bool:
    s = s.replace(",", "").replace("%", "").replace("*", "").strip()
    try:
        float(s)
    except ValueError:
        return s in ("", "-")
    return True


def millions(n: float, digits: int = 2) -> str:
    return f"{n / 1e6:.{digits}f}M"


def unreadable_note(skipped: Sequence[str]) -> str:
    """`` (N unreadable)`` after a count of images, when some could not be read."""
    return f" ({len(skipped)} unreadable)" if skipped else ""
