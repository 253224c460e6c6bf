"""The defenses, certified: a section of `advbench reproduce` beyond the paper (issue 23).

The paper argues that Gaussian data augmentation (GDA), with BRELU, makes a network smooth
around its inputs; it measures that smoothness with attacks only, which give upper bounds.
GDA is also how the base classifier of randomized smoothing is trained (Cohen, Rosenfeld and
Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019,
https://arxiv.org/abs/1902.02918), and smoothing turns it into a classifier with a provable
L2 radius per image. This section certifies the paper's GDA models (GDA + RELU and GDA +
BRELU as the paper trains them, at its sigma) and a GDA model trained at Cohen et al.'s
sigma with their recipe (``gda-cohen``), with ``advbench.score.certify`` (CERTIFY at each model's
training sigma), and puts beside each the empirical L2 robustness of the base model on the
same images: the share of images it classifies correctly and whose minimal adversarial
found by the profile's minimal L2 attack (C&W, or DeepFool in the demo) is farther than the
radius (an upper bound on the base model's robust accuracy at that radius).

One ``certified:<model>`` stage per model (first training seed only), after
``train:<model>``; the ``gda-cohen`` model has its own ``train:`` stage (first seed only: it
is used by this section alone).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from advbench.attacks import make_attack
from advbench.paper.tables import finish_accuracy_figure, markdown_table, percent, pyplot
from advbench.run.artifacts import read_attack_artifact
from advbench.run.runner import AttackRun
from advbench.run.shards import merge_shards
from advbench.score.certify import (CertifyRun, certification_entry, certify_split,
                                    largest_certifiable_radius, trained_sigma)
from advbench.score.transfer import craft_or_reuse

if TYPE_CHECKING:
    from advbench.paper.experiments import Reproduction, Stage

#: GDA trained as Cohen et al. train their base classifiers (``train --defense gda-cohen``):
#: used by this section only.
COHEN_MODEL = "cnn-gda-cohen"
#: The L2 radii of the section's table, per data set, in [0, 1] pixel units: MNIST the
#: ``evaluate`` defaults (Cohen et al.'s scale, up to 1); CIFAR-10's GDA sigma (0.05) cannot
#: certify past about 0.2 at n = 10,000, so smaller radii first.
RADII = {"mnist": (0.0, 0.25, 0.5, 0.75, 1.0), "cifar10": (0.0, 0.05, 0.1, 0.25, 0.5)}
#: The radius at which GDA + BRELU and GDA + RELU are compared in the section's verdict.
VERDICT_RADIUS = {"mnist": 0.5, "cifar10": 0.1}


def certified_stages(repro: Reproduction, trained: set[str]) -> list[Stage]:
    """The section's stages: ``train:<model>`` (first seed) for its models not in
    ``trained`` (the profile's own), then one ``certified:<model>`` per model."""
    from advbench.paper.experiments import Stage

    stages = [Stage(f"train {name} (for the certified section)",
                    functools.partial(repro._train, name), repro._train_weight(name),
                    id=f"train:{name}")
              for name in repro.profile.certified_models if name not in trained]
    stages += [Stage(f"certified: randomized smoothing of {name}",
                     functools.partial(run_certified, repro, name), 2.0,
                     id=f"certified:{name}", needs=(f"train:{name}",))
               for name in repro.profile.certified_models]
    return stages


def run_certified(repro: Reproduction, name: str) -> dict[str, Any]:
    """The stage ``certified:<name>``: CERTIFY the model at the GDA sigma it was trained with
    (``repro.profile.certify_params``: n0, n, alpha; ``certify_limit`` test images), and the
    profile's ``certify_attack`` (a minimal L2 attack) on the base model on the same images.
    Artifacts go to ``repro.runs_dir`` by run key, so a rerun reuses them.

    Stores and returns ``repro.results["certified"][name]``: {"sigma", "radii", "samples",
    "certified" (``certify.certification_entry`` without its curve, plus "curve"), "empirical"
    (``empirical_entry``), "attack", "artifacts"}.
    """
    path, model, meta = repro.model(name)
    sigma = trained_sigma(meta)
    if sigma is None:
        raise ValueError(f"{name} records no GDA sigma; the certified section certifies GDA "
                         "models only")
    p = repro.profile
    run = CertifyRun(model_path=str(path), dataset=repro.dataset, split="test",
                     limit=p.certify_limit, seed=repro.seed, data_dir=repro.data_dir,
                     sigma=sigma, **p.certify_params)
    certified = certify_split(run, model, meta, runs_dir=repro.runs_dir,
                              progress=repro.progress)
    attack = empirical_attack(p)
    attack_run = AttackRun(model_path=str(path), dataset=repro.dataset, split="test",
                           limit=p.certify_limit, batch_size=256, seed=repro.seed,
                           data_dir=repro.data_dir)
    empirical, _ = craft_or_reuse(attack_run, attack, (path, model, meta), repro.runs_dir,
                                  progress=repro.progress)
    if isinstance(empirical, list):  # shards of this run (advbench attack --shard)
        merged = Path(str(empirical[0]).rsplit("-shard", 1)[0] + ".h5")
        empirical, _ = merge_shards(empirical, merged, overwrite=True)
    radii = RADII[repro.dataset]

    def compute():
        entry = certification_entry(certified, radii)
        return {"sigma": sigma, "radii": list(radii), "samples": entry["samples"],
                "certified": {k: entry[k] for k in (
                    "smoothed_accuracy", "certified_accuracy", "average_certified_radius",
                    "abstention_rate", "n0", "n", "alpha", "wall_time_s", "curve")},
                "empirical": empirical_entry(empirical, radii, entry["curve"]["radius"]),
                "attack": p.certify_attack,
                "artifacts": [str(certified), str(empirical)]}

    entry = repro._cached(f"certified-{name}", [certified, empirical, path], compute)
    repro.results.setdefault("certified", {})[name] = entry
    return entry


#: Settings of the empirical row's attack over the profile's: C&W at a logit margin kappa > 0
#: (the paper's 2.3) looks for a point kappa past the boundary, not the nearest one; at 0 it
#: is Carlini and Wagner's minimal-distortion attack. (First CIFAR-10 run, 50 images: at
#: kappa 2.3 the C&W L2 on the GDA CNN had median 1.33, min 0.70, so no image fell at r <= 0.5;
#: DeepFool found 0.54 and 0.06 on the same images.)
MINIMAL_SETTINGS = {"cw-l2": {"confidence": 0.0}}


def empirical_attack(profile: Any) -> Any:
    """The minimal L2 attack of the empirical row: ``profile.certify_attack`` with the
    profile's parameters, and ``MINIMAL_SETTINGS`` over them."""
    return make_attack(profile.certify_attack,
                       **{**profile.attack_params.get(profile.certify_attack, {}),
                          **MINIMAL_SETTINGS.get(profile.certify_attack, {})})


def empirical_entry(artifact: str | Path, radii: tuple[float, ...],
                    grid: Sequence[float] = ()) -> dict[str, Any]:
    """The base model's empirical L2 robust accuracy at ``radii`` from a minimal attack's
    artifact: {"clean": clean accuracy, "robust": {radius: the share of images classified
    correctly whose adversarial was not found or is farther than the radius in L2},
    "curve": {"radius": ``grid``, "robust_accuracy": the same at each}, "median_l2": median
    L2 of the adversarials found on correctly classified images (None if none), "seconds"}.
    Fractions in [0, 1]."""
    attrs, arrays = read_attack_artifact(artifact)
    correct = np.asarray(arrays["pred_clean"]) == np.asarray(arrays["y"])
    fooled = correct & np.asarray(arrays["success_label"], bool)
    l2 = np.asarray(arrays["l2"], np.float64)

    def robust(r: float) -> float:
        return float(np.mean(correct & ~(fooled & (l2 <= r))))

    return {"clean": float(correct.mean()), "robust": {f"{r:g}": robust(r) for r in radii},
            "curve": {"radius": list(grid), "robust_accuracy": [robust(r) for r in grid]},
            "median_l2": float(np.median(l2[fooled])) if fooled.any() else None,
            "seconds": float(attrs.get("wall_time_s") or 0.0)}


def certified_figure(results: dict[str, Any], path: Path, labels: dict[str, str],
                     colours: dict[str, str]) -> Path | None:
    """Certified accuracy of each smoothed model against the L2 radius (solid), beside its
    base model's empirical robust accuracy (dashed); None when the section did not run."""
    certified = results.get("certified")
    if not certified:
        return None
    fig, ax = pyplot().subplots(figsize=(7.2, 4.8))
    for name, entry in certified.items():
        colour = colours.get(name)
        curve = entry["certified"]["curve"]
        ax.plot(curve["radius"], [100 * v for v in curve["certified_accuracy"]], color=colour,
                linewidth=1.8, label=f"{labels.get(name, name)}, certified (sigma "
                                     f"{entry['sigma']:g})")
        empirical = entry["empirical"]["curve"]
        ax.plot(empirical["radius"], [100 * v for v in empirical["robust_accuracy"]],
                color=colour, linestyle="--", linewidth=1.2,
                label=f"{labels.get(name, name)}, {entry['attack']} on the base model")
    return finish_accuracy_figure(
        fig, ax, path, xlabel="L2 radius ([0, 1] pixel units)",
        title="The defenses, certified: randomized smoothing (solid) and a minimal L2 attack "
              "(dashed)")


def compare(entries: dict[str, Any], first: str, second: str, radius: float) -> dict[str, Any]:
    """GDA + BRELU (``first``) against GDA + RELU (``second``) at ``radius``: {"difference"
    (points), "standard_error" (points, of the difference of two proportions on the same
    number of images), "verdict": "higher", "lower" or "no measurable difference" (beyond
    two standard errors or not)}."""
    a = entries[first]["certified"]["certified_accuracy"][f"{radius:g}"]
    b = entries[second]["certified"]["certified_accuracy"][f"{radius:g}"]
    n = min(entries[first]["samples"], entries[second]["samples"])
    se = 100 * math.sqrt((a * (1 - a) + b * (1 - b)) / max(n, 1))
    difference = 100 * (a - b)
    verdict = ("higher" if difference > 2 * se else "lower" if difference < -2 * se
               else "no measurable difference")
    return {"difference": difference, "standard_error": se, "verdict": verdict}


def certified_section(results: dict[str, Any], labels: dict[str, str], dataset: str,
                      figure: Path | None = None) -> list[str]:
    """The report's lines for "The defenses, certified" (none when its stages did not run):
    per model, certified accuracy (%) of the smoothed classifier at each radius beside the
    base model's empirical robust accuracy at the same radius, the ``figure`` (a path beside
    the report) when drawn, then what this adds to the paper's argument."""
    certified = results.get("certified")
    if not certified:
        return []
    radii = next(iter(certified.values()))["radii"]
    header = ["model", "sigma", "", *[f"r = {r:g}" for r in radii], "ACR", "seconds"]
    rows, samples, settings, attacks = [], set(), set(), set()
    capped = False
    for name, entry in certified.items():
        c, e = entry["certified"], entry["empirical"]
        samples.add(entry["samples"])
        settings.add((c["n0"], c["n"], c["alpha"]))
        attacks.add(entry["attack"])
        label = labels.get(name, name)
        # A radius past the largest n draws can certify at this sigma reads 0 whatever the
        # model: marked, so the 0 is not read as the model's.
        cap = largest_certifiable_radius(entry["sigma"], c["n"], c["alpha"])
        cells = [percent(c["certified_accuracy"].get(f"{r:g}"), 1) + ("*" if r > cap else "")
                 for r in radii]
        capped |= any(r > cap for r in radii)
        rows.append([label, f"{entry['sigma']:g}", "certified (smoothed)", *cells,
                     f"{c['average_certified_radius']:.3f}", f"{c['wall_time_s'] or 0:.0f}"])
        rows.append([label, "", f"empirical ({entry['attack']}, base model)",
                     *[percent(e["robust"].get(f"{r:g}"), 1) for r in radii], "",
                     f"{e['seconds']:.0f}"])
    n0, n, alpha = sorted(settings)[0]
    lines = [
        "## The defenses, certified\n",
        "Not in the paper. Certified L2 accuracy (%) of each GDA model smoothed at the sigma it "
        "was trained with (randomized smoothing, Cohen et al. 2019: `advbench certify`, CERTIFY "
        f"with n0 = {n0}, n = {n:,}, alpha = {alpha:g}) on "
        + ", ".join(str(s) for s in sorted(samples)) + " test images: the share of images "
        "the smoothed classifier gets right with a certified L2 radius of at least r (r in "
        "[0, 1] pixel units; r = 0 is the smoothed classifier's accuracy). Each certificate "
        f"holds with probability at least 1 - {alpha:g} over the noise, for the smoothed "
        "classifier, not the base network. Beside it, the base network's empirical robust "
        f"accuracy on the same images under {', '.join(sorted(attacks))} (a minimal L2 "
        + ("attack; C&W at confidence 0, its minimal-distortion setting" if "cw-l2" in attacks
           else "attack") + "): correct, and no adversarial found within r. That is an upper "
        "bound, for another classifier (the base network): the two rows bracket nothing "
        "between them, but a certificate far below the empirical number shows how much of "
        "the measured "
        f"robustness is proven. With n = {n:,} no radius can exceed sigma x "
        f"{_max_z(n, alpha):.2f}. ACR: average certified radius (0 for wrong or abstained "
        "images). Seconds: the certification's and the attack's time.\n",
        markdown_table(header, rows), "",
    ]
    if capped:
        lines.append(f"\\* r above sigma x {_max_z(n, alpha):.2f}, the largest radius n = {n:,} "
                     "draws can certify at that sigma: 0 whatever the model (a larger n "
                     "certifies farther).\n")
    if figure is not None:
        lines.append(f"![The defenses, certified]({figure.name})\n")
    lines += _claim_lines(certified, dataset)
    return lines


def _max_z(n: int, alpha: float) -> float:
    """Phi^-1 of the largest lower bound n draws can give (all n of one class)."""
    return largest_certifiable_radius(1.0, n, alpha)


def _claim_lines(certified: dict[str, Any], dataset: str) -> list[str]:
    """What the certificates add to the paper's smoothness claim for GDA + BRELU."""
    if not {"cnn-gda", "cnn-brelu-gda"} <= set(certified):
        return ["What this adds to the paper's argument: this profile certifies "
                f"{', '.join(sorted(certified))} only, so GDA + BRELU is not compared with "
                "GDA + RELU here (the quick profile compares them).\n"]
    radius = VERDICT_RADIUS[dataset]
    result = compare(certified, "cnn-brelu-gda", "cnn-gda", radius)
    brelu = certified["cnn-brelu-gda"]["certified"]["certified_accuracy"][f"{radius:g}"]
    relu = certified["cnn-gda"]["certified"]["certified_accuracy"][f"{radius:g}"]
    said = {"higher": "becomes a measurable certificate here: GDA + BRELU certifies more "
                      "images than GDA + RELU",
            "lower": "does not become a certificate here: GDA + BRELU certifies fewer images "
                     "than GDA + RELU",
            "no measurable difference": "does not become a measurable certificate here: GDA "
                                        "+ BRELU and GDA + RELU certify the same share of "
                                        "images within the spread"}[result["verdict"]]
    lines = [f"What this adds to the paper's argument: the claim that BRELU makes the GDA "
             f"network smoother {said} at radius {radius:g} ({percent(brelu, 1)}% against "
             f"{percent(relu, 1)}%, a difference of {result['difference']:+.1f} points, two "
             f"standard errors {2 * result['standard_error']:.1f}; one training seed, the "
             "same images, sigma, n and alpha for both)."]
    if COHEN_MODEL in certified:
        cohen = certified[COHEN_MODEL]
        lines.append(f" GDA trained as Cohen et al. train (one noisy copy per image per step, "
                     f"sigma {cohen['sigma']:g}) certifies "
                     f"{percent(cohen['certified']['certified_accuracy'][f'{radius:g}'], 1)}% "
                     f"at that radius.")
    return ["".join(lines) + "\n"]
