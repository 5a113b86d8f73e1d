"""Checks every figure test applies, in both layers: it renders, has a title, and its axes state units."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator


def png_pixels(fig: Figure) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    buf.seek(0)
    return mpimg.imread(buf)


def assert_readable(fig: Figure) -> None:
    """A title, and axis labels that state units, on every axes that has data."""
    titles = [fig.get_suptitle()] + [ax.get_title() for ax in fig.axes]
    assert any(t.strip() for t in titles), "a figure needs a title"
    for ax in fig.axes:
        if ax.lines or ax.patches or ax.collections:
            categorical_y = isinstance(ax.yaxis.get_major_locator(), FixedLocator)  # named bars: no unit
            if ax.get_yscale() == "logit":
                categorical_y = False  # fixed ticks on a scale, not named bars: the label still needs a unit
            shared = ax.get_shared_x_axes().get_siblings(ax)  # stacked panels: the bottom one carries it
            assert any("(" in a.get_xlabel() for a in shared), f"x label without a unit: {ax.get_xlabel()!r}"
            beside = ax.get_shared_y_axes().get_siblings(ax)  # small multiples: the left column carries it
            assert any(a.get_ylabel() for a in beside), "every axis needs a label"
            assert categorical_y or any("(" in a.get_ylabel() for a in beside), \
                f"y label without a unit: {ax.get_ylabel()!r}"
    pixels = png_pixels(fig)
    assert pixels.shape[0] > 50 and pixels.std() > 0, "the figure rendered blank"
