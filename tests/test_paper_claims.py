"""advbench.paper.claims: each claim computed from per-seed results (synthetic numbers)."""

import pytest

from advbench.paper import claims, statistics as st
from advbench.paper.published import BLACKBOX_ATTACKS, DEFENSE_MODELS, TABLE1_MODELS

SEEDS = range(5)


def curve(source, targets, attack, accuracy):
    return {"source": source, "targets": targets, "attack": attack, "eps": [0.1, 0.2, 0.3, 0.5],
            "accuracy": accuracy, "clean": {t: 0.99 for t in targets}}


def results_of(seed, *, brelu_gain=0.05):
    """One seed's results: CNN+BRELU ahead of the other architectures by ``brelu_gain``,
    ResNet behind CNN, each architecture most fooled by its own examples, GDA first."""
    base = {"cnn": 0.60, "cnn-brelu": 0.60 + brelu_gain, "resnet": 0.55, "resnet-brelu": 0.58}
    jitter = 0.002 * seed
    curves = [curve(a, [a], "fgsm", {a: [base[a] + jitter, 0.3, 0.1, 0.0]}) for a in base]
    names = list(TABLE1_MODELS)
    matrix = [[0.6 if s == t else 0.93 + jitter for t in names] for s in names]
    table2 = {n: {"robustness": {"value": 0.3 if "gda" in n else 0.2 - 0.01 * (n != "cnn")},
                  "training_distance": {"mean": 6.0 if "gda" in n else 5.0}}
              for n in DEFENSE_MODELS}
    table4 = {n: {a: {"adv_accuracy": (0.97 if "gda" in n else 0.95) + jitter}
                  for a in BLACKBOX_ATTACKS} for n in DEFENSE_MODELS}
    return {"curves": curves, "table1": {"names": names, "summary": {"accuracy": matrix}},
            "table2": table2, "table4": table4,
            "table3": {n: {"loss_sensitivity": 0.05 if n == "cnn-gda" else 0.1 + 0.01 * seed}
                       for n in DEFENSE_MODELS}}


def judge(number, by_seed, models=None, dataset="mnist"):
    return claims.judge(claims.CLAIMS[number], by_seed, models or {}, dataset)


def test_brelu_best_reproduced_when_ahead_in_every_seed():
    verdict, comparisons = judge(1, {s: results_of(s) for s in SEEDS})
    assert comparisons[0].label == "eps 0.1: CNN+BRELU - best of the other three"
    assert comparisons[0].interval.mean == pytest.approx(0.05)
    # At eps 0.2 and 0.3 every architecture has the same accuracy: a margin of exactly 0.
    assert [c.verdict for c in comparisons] == [st.REPRODUCED, st.INCONCLUSIVE,
                                                st.INCONCLUSIVE]
    assert verdict == st.INCONCLUSIVE
    verdict, _ = judge(1, {s: results_of(s, brelu_gain=-0.1) for s in SEEDS})
    assert verdict == st.NOT_REPRODUCED


def test_resnet_not_better_and_the_table1_claims():
    by_seed = {s: results_of(s) for s in SEEDS}
    _, comparisons = judge(2, by_seed)
    assert comparisons[0].verdict == st.REPRODUCED  # ResNet 5 points behind CNN at eps 0.1
    verdict, comparisons = judge(8, by_seed)
    assert verdict == st.REPRODUCED and len(comparisons) == 4
    assert comparisons[0].interval.mean == pytest.approx(0.334)
    verdict, comparisons = judge(9, by_seed)
    assert verdict == st.REPRODUCED
    assert comparisons[0].interval.mean == pytest.approx(0.034)


def test_table_claims_and_seeds_that_are_missing_a_measure():
    by_seed = {s: results_of(s) for s in SEEDS}
    assert judge(3, by_seed)[0] == st.REPRODUCED
    assert judge(4, by_seed)[0] == st.REPRODUCED  # FS and LS 0.01 below the CNN
    assert judge(5, by_seed)[0] == st.INCONCLUSIVE  # FS and LS equal to the CNN
    verdict, comparisons = judge(6, by_seed)
    assert verdict == st.REPRODUCED and len(comparisons) == 4  # MNIST: the four named attacks
    assert len(judge(6, by_seed, dataset="cifar10")[1]) == 5
    # One seed without Table 4: paired over the other four only.
    del by_seed[3]["table4"]
    assert judge(6, by_seed)[1][0].interval.n == 4
    assert judge(12, {})[0] is None  # nothing measured


def test_cost_claim_from_model_metadata():
    def meta(seconds, processed, accuracy):
        return {"training_time_s": seconds, "samples_processed": processed,
                "clean_test_accuracy": accuracy}
    models = {s: {"cnn": meta(60, 110_000, 0.985), "cnn-gda": meta(55 + s, 110_000, 0.99)}
              for s in SEEDS}
    verdict, (overhead, accuracy) = judge(7, {}, models)
    assert verdict == st.REPRODUCED
    assert overhead.interval.mean == pytest.approx(1.2 - 57 / 60)
    assert accuracy.interval.mean == pytest.approx(0.015)
    models[0]["cnn-gda"] = meta(200, 110_000, 0.99)
    models[1]["cnn-gda"] = meta(200, 110_000, 0.99)
    assert judge(7, {}, models)[1][0].verdict == st.INCONCLUSIVE
