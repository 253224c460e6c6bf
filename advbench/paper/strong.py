"""The defenses under strong white-box attacks: a section of `advbench reproduce` beyond the
paper, which measured its defenses with FGSM-family attacks, DeepFool, JSMA and C&W only.

One stage per defense model (``strong:<model>``, after ``train:<model>``) runs the AutoAttack
ensemble (Croce and Hein, ICML 2020, https://arxiv.org/abs/2003.01690; advbench's
``autoattack``: APGD-CE, then APGD-T, then Square, each on the images every earlier member
failed on) at each eps of ``STRONG_EPS`` on the profile's ``strong_limit`` test images, and
white-box FGSM at the same eps on the same images. The per-member numbers come from the
ensemble's own table (``robust_accuracy_by_attack`` on the artifact's ``broken_by``), as
AutoAttack prints it: robust accuracy after APGD-CE (APGD-CE alone: it runs first, on every
image), after APGD-T too, after Square too (the ensemble). APGD-T and Square alone are not
run: that would repeat APGD's work for no number the section needs.

Each model also gets an audit verdict, from ``audit_verdict``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from advbench.attacks import make_attack
from advbench.attacks.autoattack import AutoAttack, robust_accuracy_by_attack
from advbench.core.errors import ArtifactError
from advbench.core.progress import Progress
from advbench.core.types import Model, PathLike
from advbench.paper.tables import markdown_table, percent
from advbench.run.artifacts import read_attack_artifact
from advbench.run.curves import CurveRun, read_curve, run_curve
from advbench.run.runner import AttackRun
from advbench.run.shards import merge_shards
from advbench.score.transfer import craft_or_reuse

if TYPE_CHECKING:
    from advbench.paper.experiments import Reproduction, Stage

#: L-inf radii per data set. MNIST: the paper's FGSM range where defenses differ (Figure 4:
#: eps <= 0.3; 0.3 is also AutoAttack's MNIST budget). CIFAR-10: the paper gives no strong
#: budget; 0.03 (about 8/255, RobustBench's), 0.05 (its FGSM adversarial training) and 0.1
#: (its Table 5 FGSM).
STRONG_EPS = {"mnist": (0.1, 0.2, 0.3), "cifar10": (0.03, 0.05, 0.1)}


def strong_stages(repro: Reproduction, models: list[str]) -> list[Stage]:
    """One ``strong:<model>`` stage per model, each needing only ``train:<model>``."""
    from advbench.paper.experiments import Stage

    return [Stage(f"strong attacks on {name}", functools.partial(run_strong, repro, name), 3.0,
                  id=f"strong:{name}", needs=(f"train:{name}",)) for name in models]


def run_strong(repro: Reproduction, name: str) -> dict[str, Any]:
    """The stage ``strong:<name>``: AutoAttack and white-box FGSM at every eps of
    ``STRONG_EPS[repro.dataset]`` on ``repro.profile.strong_limit`` test images (None: all),
    with AutoAttack's parameters from ``repro.profile.attack_params["autoattack"]``
    (default: AutoAttack's standard ones). Artifacts go to ``repro.runs_dir`` at
    deterministic paths, so a rerun reuses them and an interrupted ensemble resumes.

    Stores and returns ``repro.results["strong"][name]``: {"eps": [...], "rows": one dict
    per eps (``strong_row``), "audit": ``audit_verdict``'s dict, "artifacts": paths}.
    """
    path, model, meta = repro.model(name)
    eps_values = STRONG_EPS[repro.dataset]
    limit = repro.profile.strong_limit
    run = AttackRun(model_path=str(path), dataset=repro.dataset, split="test", limit=limit,
                    batch_size=256, seed=repro.seed, data_dir=repro.data_dir)
    params = repro.profile.attack_params.get("autoattack", {})
    artifacts = []
    for eps in eps_values:
        attack = make_attack("autoattack", **{**params, "eps": eps})
        output, _ = craft_or_reuse(run, attack, (path, model, meta), repro.runs_dir,
                                   progress=repro.progress)
        if isinstance(output, list):  # shards of this run (advbench attack --shard)
            merged = Path(str(output[0]).rsplit("-shard", 1)[0] + ".h5")
            output, _ = merge_shards(output, merged, overwrite=True)
        artifacts.append(output)
    curve_run = CurveRun(dataset=repro.dataset, limit=limit, seed=repro.seed, batch_size=256,
                         data_dir=repro.data_dir)
    curve, _ = run_curve(curve_run, (path, model, meta), [(path, model, meta)], eps_values,
                         attack="fgsm", runs_dir=repro.runs_dir, progress=repro.progress)
    names = AutoAttack(**params).attack_names

    def compute():
        fgsm = read_curve(curve)
        rows = [strong_row(artifact, names, float(fgsm.accuracy[0][i]))
                for i, artifact in enumerate(artifacts)]
        x, y, _ = run.load()
        return {"eps": list(eps_values), "rows": rows,
                "audit": audit_verdict(model, x, y, eps_values,
                                       repro.profile.attack_params.get("audit", {}),
                                       dataset=repro.dataset, data_dir=repro.data_dir,
                                       seed=repro.seed, limit=limit, progress=repro.progress),
                "artifacts": [str(a) for a in [*artifacts, curve]]}

    entry = repro._cached(f"strong-{name}", [*artifacts, curve, path], compute)
    repro.results.setdefault("strong", {})[name] = entry
    return entry


def strong_row(artifact: str | Path, names: tuple[str, ...], fgsm: float) -> dict[str, Any]:
    """One eps of the section from an ``autoattack`` artifact: {"eps", "samples", "clean",
    "fgsm" (given: white-box FGSM accuracy on the same images), "after": robust accuracy
    after each member in order ({"apgd-ce": ..., "apgd-t": ..., "square": ...}, cumulative),
    "autoattack" (the last), "seconds" (the artifact's attack time)}; accuracies are
    fractions in [0, 1]. ArtifactError if the artifact is incomplete or has no
    ``broken_by``."""
    attrs, arrays = read_attack_artifact(artifact)
    if "extras/broken_by" not in arrays:
        raise ArtifactError(f"{artifact} has no broken_by array; it is not an autoattack "
                            "artifact: delete it and run the stage again")
    table = robust_accuracy_by_attack(arrays["extras/broken_by"], names)
    return {"eps": float(attrs["attack_params"]["eps"]), "samples": int(len(arrays["y"])),
            "clean": table["clean"], "fgsm": float(fgsm),
            "after": {n: table[n] for n in names}, "autoattack": table[names[-1]],
            "seconds": float(attrs.get("wall_time_s") or 0.0)}


def audit_verdict(model: Model, x: np.ndarray, y: np.ndarray, eps: tuple[float, ...],
                  params: dict[str, Any], *, dataset: str, data_dir: PathLike | None = None,
                  seed: int = 0, limit: int | None = None,
                  progress: Progress | None = None) -> dict[str, Any]:
    """The audit verdict of ``model`` for the section: {"verdict": str, "flags": [str],
    "source": str}, from ``advbench.score.audit.audit(model, x, y, eps=max(eps))``: x float32
    (n, H, W, C) in [0, 1], y int (n,), the section's images; the largest eps (0.3 on
    MNIST); ``params`` the profile's ``attack_params["audit"]`` (``checks``: a subset of
    ``advbench.score.AUDIT_CHECKS``, default all; the rest ``audit.AuditSettings`` fields).
    The verdict is the audit's worst check ("pass", "warn" or "fail"), the flags its checks
    that did not pass. Check 3's surrogate is trained as `advbench audit` trains it (``train_surrogate`` on
    ``dataset``'s training images in ``data_dir``), only when that check runs. The audit's
    parameter line (as `advbench audit` prints it) goes to ``progress``; ``limit``: how the
    images were drawn (class-balanced when given), for that line."""
    from advbench.data import display_name
    from advbench.score.audit import AuditSettings, audit, audit_parameters, train_surrogate

    values = dict(params)
    checks = values.pop("checks", None)
    settings = AuditSettings(**values)
    drawn = " (class-balanced)" if limit is not None else ""
    (progress or Progress(quiet=True)).log(audit_parameters(
        max(eps), "linf", checks, settings, seed=seed,
        samples=f"{len(y)} samples{drawn} of {display_name(dataset)} test (start 0, batch "
                "size 128)"))
    summary = audit(model, x, y, eps=max(eps), checks=checks, settings=settings, seed=seed,
                    surrogate=lambda: train_surrogate(dataset, data_dir=data_dir,
                                                      settings=settings, seed=seed)).summary
    return {"verdict": str(summary["verdict"]),
            "flags": [f"{check['name']}: {check['verdict']}" for check in summary["checks"]
                      if check["verdict"] != "pass"],
            "source": "advbench audit" + (f" ({', '.join(checks)})" if checks else "")}


def strong_section(results: dict[str, Any], labels: dict[str, str]) -> list[str]:
    """The report's lines for "The defenses under strong white-box attacks" (none when the
    stages did not run): accuracy (%) per model and eps, then the audit verdict per model."""
    strong = results.get("strong")
    if not strong:
        return []
    header = ["model", "eps", "clean", "FGSM", "APGD-CE", "+ APGD-T", "+ Square (AutoAttack)",
              "FGSM - AutoAttack", "seconds"]
    rows, verdicts, samples = [], [], set()
    for name, entry in strong.items():
        for row in entry["rows"]:
            after = row["after"]
            samples.add(row["samples"])
            rows.append([labels.get(name, name), f"{row['eps']:g}", percent(row["clean"], 1),
                         percent(row["fgsm"], 1), percent(after.get("apgd-ce"), 1),
                         percent(after.get("apgd-t"), 1), percent(row["autoattack"], 1),
                         f"{100 * (row['fgsm'] - row['autoattack']):+.1f}",
                         f"{row['seconds']:.0f}"])
        audit = entry["audit"]
        verdicts.append([labels.get(name, name), audit["verdict"],
                         "; ".join(audit["flags"]) or "-", audit["source"]])
    lines = [
        "## The defenses under strong white-box attacks\n",
        "Not in the paper, which measured its defenses with FGSM, DeepFool, JSMA and C&W. "
        "Accuracy (%) under the AutoAttack ensemble (advbench's `autoattack`, standard "
        "version without FAB-T: docs/attacks.md) on "
        + ", ".join(str(s) for s in sorted(samples)) + " test images per model, beside "
        "white-box FGSM on the same images at the same L-inf eps. The ensemble's columns are "
        "its own table, cumulative as AutoAttack prints it: after APGD-CE (which runs first, "
        "on every image: APGD-CE alone), after APGD-T too, after Square too (the ensemble's "
        "robust accuracy, lower than or equal to every member's). A defense whose FGSM "
        "accuracy is well above its AutoAttack accuracy owes its FGSM numbers to FGSM's "
        "weakness. Seconds: the ensemble's attack time at that eps.\n",
        markdown_table(header, rows), "",
    ]
    lines.append("Audit verdict (`advbench audit`, docs/audit.md) at the largest eps on the "
                 "same images: the worst of its checks, and the checks that did not pass.\n")
    lines += [markdown_table(["model", "audit verdict", "flags", "from"], verdicts), ""]
    return lines
