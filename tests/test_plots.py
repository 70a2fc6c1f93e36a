"""The report's figures name what they show."""

import matplotlib
import pandas as pd

from movierec import plots

matplotlib.use("Agg")


def test_frontier_colour_bar_names_several_weights_inside_the_range_tried():
    points = pd.DataFrame({"rank_weight": [0.15, 0.7, 3.0, 9.0],
                           "val_rmse": [0.871, 0.8712, 0.8805, 0.889],
                           "val_ndcg@10": [0.10, 0.13, 0.14, 0.12]})
    fig = plots.frontier(points, {"rank_weight": 3.0}, {})
    bar = fig.axes[1]  # the colour bar's axes
    labels = [t.get_text() for t in bar.get_yticklabels() if t.get_text()]
    assert labels == ["0.2", "0.5", "1", "2", "5"]
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    x_labels = [t.get_text() for t in ax.get_xticklabels() if lo <= t.get_position()[0] <= hi]
    assert 2 <= len(x_labels) <= 6 and all(len(t) <= 5 for t in x_labels)


def test_frontier_draws_every_setting_the_search_tried_and_rings_the_chosen():
    from types import SimpleNamespace

    from movierec import study

    trials = [{"rank_weight": w, "val_rmse": e, "val_ndcg@10": n}
              for w, e, n in ((0.5, 0.88, 0.13), (1.0, 0.879, 0.14), (3.0, 0.9, 0.135))]
    main = SimpleNamespace(baseline=False, sweep=trials, setting={"rank_weight": 1.0})
    fig = study.frontier({"m": main}, "m")
    dots = fig.axes[0].collections[0].get_offsets()
    assert [tuple(d) for d in dots] == [(0.88, 0.13), (0.879, 0.14), (0.9, 0.135)]
    rings = [(line.get_xdata()[0], line.get_ydata()[0]) for line in fig.axes[0].lines
             if line.get_marker() == "o"]
    assert rings == [(0.879, 0.14)]
