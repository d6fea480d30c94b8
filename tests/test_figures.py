"""The report's figures read at the page's width: every piece of text at least 10 px on screen where
report.html shows the figure (its body is PAGE_PX wide; a wider PNG is shrunk to fit), for small and
large models alike."""
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from irrepprobe.report import figures as F


def screen_px(fig) -> float:
    """The smallest text of ``fig`` in screen pixels once saved (tight box) and shown in report.html."""
    fig.canvas.draw()
    width = fig.get_tightbbox().width * F.SAVE_DPI  # inches after bbox_inches="tight"
    scale = min(1.0, F.PAGE_PX / width)
    texts = [t for t in fig.findobj(plt.Text) if t.get_text().strip() and t.get_visible()]
    return min(t.get_fontsize() * F.SAVE_DPI / 72 * scale for t in texts)


def grids(points: int, blocks: list[str], seed=0):
    rng = np.random.default_rng(seed)
    index = [f"layers.{k}" for k in range(points)]

    def g(lo, hi):
        return pd.DataFrame(rng.uniform(lo, hi, (points, len(blocks))), index=index, columns=blocks)
    return g(0, 1), g(0, 900), g(-1, 1)


@pytest.mark.parametrize("points,blocks", [(3, ["0e", "1o", "2e"]), (12, ["0e", "0o", "1o", "1e", "2e", "2o", "3o", "3e"])])
def test_heatmap_text_is_legible_at_the_page_width(points, blocks):
    norm, util, sel = grids(points, blocks)
    marks = pd.DataFrame("", index=util.index, columns=util.columns)
    marks.iloc[0, 0] = "unreachable"
    fig = F.utilisation_heatmap(norm, util, sel, "a title", "u0", 0.05, marks=marks.replace("", np.nan))
    assert screen_px(fig) >= 10
    plt.close(fig)
    fig = F.probe_heatmap(norm, sel, "a title\nsecond line")
    assert screen_px(fig) >= 10
    plt.close(fig)
    cka = pd.DataFrame(np.eye(points), index=norm.index, columns=norm.index)
    fig = F.cka_heatmap(cka, "cka")
    assert screen_px(fig) >= 10
    plt.close(fig)


def test_a_cell_beyond_the_colour_scale_writes_its_own_value():
    norm, util, sel = grids(2, ["0e", "1o"])
    util.iloc[0, 0] = 1234.0
    fig = F.utilisation_heatmap(norm, util, sel, "t", "u0", 0.05)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any("1,234%" in t and "beyond scale" in t for t in texts)
    plt.close(fig)


def test_latent_maps_draw_the_largest_values_last():
    xy = np.random.default_rng(0).normal(size=(50, 2))
    values = np.arange(50.0)[::-1]
    fig = F.latent_maps([{"point": "p", "block": "0e", "xy": xy, "colours": [
        ("target", values, "t", "viridis"), ("error", values, "e", "magma_r")]}], "t")
    drawn = fig.axes[0].collections[0].get_array()
    assert drawn[-1] == values.max()  # on top
    assert screen_px(fig) >= 10
    plt.close(fig)
