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


def test_frontier_from_a_record_also_draws_the_chosen_setting_as_this_run_trained_it():
    from types import SimpleNamespace

    from movierec import study

    trials = [{"rank_weight": w, "val_rmse": e, "val_ndcg@10": n}
              for w, e, n in ((0.5, 0.88, 0.13), (1.0, 0.879, 0.14))]
    objective = SimpleNamespace(rank_weight=1.0)
    main = SimpleNamespace(baseline=False, rating={"val_rmse": 0.867}, by="cosine",
                           sweep=trials[1:], setting={"rank_weight": 1.0},
                           trial=SimpleNamespace(val_by={"cosine": 0.141, "rating": 0.07},
                                                 tuned={"configs": (SimpleNamespace(
                                                     objective=objective), None)}))
    tuning = {"trials": trials, "best": {"rank_weight": 1.0}}

    def stars(fig):
        return [(line.get_xdata()[0], line.get_ydata()[0]) for line in fig.axes[0].lines
                if line.get_marker() == "*"]

    assert stars(study.frontier({"m": main}, "m", tuning)) == [(0.867, 0.141)]
    assert stars(study.frontier({"m": main}, "m", None)) == []  # its own sweep: nothing older
