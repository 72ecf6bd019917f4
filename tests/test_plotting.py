"""The figure helpers: layout, shared colour scale, errors."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import qkvcourse as qc


def test_show_heatmaps_grid_and_shared_colour_scale():
    weights = torch.rand(2, 3, 4, 5)
    weights[1, 2, 0, 0] = 7.0
    fig = qc.show_heatmaps(weights, xlabel="keys", ylabel="queries", titles=["a", "b", "c"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 6
    for ax in panels:
        assert ax.images[0].get_clim() == (pytest.approx(float(weights.min())), 7.0)
    assert [ax.get_title() for ax in panels[:3]] == ["a", "b", "c"]
    assert panels[3].get_xlabel() == "keys" and panels[0].get_ylabel() == "queries"
    np.testing.assert_allclose(panels[5].images[0].get_array(), weights[1, 2].numpy())
    plt.close(fig)


@pytest.mark.parametrize("shape, panels", [((4, 5), 1), ((3, 4, 5), 3)])
def test_show_heatmaps_promotes_lower_ranks(shape, panels):
    fig = qc.show_heatmaps(torch.rand(shape), "k", "q")
    assert len([ax for ax in fig.axes if ax.images]) == panels
    plt.close(fig)


def test_show_heatmaps_errors():
    with pytest.raises(ValueError, match=r"matrices must be .* got shape \(5,\)"):
        qc.show_heatmaps(torch.rand(5), "k", "q")
    with pytest.raises(ValueError, match="titles must have one entry per column"):
        qc.show_heatmaps(torch.rand(1, 2, 3, 3), "k", "q", titles=["only one"])


def test_plot_several_curves():
    x = np.linspace(0, 1, 11)
    ax = qc.plot(x, [x, x ** 2], xlabel="x", ylabel="y", legend=["x", "x^2"])
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_allclose(lines[1].get_ydata(), x ** 2)
    assert ax.get_legend() is not None and ax.get_xlabel() == "x"
    plt.close(ax.figure)


def test_importing_the_package_does_not_import_matplotlib():
    """matplotlib is loaded when a figure is drawn (issue 11): not on import."""
    import subprocess
    import sys

    code = ("import sys, qkvcourse\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
