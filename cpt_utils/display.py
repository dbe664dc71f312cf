"""Tables and figures shown for reading, not as notebook dumps.

``report_table`` turns a DataFrame into an object a notebook displays as a compact HTML table that
fits a 1280 px page: no index column, "—" for a value that does not apply, yes/no for booleans,
p-values as "< 0.001" or two significant digits, counts with thousands separators, units in the
headers, at most a handful of columns and rows in sight and the full table folded underneath.
``show_figure`` shows a figure, or one sentence saying why there is none.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .formatting import p_value

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

#: What a value that does not apply (NaN, None, empty) reads as.
MISSING = "—"
#: Most columns in the visible table; the full table is folded underneath.
MAX_COLUMNS = 8
#: Most rows in the visible table when no ``key`` says which rows matter.
MAX_ROWS = 20

_P_COLUMN = re.compile(r"^(p|p-value|p value|q)(\s*\(.*\))?$|^p\s", re.IGNORECASE)
_COUNT_COLUMN = re.compile(r"(^n$|^n\b|\b(tokens|documents|items|sequences|steps|registers|tasks|removed|kept|count|"
                           r"words|bytes|clusters|shards)\b)", re.IGNORECASE)

_STYLE = """<style>
table.cpt-table{border-collapse:collapse;table-layout:auto;width:auto;max-width:100%;margin:0.4em 0 0.8em 0;
  font-size:12px;line-height:1.3;font-variant-numeric:tabular-nums}
table.cpt-table caption{caption-side:top;text-align:left;font-weight:600;padding:0 0 0.3em 0;color:inherit}
table.cpt-table th,table.cpt-table td{padding:3px 7px;border:none;border-bottom:1px solid #ddd;max-width:22em;
  vertical-align:top;white-space:normal;overflow-wrap:anywhere;word-break:normal}
table.cpt-table th{font-weight:600;overflow-wrap:normal;hyphens:auto;vertical-align:bottom;border-bottom:1.5px solid #444}
table.cpt-table td.num{text-align:right!important;white-space:nowrap}
table.cpt-table th.num{text-align:right!important}
table.cpt-table .txt{text-align:left!important}
table.cpt-table td.nw{white-space:nowrap}
table.cpt-table tbody tr:nth-child(odd){background:#f7f7f7}
details.cpt-table-more{margin:0 0 1em 0;font-size:12px}
details.cpt-table-more>summary{cursor:pointer;color:#0072B2}
</style>"""


# ------------------------------------------------------------------------------------- formatting
def is_missing(value: Any) -> bool:
    """None, NaN, an empty string, or pandas' NA."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(value != value)  # NaN, NaT, pd.NA (its comparison raises: treated as missing)
    except (TypeError, ValueError):
        return True


def fmt_p(p: Any) -> str:
    """A p-value as every report prints it (``formatting.p_value``: "< 0.001" below that); words (e.g.
    "cannot be tested") pass through."""
    if is_missing(p):
        return MISSING
    if isinstance(p, str):
        return p
    return p_value(float(p))


def fmt_number(value: float, digits: int = 3) -> str:
    """``digits`` significant digits, never scientific notation for ordinary sizes; whole numbers of
    1,000 and more with thousands separators; a typographic minus."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    value = float(value)
    if math.isinf(value):
        text = "∞"
    elif value == 0:
        text = "0"
    elif abs(value) >= 10 ** digits or (value.is_integer() and abs(value) >= 1000):
        text = f"{abs(value):,.0f}"
    elif abs(value) < 10 ** -(digits + 2):
        text = f"{abs(value):.{max(0, digits - 1)}e}"
    else:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
        text = f"{abs(value):.{decimals}f}"
    return ("−" if value < 0 else "") + text


def fmt_count(value: Any) -> str:
    """A whole number with thousands separators."""
    return f"{int(round(float(value))):,}"


def _column_kind(name: str, values: list) -> str:
    present = [v for v in values if not is_missing(v)]
    if _P_COLUMN.match(str(name).strip()):
        return "p"
    if present and all(isinstance(v, (bool,)) or type(v).__name__ == "bool_" for v in present):
        return "bool"
    numbers_ = [v for v in present if isinstance(v, numbers.Number) and not isinstance(v, bool)]
    if not numbers_ or len(numbers_) < len(present):
        return "text"
    finite = [float(v) for v in numbers_ if math.isfinite(float(v))]
    if finite and all(v.is_integer() for v in finite) and (
            all(isinstance(v, numbers.Integral) for v in numbers_) or _COUNT_COLUMN.search(str(name))
            or max(map(abs, finite)) >= 10):  # whole numbers stored as floats (a NaN made the column float)
        return "count"
    return "number"


def format_cell(value: Any, kind: str, digits: int = 3) -> str:
    """One cell's text for a column of ``kind`` ("p", "bool", "count", "number", "text")."""
    if is_missing(value):
        return MISSING
    if kind == "p":
        return fmt_p(value)
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return "yes" if value else "no"
    if kind == "count" and isinstance(value, numbers.Number) and math.isfinite(float(value)):
        return fmt_count(value)
    if isinstance(value, numbers.Number):
        return fmt_number(value, digits)
    if isinstance(value, (list, tuple, set)):
        return ", ".join(map(str, value)) or MISSING
    return str(value)


# ------------------------------------------------------------------------------------------ tables
class ReportTable:
    """A table ready to read: ``frame`` holds the formatted text cells (all columns, all rows);
    ``visible_columns`` and ``visible_rows`` say what shows before the fold."""

    def __init__(self, frame: "pd.DataFrame", visible_columns: list[str], visible_rows: list[int],
                 kinds: dict[str, str], caption: str | None = None):
        self.frame, self.visible_columns, self.visible_rows = frame, visible_columns, visible_rows
        self.kinds, self.caption = kinds, caption

    @property
    def folded(self) -> bool:
        """Whether part of the table (columns or rows) is only in the folded full table."""
        return len(self.visible_columns) < self.frame.shape[1] or len(self.visible_rows) < self.frame.shape[0]

    def _html(self, columns: Sequence[str], rows: Iterable[int], caption: str | None) -> str:
        head = "".join(f'<th class="{"txt" if self.kinds[c] == "text" else "num"}">{html.escape(str(c))}</th>'
                       for c in columns)
        body = []
        for i in rows:
            row = self.frame.iloc[i]
            cells = "".join(f'<td class="{_cell_class(self.kinds[c], row[c])}">{html.escape(row[c])}</td>' for c in columns)
            body.append(f"<tr>{cells}</tr>")
        cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        return (f'<table class="cpt-table">{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{''.join(body)}</tbody></table>")

    def _repr_html_(self) -> str:
        columns = list(self.frame.columns)
        shown = self._html(self.visible_columns, self.visible_rows, self.caption)
        if not self.frame.shape[0]:
            return _STYLE + f"<p><em>{html.escape(self.caption or 'table')}: no rows.</em></p>"
        if not self.folded:
            return _STYLE + shown
        n, m = self.frame.shape
        hidden = []
        if len(self.visible_rows) < n:
            hidden.append(f"{n - len(self.visible_rows)} more row{'s' if n - len(self.visible_rows) != 1 else ''}")
        if len(self.visible_columns) < m:
            hidden.append(f"{m - len(self.visible_columns)} more column{'s' if m - len(self.visible_columns) != 1 else ''}")
        full = self._fold_html(columns)
        return (_STYLE + shown + f'<details class="cpt-table-more"><summary>full table ({n} row{"s" if n != 1 else ""} '
                f"× {m} column{'s' if m != 1 else ''}; {', '.join(hidden)})</summary>{full}</details>")

    def _fold_html(self, columns: list[str]) -> str:
        """The full table; wider than the page allows it is cut into slices that repeat the key columns."""
        keys = [c for c in self.visible_columns if self.kinds[c] == "text"][:2] or self.visible_columns[:1]
        rest = [c for c in columns if c not in keys]
        width = max(1, MAX_COLUMNS - len(keys))
        slices = [keys + rest[i:i + width] for i in range(0, len(rest), width)] or [keys]
        return "".join(self._html(cols, range(self.frame.shape[0]), None) for cols in slices)

    def __repr__(self) -> str:
        return self.frame.iloc[self.visible_rows][self.visible_columns].to_string(index=False)


#: Text no longer than this stays on one line (a change ± SE, a short name); longer text wraps.
_NOWRAP_CHARS = 20


def _cell_class(kind: str, text: str) -> str:
    if kind != "text":
        return "num"
    return "txt nw" if len(text) <= _NOWRAP_CHARS else "txt"


def _with_units(name: str, units: dict[str, str] | None) -> str:
    unit = (units or {}).get(name)
    return f"{name} ({unit})" if unit and f"({unit})" not in str(name) else str(name)


def _visible_rows(n: int, key) -> list[int]:
    if key is None:
        return list(range(min(n, MAX_ROWS)))
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        return list(range(min(n, int(key))))
    mask = [bool(k) for k in key]
    if len(mask) != n:
        raise ValueError(f"key: a mask of {len(mask)} values for a table of {n} rows")
    return [i for i, k in enumerate(mask) if k]


def report_table(df: "pd.DataFrame", *, key=None, units: dict[str, str] | None = None, caption: str | None = None,
                 digits: int | dict[str, int] = 3, columns: Sequence[str] | None = None,
                 drop_empty: bool = True, index_name: str = "item") -> ReportTable:
    """``df`` as a table for reading (see the module's docstring).

    ``key``: the rows to show before the fold — a boolean mask, or a row count (default: the first
    ``MAX_ROWS``). ``units``: column → unit, written into the header. ``digits``: significant digits,
    one number or per column. ``columns``: the key columns kept in sight when the table is wider than
    ``MAX_COLUMNS`` (default: the first ones). ``drop_empty``: drop columns with no value in any row.
    A meaningful index (not 0…N) becomes the first column, headed by its name (``index_name`` when it
    has none).
    """
    import pandas as pd  # lazy: importing the display module must not import pandas

    frame = pd.DataFrame(df).copy()
    if isinstance(frame.columns, pd.MultiIndex):  # e.g. a pivot table: one header row, levels joined
        frame.columns = [" · ".join(str(level) for level in col if str(level)) for col in frame.columns]
    if isinstance(frame.index, pd.MultiIndex):
        frame = frame.rename_axis([n or f"{index_name} {i + 1}" for i, n in enumerate(frame.index.names)]).reset_index()
    elif not isinstance(frame.index, pd.RangeIndex) or frame.index.name is not None:
        frame = frame.rename_axis(frame.index.name or index_name).reset_index()
    if drop_empty:
        frame = frame[[c for c in frame.columns if not all(is_missing(v) for v in frame[c].tolist())]]
    kinds, text = {}, {}
    for col in frame.columns:
        values = frame[col].tolist()
        kind = _column_kind(col, values)
        d = digits.get(col, 3) if isinstance(digits, dict) else digits
        name = _with_units(col, units)
        kinds[name], text[name] = kind, [format_cell(v, kind, d) for v in values]
    table = pd.DataFrame(text, columns=list(text)) if text else pd.DataFrame()
    wanted = [_with_units(c, units) for c in (columns or [])]
    unknown = [c for c in wanted if c not in kinds]
    if unknown:
        raise KeyError(f"columns {unknown} are not in the table ({list(kinds)})")
    visible = (wanted + [c for c in kinds if c not in wanted])[:max(MAX_COLUMNS, len(wanted))]
    visible = [c for c in kinds if c in visible]  # the table's own order
    return ReportTable(table, visible, _visible_rows(len(table), key), kinds, caption)


# ----------------------------------------------------------------------------------------- figures
def show_figure(fig: "Figure | None", reason: str) -> None:
    """Display ``fig`` (and close it, so the notebook does not draw it twice), or, when there is no
    figure (``None``), the one sentence ``reason`` saying why."""
    from IPython.display import Markdown, display  # lazy: IPython exists only where a notebook runs

    if fig is None:
        display(Markdown(f"*No figure: {reason}*"))
        return
    import matplotlib.pyplot as plt  # lazy: matplotlib only where a figure is drawn

    display(fig)
    plt.close(fig)
