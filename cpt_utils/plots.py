"""One figure style for every notebook, and a guard that no figure leaves without title and units."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: Okabe–Ito colours: distinguishable with the common colour-vision deficiencies and in greyscale print.
OKABE_ITO = {"blue": "#0072B2", "orange": "#E69F00", "green": "#009E73", "purple": "#CC79A7",
             "vermillion": "#D55E00", "sky": "#56B4E9", "yellow": "#F0E442", "grey": "#999999", "black": "#000000"}

PALETTE = {"domain": OKABE_ITO["blue"], "general": OKABE_ITO["orange"], "base": OKABE_ITO["grey"],
           "continued": OKABE_ITO["green"], "variant": OKABE_ITO["purple"], "fit": OKABE_ITO["vermillion"],
           "control": OKABE_ITO["sky"], "front": OKABE_ITO["vermillion"]}

#: Colours for a series of things with no role of their own (tasks, registers, runs), in order.
CYCLE = [OKABE_ITO[c] for c in ("blue", "orange", "green", "purple", "vermillion", "sky", "black", "grey")]


def series_color(i: int) -> str:
    """The ``i``-th colour of the colour-blind-safe cycle (wraps around)."""
    return CYCLE[i % len(CYCLE)]


def apply_style() -> None:
    """Figures for print: compact fonts, thin spines, a light grid, the colour-blind-safe cycle."""
    import matplotlib.pyplot as plt  # lazy: matplotlib only where a figure is drawn (headless: Agg)
    from cycler import cycler  # lazy: ships with matplotlib

    plt.rcParams.update({
        "figure.figsize": (7.5, 4.2), "figure.dpi": 110, "savefig.bbox": "tight", "svg.fonttype": "path",
        "font.size": 9, "axes.titlesize": 10, "axes.titleweight": "bold", "axes.labelsize": 9,
        "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8, "legend.frameon": False,
        "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
        "xtick.major.size": 3, "ytick.major.size": 3,
        "axes.spines.top": False, "axes.spines.right": False,
        "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.5, "axes.axisbelow": True,
        "axes.prop_cycle": cycler(color=CYCLE), "lines.linewidth": 1.4, "lines.markersize": 5,
        "errorbar.capsize": 2.5,
    })


def label(ax: "Axes", title: str, xlabel: str, ylabel: str) -> "Axes":
    """Set title and axis labels in one call; labels should carry units, e.g. 'tokens seen'."""
    if not (title and xlabel and ylabel):
        raise ValueError("every figure needs a title and both axis labels (with units)")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def unlabelled_axes(fig: "Figure") -> list[str]:
    """Axes of ``fig`` missing a title or an axis label (empty list = the figure is complete)."""
    missing = []
    for i, ax in enumerate(fig.axes):
        if not ax.has_data() and not ax.images:
            continue  # colourbars, empty slots
        title = " ".join(ax.get_title(loc) for loc in ("left", "center", "right")).strip()
        for what, text in (("title", title), ("x label", ax.get_xlabel()), ("y label", ax.get_ylabel())):
            if not text:
                missing.append(f"axes {i}: no {what}")
    return missing


def figure_svg(fig: "Figure") -> str:
    """``fig`` as inline SVG text for a page that embeds figures directly: no XML header or doctype, and
    scaled to the page: its natural width at most, never wider than the page (``max-width:100%``), the
    height following the width (the ``viewBox`` keeps the aspect ratio)."""
    import io

    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # drop <?xml …?>, the doctype and comments before the root element
    head_end = text.index(">")
    head = re.sub(r'\s(height|style)="[^"]*"', "", text[:head_end])
    return head + ' style="max-width:100%;height:auto"' + text[head_end:]
