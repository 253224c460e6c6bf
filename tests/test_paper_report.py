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


def certified_entry(sigma, accuracy, robust, samples=100):
    radii = [0.0, 0.25, 0.5, 0.75, 1.0]
    return {"sigma": sigma, "radii": radii, "samples": samples, "attack": "cw-l2",
            "certified": {"certified_accuracy": dict(zip(["0", "0.25", "0.5", "0.75", "1"],
                                                         accuracy)),
                          "average_certified_radius": 0.5, "n0": 100, "n": 10_000,
                          "alpha": 0.001, "wall_time_s": 12.0},
            "empirical": {"robust": dict(zip(["0", "0.25", "0.5", "0.75", "1"], robust)),
                          "seconds": 3.0}}


def test_certified_section_marks_radii_no_certificate_can_reach():
    """The MNIST quick section (n = 10,000, alpha 0.001) gave r = 1 a 0.0 for every model:
    sigma 0.3 certifies at most 0.96 and sigma 0.25 at most 0.80 there, whatever the model.
    Those cells are marked and a note says why; the empirical rows and reachable radii not."""
    from advbench.paper.certified import certified_section

    results = {"certified": {
        "cnn-gda": certified_entry(0.3, [0.97, 0.9, 0.7, 0.3, 0.0], [0.99, 0.9, 0.5, 0.2, 0.1]),
        "cnn-gda-cohen": certified_entry(0.25, [0.98, 0.9, 0.8, 0.4, 0.0],
                                         [0.99, 0.95, 0.6, 0.3, 0.1])}}
    lines = certified_section(results, {"cnn-gda": "GDA + RELU"}, "mnist")
    table = lines[2].splitlines()
    assert table[2] == ("| GDA + RELU | 0.3 | certified (smoothed) | 97.0 | 90.0 | 70.0 | 30.0 | "
                        "0.0* | 0.500 | 12 |")
    assert table[3] == ("| GDA + RELU |  | empirical (cw-l2, base model) | 99.0 | 90.0 | 50.0 | "
                        "20.0 | 10.0 |  | 3 |")
    assert table[4] == ("| cnn-gda-cohen | 0.25 | certified (smoothed) | 98.0 | 90.0 | 80.0 | "
                        "40.0 | 0.0* | 0.500 | 12 |")
    assert lines[4] == ("\\* r above sigma x 3.20, the largest radius n = 10,000 draws can "
                        "certify at that sigma: 0 whatever the model (a larger n certifies "
                        "farther).\n")
    # n = 100,000 reaches r = 1 at sigma 0.3 (1.14), not at 0.25 (0.95).
    for entry in results["certified"].values():
        entry["certified"]["n"] = 100_000
    lines = certified_section(results, {}, "mnist")
    table = lines[2].splitlines()
    assert table[2].endswith("| 30.0 | 0.0 | 0.500 | 12 |")
    assert table[4].endswith("| 40.0 | 0.0* | 0.500 | 12 |")
    assert lines[4].startswith("\\* r above sigma x 3.81, the largest radius n = 100,000 ")
    # Every radius reachable: nothing marked, no note.
    for entry in results["certified"].values():
        entry["radii"] = [0.0, 0.25, 0.5, 0.75]
    lines = certified_section(results, {}, "mnist")
    assert "*" not in lines[2] and not lines[4].startswith("\\*")


def test_the_empirical_row_runs_c_and_w_at_confidence_zero():
    """The first CIFAR-10 run of the certified section ran the profile's C&W (confidence 2.3,
    the paper's): a point 2.3 logits past the boundary, not the nearest, so no image fell
    within r = 0.5 (median L2 1.33 where DeepFool found 0.54). The empirical row runs C&W at
    confidence 0 with the profile's other settings; other attacks as the profile sets them."""
    import dataclasses

    from advbench.paper.certified import empirical_attack
    from advbench.paper.profiles import PROFILES, QUICK_CW

    attack = empirical_attack(PROFILES["quick"])
    assert attack.name == "cw-l2" and attack.confidence == 0.0
    for name in ("binary_search_steps", "max_iter", "learning_rate", "initial_const"):
        assert getattr(attack, name) == QUICK_CW[name]
    demo = empirical_attack(PROFILES["demo"])
    assert demo.name == "deepfool" and demo.overshoot == 0.02 and demo.max_iter == 100
    assert empirical_attack(dataclasses.replace(
        PROFILES["quick"], attack_params={})).confidence == 0.0
