"""The headline forest plot: every headline measure's change with its 95% interval, against the base
and against the control, one block per unit (never two units on one axis).

Data contract (one dict per row, in display order; ``headline.py`` builds them)::

    {"group": "domain tasks", "measure": "arc_easy_offline (gold bits/byte)", "unit": "bits/byte",
     "better": "lower" | "higher",
     "vs base": {"delta": float, "low": float, "high": float, "significant": bool},
     "vs control": {same keys} or None}

``low``/``high`` bound the 95% interval; ``significant`` means adjusted p < 0.05.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .plots import PALETTE, figure_svg

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The panel columns: the key in a row, the panel's title, its colour.
PANELS = (("vs base", "continued − base", PALETTE["continued"]),
          ("vs control", "continued − control", PALETTE["control"]))
#: The gid of every drawn estimate (one per row and panel), so a test can count them.
MARKER_GID = "forest-estimate"
_ROW_IN, _BLOCK_IN, _WIDTH_IN = 0.27, 1.05, 9.0


def _layout(rows: list[dict]) -> list[tuple[str, str | None, float]]:
    """Within a block: (kind, text, y) for group headers and rows, top to bottom (y grows downwards)."""
    out, y, group = [], 0.0, object()
    for r in rows:
        if r.get("group") != group:
            group = r.get("group")
            if group:
                out.append(("group", str(group), y))
                y += 1
        out.append(("row", r["measure"], y))
        y += 1
    return out


def _better_words(rows: list[dict]) -> str:
    directions = {r.get("better") for r in rows}
    if directions == {"lower"}:
        return "← better"
    if directions == {"higher"}:
        return "better →"
    return "better: lower for losses, higher for accuracies"


def _draw_panel(ax: "Axes", rows: list[dict], layout, key: str, color: str) -> None:
    ys = [y for kind, _, y in layout if kind == "row"]
    groups = [(text, y) for kind, text, y in layout if kind == "group"]
    for i, (_, y0) in enumerate(groups):  # a light band behind every other group
        y1 = groups[i + 1][1] if i + 1 < len(groups) else max(ys) + 1
        if i % 2 == 0:
            ax.axhspan(y0 - 0.5, y1 - 0.5, color="#000000", alpha=0.035, lw=0)
    for r, y in zip(rows, ys):
        est = r.get(key)
        if not est:
            continue
        ax.plot([est["low"], est["high"]], [y, y], color=color, lw=1.3, solid_capstyle="butt")
        (marker,) = ax.plot([est["delta"]], [y], "o", ms=6, color=color, mec=color, mew=1.3,
                            mfc=color if est.get("significant") else "white", zorder=3)
        marker.set_gid(MARKER_GID)
    ax.axvline(0, color="#444444", lw=0.8, zorder=1)
    ax.grid(axis="y", visible=False)


def fig_forest(rows: list[dict], title: str = "Headline changes with 95% intervals") -> "Figure | None":
    """The forest plot of ``rows`` (see the module's docstring); ``None`` when there are no rows."""
    if not rows:
        return None
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn
    from matplotlib.lines import Line2D  # lazy: as above

    units = list(dict.fromkeys(r["unit"] for r in rows))
    panels = [p for p in PANELS if p[0] == "vs base" or any(r.get(p[0]) for r in rows)]
    blocks = {u: [r for r in rows if r["unit"] == u] for u in units}
    layouts = {u: _layout(b) for u, b in blocks.items()}
    heights = [len(layouts[u]) + 0.8 for u in units]
    fig_h = sum(len(layouts[u]) for u in units) * _ROW_IN + len(units) * _BLOCK_IN + 0.9
    fig, axes = plt.subplots(len(units), len(panels), figsize=(_WIDTH_IN, fig_h), squeeze=False,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    for b, unit in enumerate(units):
        block, layout = blocks[unit], layouts[unit]
        for c, (key, name, color) in enumerate(panels):
            ax = axes[b][c]
            if c:
                ax.sharex(axes[b][0])  # one x-axis per unit: the panels compare at one scale
            _draw_panel(ax, block, layout, key, color)
            ax.set_ylim(max(y for *_, y in layout) + 0.6, -0.6)
            ax.set_yticks([y for *_, y in layout])
            ax.set_yticklabels([text if kind == "row" else text.upper() for kind, text, _ in layout] if not c
                               else [""] * len(layout))
            if not c:
                for tick, (kind, _, _) in zip(ax.get_yticklabels(), layout):
                    tick.set_fontweight("bold" if kind == "group" else "normal")
                    tick.set_fontsize(7 if kind == "group" else 8)
            ax.set_title(f"{name}: {unit}", fontsize=9, loc="left")
            ax.set_xlabel(f"change in {unit}   ({_better_words(block)})", fontsize=8)
            ax.set_ylabel("measure" if not c else "same measures as left", fontsize=8)
    handles = [Line2D([], [], marker="o", ls="-", color="#444444", mfc="#444444", label="significant (adjusted p < 0.05)"),
               Line2D([], [], marker="o", ls="-", color="#444444", mfc="white", label="not significant"),
               Line2D([], [], color="#444444", lw=1.3, label="whisker: 95% interval")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle(title, fontsize=11, fontweight="bold")
    return fig


def forest_svg(rows: list[dict], run: str) -> str:
    """The headline forest plot of run ``run`` as SVG text (what the index embeds and the model card
    writes beside itself); empty without rows."""
    import matplotlib.pyplot as plt  # lazy: matplotlib loads only where a figure is drawn

    fig = fig_forest(rows, title=f"{run}: what changed, with 95% intervals")
    if fig is None:
        return ""
    svg = figure_svg(fig)
    plt.close(fig)
    return svg
