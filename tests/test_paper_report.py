"""advbench.paper.report: tables and curves averaged over training seeds."""

import pytest

from advbench.paper import report


def seed_results(accuracy, robustness, samples):
    return {"curves": [{"source": "cnn", "targets": ["cnn"], "attack": "fgsm", "eps": [0.1, 0.2],
                        "accuracy": {"cnn": accuracy}, "clean": {"cnn": 0.99}, "path": "p"}],
            "table2": {"cnn": {"robustness": {"value": robustness, "norm": "linf"},
                               "samples": samples, "adv_accuracy": None}}}


def test_mean_view_averages_numbers_and_keeps_identifiers():
    first = seed_results([0.6, 0.2], 0.2, 500)
    results = {**first, "by_seed": {0: first, 1: seed_results([0.8, 0.4], 0.3, 200)}}
    view = report._mean_view(results)
    curve = view["curves"][0]
    assert curve["accuracy"]["cnn"] == pytest.approx([0.7, 0.3])
    assert curve["eps"] == [0.1, 0.2] and curve["path"] == "p"
    row = view["table2"]["cnn"]
    assert row["robustness"] == {"value": pytest.approx(0.25), "norm": "linf"}
    assert row["samples"] == 500  # the first seed's count, never a mean of counts
    assert row["adv_accuracy"] is None
    assert report._average([0.5, None]) is None and report._average([None, None]) is None
    # One seed: the results as they are.
    assert report._mean_view({**first, "by_seed": {0: first}}) == {**first, "by_seed": {0: first}}


def test_seed_curves_stack_every_seed():
    first = seed_results([0.6, 0.2], 0.2, 500)
    results = {**first, "by_seed": {0: first, 1: seed_results([0.8, 0.4], 0.3, 200)}}
    eps, rows = report._seed_curves(results, "fgsm", True, "cnn")
    assert eps == [0.1, 0.2] and rows.tolist() == [[0.6, 0.2], [0.8, 0.4]]
    assert report._seed_curves(results, "rand-fgsm", True, "cnn") is None


def test_accuracy_figures_are_finished_by_one_helper(tmp_path):
    """Figure 3 and the certified figure label, save and close through
    ``tables.finish_accuracy_figure``: a PNG each, no figure left open."""
    from advbench.paper.certified import certified_figure
    from advbench.paper.tables import pyplot

    first = seed_results([0.6, 0.2], 0.2, 500)
    results = {**first, "by_seed": {0: first, 1: seed_results([0.8, 0.4], 0.3, 200)}}
    assert report.figure3(results, tmp_path / "figure3.png", ["cnn"]) == tmp_path / "figure3.png"
    curve = {"radius": [0.0, 0.5], "certified_accuracy": [0.9, 0.4]}
    certified = {"cnn-gda": {"sigma": 0.25, "attack": "fmn", "certified": {"curve": curve},
                             "empirical": {"curve": {"radius": [0.0, 0.5],
                                                     "robust_accuracy": [0.95, 0.6]}}}}
    assert certified_figure({"certified": certified}, tmp_path / "certified.png", {},
                            {}) == tmp_path / "certified.png"
    for name in ("figure3.png", "certified.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pyplot().get_fignums() == []
