"""The paper's claims, in its own words, and how `advbench reproduce` judges each over the
training seeds (``advbench.paper.statistics``).

Every claim is split into comparisons; each comparison is one number per training seed (a
paired difference: both models of the same seed, scored on the same test images), its 95%
bootstrap interval over seeds, and a verdict. "X is the best" claims use, per seed, the margin
of the claimed best over its strongest rival (the rival's identity may change between seeds),
so one interval covers the whole ranking. TensorFlow-free: it reads the results dicts of
``experiments.Reproduction`` and the models' metadata.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import numpy as np

from advbench.paper import published
from advbench.paper.statistics import Comparison, combine, compare, paired_differences

BySeed = Mapping[int, Mapping[str, Any]]      # seed -> that seed's results
Models = Mapping[int, Mapping[str, dict]]      # seed -> zoo name -> model metadata
PerSeed = dict[int, float]

GDA = ("cnn-gda", "cnn-brelu-gda")
SOURCE = "resnet"
#: The paper calls eps < 0.3 "the most significant" range (Section 4.3): curve claims use the
#: mean accuracy over the grid's eps in (0, 0.3].
SIGNIFICANT_EPS = 0.3
#: Thresholds of ours where the paper gives none (claim 7).
OVERHEAD_LIMIT = 1.2      # GDA's time per processed sample at most 1.2x the CNN's
ACCURACY_LOSS_LIMIT = 0.01  # clean accuracy at most 1 point below the CNN's


@dataclasses.dataclass(frozen=True)
class Claim:
    number: int
    where: str                # the table or figure it rests on
    quote: str                # the paper's words
    measure: str              # what we measure, and the side the claim takes
    datasets: tuple[str, ...]
    compute: Callable[[BySeed, Models, str], list[Comparison]]


# -- what the results hold, per seed ----------------------------------------------------------
def _curve(results: Mapping[str, Any], attack: str, white_box_of: str | None) -> dict | None:
    for entry in results.get("curves") or []:
        if entry["attack"] != attack:
            continue
        if white_box_of is not None and entry["targets"] == [white_box_of] == [entry["source"]]:
            return entry
        if white_box_of is None and entry["source"] == SOURCE and len(entry["targets"]) > 1:
            return entry
    return None


def curve_accuracy(by_seed: BySeed, name: str, attack: str, *, white_box: bool,
                   eps: float | None = None) -> PerSeed:
    """Accuracy of ``name`` per seed: at ``eps`` (a grid point), or the mean over the grid's
    eps in (0, 0.3] when ``eps`` is None."""
    out = {}
    for seed, results in by_seed.items():
        entry = _curve(results, attack, name if white_box else None)
        if entry is None or name not in entry["accuracy"]:
            continue
        grid, acc = np.asarray(entry["eps"]), np.asarray(entry["accuracy"][name], float)
        if eps is None:
            chosen = (grid > 0) & (grid <= SIGNIFICANT_EPS + 1e-9)
        else:
            chosen = np.abs(grid - eps) < 1e-6
        if chosen.any():
            out[seed] = float(acc[chosen].mean())
    return out


def table1_accuracy(by_seed: BySeed, source: str, target: str) -> PerSeed:
    out = {}
    for seed, results in by_seed.items():
        t1 = results.get("table1")
        if t1 and source in t1["names"] and target in t1["names"]:
            value = t1["summary"]["accuracy"][t1["names"].index(source)][
                t1["names"].index(target)]
            if value is not None:
                out[seed] = float(value)
    return out


def table2_value(by_seed: BySeed, name: str, field: str) -> PerSeed:
    """``field``: "robustness" (its value) or "training_distance" (its mean)."""
    key = "value" if field == "robustness" else "mean"
    out = {}
    for seed, results in by_seed.items():
        value = (((results.get("table2") or {}).get(name) or {}).get(field) or {}).get(key)
        if value is not None:
            out[seed] = float(value)
    return out


def table3_value(by_seed: BySeed, name: str) -> PerSeed:
    out = {}
    for seed, results in by_seed.items():
        value = ((results.get("table3") or {}).get(name) or {}).get("loss_sensitivity")
        if value is not None:
            out[seed] = float(value)
    return out


def table4_accuracy(by_seed: BySeed, name: str, attack: str) -> PerSeed:
    out = {}
    for seed, results in by_seed.items():
        value = (((results.get("table4") or {}).get(name) or {}).get(attack) or {}).get(
            "adv_accuracy")
        if value is not None:
            out[seed] = float(value)
    return out


def model_value(models: Models, name: str, get: Callable[[dict], float | None]) -> PerSeed:
    out = {}
    for seed, metas in models.items():
        if name in metas:
            value = get(metas[name])
            if value is not None:
                out[seed] = float(value)
    return out


def margin(best: list[PerSeed], rivals: list[PerSeed]) -> PerSeed:
    """Per seed measured on every side: the worst of ``best`` minus the best of ``rivals``
    (above 0: every claimed-best entry beats every rival in that seed)."""
    if not best or not rivals:
        return {}
    seeds = set.intersection(*(set(d) for d in best + rivals))
    return {s: min(d[s] for d in best) - max(d[s] for d in rivals) for s in sorted(seeds)}


def _present(by_seed: BySeed, names: tuple[str, ...], key: str) -> list[str]:
    """The names that some seed measured in its ``key`` table."""
    found: set[str] = set()
    for results in by_seed.values():
        table = results.get(key) or {}
        found |= set(table.get("names") or [] if key == "table1" else table)
    return [n for n in names if n in found]


def _label(name: str) -> str:
    return {**published.DEFENSE_LABELS, **published.TABLE1_LABELS}.get(name, name)


def _keep(*comparisons: Comparison | None) -> list[Comparison]:
    return [c for c in comparisons if c is not None]


# -- the claims -----------------------------------------------------------------------------
def _brelu_best(by_seed, models, dataset):
    archs = _present(by_seed, published.TABLE1_MODELS, "table1") or list(published.TABLE1_MODELS)
    rivals = [a for a in archs if a != "cnn-brelu"]
    out = []
    for eps in (0.1, 0.2, 0.3):
        acc = {a: curve_accuracy(by_seed, a, "fgsm", white_box=True, eps=eps)
               for a in ["cnn-brelu", *rivals]}
        out.append(compare(f"eps {eps}: CNN+BRELU - best of the other three",
                           margin([acc["cnn-brelu"]], [acc[a] for a in rivals]), "greater"))
    return _keep(*out)


def _resnet_not_better(by_seed, models, dataset):
    out = []
    for resnet, cnn in (("resnet", "cnn"), ("resnet-brelu", "cnn-brelu")):
        for eps in (0.1, 0.2, 0.3):
            out.append(compare(f"eps {eps}: {_label(resnet)} - {_label(cnn)}", paired_differences(
                curve_accuracy(by_seed, resnet, "fgsm", white_box=True, eps=eps),
                curve_accuracy(by_seed, cnn, "fgsm", white_box=True, eps=eps)), "less"))
    return _keep(*out)


def _own_examples(by_seed, models, dataset):
    archs = _present(by_seed, published.TABLE1_MODELS, "table1")
    out = []
    for target in archs:
        others = [table1_accuracy(by_seed, s, target) for s in archs if s != target]
        out.append(compare(f"tested on {_label(target)}: lowest black-box accuracy - "
                           "white-box accuracy",
                           margin(others, [table1_accuracy(by_seed, target, target)]),
                           "greater"))
    return _keep(*out)


def _cnn_above_90(by_seed, models, dataset):
    archs = _present(by_seed, published.TABLE1_MODELS, "table1")
    others = [table1_accuracy(by_seed, s, "cnn") for s in archs if s != "cnn"]
    floor = {s: 0.90 for s in set.union(*(set(d) for d in others))} if others else {}
    return _keep(compare("CNN+RELU: lowest accuracy under examples crafted on the other "
                         "architectures - 90%", margin(others, [floor]), "greater"))


def _gda_table2(by_seed, models, dataset):
    names = _present(by_seed, published.DEFENSE_MODELS, "table2")
    rivals = [n for n in names if n not in GDA]
    gda = [n for n in GDA if n in names]
    out = []
    for field, what in (("robustness", "robustness"), ("training_distance",
                                                       "training-set distance")):
        out.append(compare(f"{what}: worse GDA model - best other defense", margin(
            [table2_value(by_seed, n, field) for n in gda],
            [table2_value(by_seed, n, field) for n in rivals]), "greater"))
    return _keep(*out)


def _fs_ls_lower_robustness(by_seed, models, dataset):
    base = table2_value(by_seed, "cnn", "robustness")
    return _keep(*(compare(f"robustness: {_label(n)} - CNN", paired_differences(
        table2_value(by_seed, n, "robustness"), base), "less")
        for n in ("cnn-feature-squeezing", "cnn-label-smoothing")))


def _smoothest(by_seed, models, dataset):
    names = _present(by_seed, published.DEFENSE_MODELS, "table3")
    rivals = [table3_value(by_seed, n) for n in names if n != "cnn-gda"]
    base = table3_value(by_seed, "cnn")
    # Lower is smoother: the margin of the smoothest rival over GDA + RELU.
    smallest = {s: min(d[s] for d in rivals) for s in set.intersection(*(set(d) for d in rivals))
                } if rivals else {}
    out = [compare("lowest sensitivity among the others - GDA + RELU's", paired_differences(
        smallest, table3_value(by_seed, "cnn-gda")), "greater")]
    out += [compare(f"{_label(n)} - CNN", paired_differences(table3_value(by_seed, n), base),
                    "greater") for n in ("cnn-feature-squeezing", "cnn-label-smoothing")]
    return _keep(*out)


def _gda_blackbox(by_seed, models, dataset):
    names = _present(by_seed, published.DEFENSE_MODELS, "table4")
    rivals = [n for n in names if n not in GDA]
    gda = [n for n in GDA if n in names]
    attacks = published.BLACKBOX_ATTACKS if dataset == "cifar10" else (
        "fgsm", "deepfool", "jsma", "cw-l2")
    out = []
    for attack in attacks:
        best_gda = {}
        for_gda = [table4_accuracy(by_seed, n, attack) for n in gda]
        if for_gda:
            best_gda = {s: max(d[s] for d in for_gda)
                        for s in set.intersection(*(set(d) for d in for_gda))}
        out.append(compare(f"{published.BLACKBOX_LABELS[attack]}: better GDA model - best other "
                           "defense", margin([best_gda], [table4_accuracy(by_seed, n, attack)
                                                          for n in rivals]), "greater"))
    return _keep(*out)


def _ls_rand_fgsm(by_seed, models, dataset):
    return _keep(compare("Rand + FGSM (black-box): label smoothing - CNN", paired_differences(
        table4_accuracy(by_seed, "cnn-label-smoothing", "rand-fgsm"),
        table4_accuracy(by_seed, "cnn", "rand-fgsm")), "less"))


def _curve_vs_cnn(name: str, side: str, settings: tuple[tuple[str, bool], ...]):
    def compute(by_seed, models, dataset):
        out = []
        for attack, white_box in settings:
            setting = "white-box" if white_box else "black-box"
            out.append(compare(
                f"{setting} {attack}, mean accuracy over eps in (0, 0.3]: {_label(name)} - CNN",
                paired_differences(curve_accuracy(by_seed, name, attack, white_box=white_box),
                                   curve_accuracy(by_seed, "cnn", attack, white_box=white_box)),
                side))
        return _keep(*out)
    return compute


def _fs_vat_clean(by_seed, models, dataset):
    base = model_value(models, "cnn", lambda m: m.get("clean_test_accuracy"))
    return _keep(*(compare(f"clean accuracy: {_label(n)} - CNN", paired_differences(
        model_value(models, n, lambda m: m.get("clean_test_accuracy")), base), "less")
        for n in ("cnn-feature-squeezing", "cnn-vat")))


def per_sample_seconds(meta: dict) -> float | None:
    processed = meta.get("samples_processed")
    return meta["training_time_s"] / processed if processed else None


def _cost(by_seed, models, dataset):
    gda = model_value(models, "cnn-gda", per_sample_seconds)
    cnn = model_value(models, "cnn", per_sample_seconds)
    ratio = {s: gda[s] / cnn[s] for s in sorted(set(gda) & set(cnn)) if cnn[s] > 0}
    accuracy = paired_differences(
        model_value(models, "cnn-gda", lambda m: m.get("clean_test_accuracy")),
        model_value(models, "cnn", lambda m: m.get("clean_test_accuracy")))
    return _keep(
        compare(f"{OVERHEAD_LIMIT} - (GDA's time per processed sample / the CNN's)",
                {s: OVERHEAD_LIMIT - r for s, r in ratio.items()}, "greater"),
        compare(f"clean accuracy: GDA + RELU - CNN + {100 * ACCURACY_LOSS_LIMIT:.0f} point",
                {s: d + ACCURACY_LOSS_LIMIT for s, d in accuracy.items()}, "greater"))


BOTH = ("mnist", "cifar10")
CLAIMS: dict[int, Claim] = {c.number: c for c in (
    Claim(1, "Figure 3", "Notice that CNN + BRELU performs best for a distortion of up to "
          "ε = 0.3", "white-box FGSM accuracy at eps 0.1, 0.2, 0.3: CNN+BRELU minus the best "
          "of the other three architectures (claimed > 0)", ("mnist",), _brelu_best),
    Claim(2, "Figure 3", "ResNet does not sustain attacks better than CNN", "white-box FGSM "
          "accuracy at eps 0.1, 0.2, 0.3: ResNet minus CNN, with RELU and with BRELU (claimed "
          "< 0; an interval containing 0 is consistent with the claim but does not show it)",
          ("mnist",), _resnet_not_better),
    Claim(3, "Table 2", "both versions of the proposed defense yield a more robust model [...] "
          "Here as well, GDA with both setups obtains much better results than the other "
          "defenses", "minimal-FGSM robustness and training-set distance: the worse of the two "
          "GDA models minus the best other defense (claimed > 0)", ("mnist",), _gda_table2),
    Claim(4, "Table 2", "feature squeezing and label smoothing actually decrease the "
          "robustness of the model", "minimal-FGSM robustness: feature squeezing minus CNN, "
          "label smoothing minus CNN (claimed < 0)", ("mnist",), _fs_ls_lower_robustness),
    Claim(5, "Table 3", "Gaussian augmentation provides the smoothest model with the RELU "
          "activation. Notice that feature squeezing and label smoothing both induce higher "
          "gradients in the model", "loss sensitivity: the lowest of the other models minus "
          "GDA + RELU's (claimed > 0); feature squeezing and label smoothing minus CNN "
          "(claimed > 0)", ("mnist",), _smoothest),
    Claim(6, "Tables 4, 5", "On MNIST, [...] they obtain the best performance under FGSM, "
          "VAT, DeepFool, JSMA and C&W attacks [...] On CIFAR10, our methods consistently make "
          "the model more robust than the other defenses", "black-box accuracy (crafted on "
          "the seed's undefended ResNet), per attack (MNIST: FGSM, DeepFool, JSMA, C&W, the "
          "attacks the sentence names; CIFAR-10: all five): the better GDA model minus the "
          "best other defense, the CNN included (claimed > 0)", BOTH, _gda_blackbox),
    Claim(7, "Sections 1, 5", "the implementation of our method brings almost no overhead to "
          "the training procedure, while maintaining the prediction performance of the "
          "original model on clean samples", f"GDA + RELU against the CNN: {OVERHEAD_LIMIT} "
          "minus the ratio of training time per processed sample (claimed > 0: under 20% "
          "overhead, our threshold); clean test accuracy difference plus 1 point (claimed > "
          "0: at most 1 point lost, our threshold)", BOTH, _cost),
    Claim(8, "Table 1", "As is expected, each architecture is most fooled by its own "
          "adversarial examples.", "FGSM eps 0.1 transfer matrix, per tested architecture: "
          "the lowest accuracy under examples crafted on another architecture minus the "
          "white-box accuracy (claimed > 0)", ("mnist",), _own_examples),
    Claim(9, "Table 1", "the CNN retains an accuracy higher than 90% in all black-box "
          "attacks, even when the only change in the architecture is replacing RELU with "
          "BRELU", "the CNN's lowest accuracy under FGSM eps 0.1 examples crafted on the "
          "other three architectures, minus 90% (claimed > 0). The sentence is about Table 1 "
          "(Section 4.2); the paper's own Table 4 has the CNN at 40.70% under Random + FGSM",
          ("mnist",), _cnn_above_90),
    Claim(10, "Figures 4, 5", "label smoothing not only fails to strengthen the model in both "
          "setups, but it even worsens its robustness to adversarial attacks", "mean accuracy "
          "over eps in (0, 0.3] under FGSM and Random + FGSM, white-box and black-box: label "
          "smoothing minus CNN (claimed < 0)", BOTH, _curve_vs_cnn(
              "cnn-label-smoothing", "less", (("fgsm", True), ("rand-fgsm", True),
                                              ("fgsm", False), ("rand-fgsm", False)))),
    Claim(11, "Figures 4, 5", "adversarial training seems ineffective even against white-box "
          "attacks", "white-box mean accuracy over eps in (0, 0.3] under FGSM and Random + "
          "FGSM: FGSM adversarial training minus CNN (claimed < 0, i.e. no gain; an interval "
          "containing 0 is consistent with the claim but does not show it)", BOTH,
          _curve_vs_cnn("cnn-fgsm-at", "less", (("fgsm", True), ("rand-fgsm", True)))),
    Claim(12, "Table 4", "using label smoothing degrades the performance of the model under "
          "the Random + FGSM attack when compared to the CNN with no defense", "black-box "
          "Random + FGSM (eps 0.1) accuracy: label smoothing minus CNN (claimed < 0)",
          ("mnist",), _ls_rand_fgsm),
    Claim(13, "Figure 5", "using these last two defenses [feature squeezing and virtual "
          "adversarial training] seems to degrade the performances on true examples",
          "clean test accuracy: feature squeezing minus CNN, VAT minus CNN (claimed < 0)",
          ("cifar10",), _fs_vat_clean),
)}


def judge(claim: Claim, by_seed: BySeed, models: Models, dataset: str
          ) -> tuple[str | None, list[Comparison]]:
    """(verdict, comparisons) of ``claim``; verdict None when nothing was measured."""
    comparisons = claim.compute(by_seed, models, dataset)
    return (combine(c.verdict for c in comparisons) if comparisons else None), comparisons
