"""One figure style for every notebook, and a guard that no figure leaves without title and units."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PALETTE = {"domain": "#1f77b4", "general": "#ff7f0e", "base": "#7f7f7f", "continued": "#2ca02c",
           "variant": "#9467bd", "fit": "#d62728"}


def apply_style() -> None:
    import matplotlib.pyplot as plt  # lazy: matplotlib only where a figure is drawn (headless: Agg)

    plt.rcParams.update({
        "figure.figsize": (7.5, 4.2), "figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "axes.titleweight": "bold",
        "legend.frameon": False, "savefig.bbox": "tight",
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
        for what, text in (("title", ax.get_title()), ("x label", ax.get_xlabel()), ("y label", ax.get_ylabel())):
            if not text:
                missing.append(f"axes {i}: no {what}")
    return missing
