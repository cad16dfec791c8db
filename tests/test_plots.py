"""Figures are written whole (PNG, atomically) from the shapes the recipes hand them."""

from edgecond.plots import bar_plot, line_plot

PNG = b"\x89PNG\r\n\x1a\n"


def test_bar_plot_draws_groups_with_different_bars(tmp_path):
    groups = {"digits 5 IPC": {"a": (96.5, 0.2), "b": (98.0, 0.7)}, "cifar 10 IPC": {"b": (54.0, 0.2)}}
    path = bar_plot(groups, tmp_path / "bars.png", "accuracy (%)", "title")
    assert path.read_bytes().startswith(PNG)
    assert [p.name for p in tmp_path.iterdir()] == ["bars.png"]  # no temporary left behind


def test_line_plot_with_and_without_error_bars(tmp_path):
    series = {"x": ([1, 2, 3], [0.1, 0.2, 0.3], None), "y": ([1, 2, 3], [0.3, 0.2, 0.1], [0.01, 0.02, 0.01])}
    assert line_plot(series, tmp_path / "lines.png", "experience", "accuracy").read_bytes().startswith(PNG)
