"""The report of `advbench reproduce`: report.md with the paper's numbers beside ours, PNG
figures (matplotlib, Agg backend), and a findings section that checks each of the paper's
claims against what this run measured."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from advbench import __version__
from advbench.core.revision import describe
from advbench.paper import authors, claims as paper_claims, published
from advbench.paper.certified import certified_figure, certified_section
from advbench.paper.strong import strong_section
from advbench.paper.tables import (finish_accuracy_figure, markdown_table as _table,
                                   number as _num, percent as _pct, pyplot)
from advbench.run.artifacts import jsonable, read_model_metadata
from advbench.score.report import save_figure, write_text

if TYPE_CHECKING:
    from advbench.paper.experiments import Reproduction

# Curve colours per model, fixed so that every figure uses the same one for a model.
COLOURS = {
    "cnn": "#1f77b4", "cnn-brelu": "#ff7f0e", "resnet": "#2ca02c", "resnet-brelu": "#d62728",
    "cnn-feature-squeezing": "#9467bd", "cnn-label-smoothing": "#8c564b",
    "cnn-fgsm-at": "#e377c2", "cnn-vat": "#7f7f7f", "cnn-gda": "#bcbd22",
    "cnn-brelu-gda": "#17becf", "cnn-gda-cohen": "#000000",
}
LABELS = {**published.DEFENSE_LABELS, **published.TABLE1_LABELS,
          "cnn-gda-cohen": "GDA as Cohen et al. (one noisy copy per step)"}


# -- figures ---------------------------------------------------------------------------------
def _curves(results, attack: str, source_only: bool, source: str | None = None) -> list[dict]:
    """Curve entries for one attack: white-box (source == target) or from one source."""
    out = []
    for entry in results.get("curves", []):
        if entry["attack"] != attack:
            continue
        if source_only and entry["targets"] == [entry["source"]]:
            out.append(entry)
        elif not source_only and entry["source"] == source and len(entry["targets"]) > 1:
            out.append(entry)
    return out


def _seed_curves(results: dict, attack: str, white_box: bool, name: str,
                 source: str | None = None) -> tuple[list[float], np.ndarray] | None:
    """(eps, accuracy per seed x eps) of one model's curve over every training seed."""
    rows: list[list[float]] = []
    grid: list[float] = []
    for seed_results in (results.get("by_seed") or {0: results}).values():
        for e in _curves(seed_results, attack, white_box, source):
            if name in e["accuracy"] and (not white_box or e["source"] == name):
                grid = grid or e["eps"]
                if len(e["eps"]) == len(grid):
                    rows.append(e["accuracy"][name])
    return (grid, np.asarray(rows, float)) if rows else None


def _plot_band(ax, eps, rows, name, **style):
    """Mean over seeds as a line, min-max over seeds as a band (a line alone for one seed)."""
    ax.plot(eps, 100 * rows.mean(axis=0), color=COLOURS.get(name),
            label=LABELS.get(name, name), **style)
    if len(rows) > 1:
        ax.fill_between(eps, 100 * rows.min(axis=0), 100 * rows.max(axis=0),
                        color=COLOURS.get(name), alpha=0.18, linewidth=0)


def _eps_lines(ax, lines: dict[float, str]):
    """Vertical eps marks, each labelled with what it is."""
    for value, text in lines.items():
        ax.axvline(value, color="grey", linestyle=":", linewidth=1)
        ax.text(value, 99, f" eps {value}: {text}", rotation=90, va="top", ha="left",
                fontsize=7, color="dimgrey")


def figure3(results: dict, path: Path, models: list[str]) -> Path | None:
    """White-box FGSM accuracy per architecture: mean over seeds with min-max bands, the
    paper's points where it printed them (Table 1's diagonal, eps 0.1)."""
    curves = {}
    for name in models:
        found = _seed_curves(results, "fgsm", True, name)
        if found is not None:
            curves[name] = found
    if not curves:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    for name, (eps, rows) in curves.items():
        _plot_band(ax, eps, rows, name, linewidth=1.8)
        if name in published.TABLE1:
            ax.plot([0.1], [published.TABLE1[name][name]], marker="*", markersize=11,
                    color=COLOURS.get(name), markeredgecolor="black", linestyle="none")
    ax.plot([], [], marker="*", color="white", markeredgecolor="black", markersize=11,
            linestyle="none", label="paper (Table 1 diagonal, eps 0.1)")
    _eps_lines(ax, {0.1: "Table 1", 0.3: "the paper's bound for undetectable FGSM"})
    seeds = max(len(rows) for _, rows in curves.values())
    return finish_accuracy_figure(
        fig, ax, path, xlabel="FGSM eps (L-inf)",
        title="Figure 3: white-box FGSM, per architecture (MNIST)" + (
            f"\nlines: mean over {seeds} seeds; bands: min-max over seeds" if seeds > 1 else ""))


def figure4(results: dict, path: Path, defenses: list[str], source: str,
            dataset: str) -> Path | None:
    panels = [("fgsm", True, "FGSM, white-box"), ("fgsm", False, f"FGSM, black-box (from {source})"),
              ("rand-fgsm", True, "Random + FGSM, white-box"),
              ("rand-fgsm", False, f"Random + FGSM, black-box (from {source})")]
    if not any(_curves(results, a, wb, source) for a, wb, _ in panels):
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True, sharey=True)
    reference = published.TABLE4 if dataset == "mnist" else published.TABLE5
    for ax, (attack, white_box, title) in zip(axes.flat, panels):
        for name in defenses:
            found = _seed_curves(results, attack, white_box, name, None if white_box else source)
            if found is None:
                continue
            _plot_band(ax, found[0], found[1], name, linewidth=2.2 if "gda" in name else 1.4,
                       linestyle="-" if "gda" in name or name == "cnn" else "--")
            if attack == "fgsm" and not white_box and name in reference:
                # The paper's black-box FGSM (eps 0.1) accuracy: Table 4 / 5's first column.
                ax.plot([0.1], [reference[name][0]], marker="*", markersize=10,
                        color=COLOURS.get(name), markeredgecolor="black", linestyle="none")
        if attack == "fgsm" and not white_box:
            ax.plot([], [], marker="*", color="white", markeredgecolor="black", markersize=10,
                    linestyle="none", label=f"paper (Table {4 if dataset == 'mnist' else 5}, "
                    "FGSM column, eps 0.1)")
        _eps_lines(ax, {0.1: "Tables 4, 5", 0.3: "upper end of the significant range"})
        ax.set_title(title)
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("eps (L-inf)")
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy (%)")
    handles, labels = axes[0, 1].get_legend_handles_labels()
    if not handles:
        handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize="small")
    number = 4 if dataset == "mnist" else 5
    seeds = len(results.get("by_seed") or {0: None})
    fig.suptitle(f"Figure {number}: defenses under FGSM and Random + FGSM ({dataset})" + (
        f"; lines: mean over {seeds} seeds, bands: min-max over seeds" if seeds > 1 else ""))
    fig.tight_layout(rect=(0, 0.12, 1, 0.96))
    try:
        save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)
    return path


def figure1(results: dict, path: Path) -> Path | None:
    fig1 = results.get("figure1")
    if not fig1 or not fig1["panels"]:
        return None
    plt = pyplot()
    rows = [("clean", None)] + [(name, panel) for name, panel in fig1["panels"].items()]
    fig, axes = plt.subplots(len(rows), 10, figsize=(12, 1.5 * len(rows) + 0.6))
    for r, (name, panel) in enumerate(rows):
        for c in range(10):
            ax = axes[r, c]
            image = fig1["x"][c] if panel is None else panel["x_adv"][c]
            ax.imshow(image.squeeze(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if panel is not None and panel.get("eps") is not None:
                found = panel["found"][c] if panel.get("found") is not None else True
                ax.set_title(f"eps {panel['eps'][c]:.2f}" if found else "not fooled",
                             fontsize=8)
            elif panel is None:
                ax.set_title(f"label {int(fig1['y'][c])}", fontsize=8)
            if c == 0:
                ax.set_ylabel(LABELS.get(name, name).replace(" (no defense)", "\n(no defense)"),
                              fontsize=8)
    fig.suptitle("Figure 1: minimal FGSM perturbations of the first ten test images")
    fig.tight_layout()
    try:
        save_figure(fig, path, dpi=100)
    finally:
        plt.close(fig)
    return path


# -- the report ------------------------------------------------------------------------------
def write_report(repro: Reproduction) -> Path:
    """Write report.md (and its figures) for a finished ``Reproduction``; returns its path."""
    root, results, profile = repro.root, repro.results, repro.profile
    out: list[str] = []
    models = {}
    for name, path in repro.models.items():
        models[name] = read_model_metadata(path)
    by_seed_models: dict[int, dict[str, dict]] = {}
    for key, meta in models.items():
        base = key.rsplit("-seed", 1)[0] if "-seed" in key else key
        by_seed_models.setdefault(int(meta.get("seed", repro.seed)), {})[base] = meta
    seeds = sorted((results.get("by_seed") or {}).keys())
    view = _mean_view(results)
    out.append(f"# advbench reproduce: {repro.dataset}, profile `{profile.name}`\n")
    out.append(f"Reproduction of Zantedeschi, Nicolae, Rawat, \"Efficient Defenses Against "
               f"Adversarial Attacks\" (2017) with advbench {__version__}, "
               f"{_dt.date.today().isoformat()}, on {platform.machine()} with "
               f"{os.cpu_count()} CPU cores ({_device()}).\n")
    if repro.dataset == "toy":
        out.append("**Toy experiment** (the paper's Figure 2): circles and half-moons, a "
                   "two-hidden-layer MLP (64 ReLU units each) trained on 300 points plus one "
                   "added point per original point for each augmentation; see docs/toy.md. "
                   "The `--profile` does not change it.\n")
    else:
        out.append(f"**Profile `{profile.name}`**: {profile.description}.\n")
    if repro.dataset == "cifar10":
        out.append("CIFAR-10 here is a JPEG (quality 75) re-encode of the original images "
                   "(about 30.5 dB PSNR), built by ../shared/data/cifar10/build_bin.py: "
                   "accuracies are close to, not identical with, those on the lossless data.\n")
    if len(seeds) > 1:
        out.append(f"**Seeds**: every model (the black-box source included) was trained with "
                   f"{len(seeds)} seeds ({', '.join(map(str, seeds))}: training subset, initial "
                   "weights, batch order, GDA noise); every experiment ran once per seed on the "
                   "same test images. Tables and figures give the mean over seeds (figures: "
                   "with min-max bands); the findings judge each claim by 95% bootstrap "
                   "intervals over seeds.\n")
    timings = repro.timings
    out.append(_provenance(repro, timings))
    out.append(f"Reproduce with `advbench reproduce --dataset {repro.dataset} --profile "
               f"{profile.name}`. Paper numbers are in parentheses.\n")

    if repro.dataset == "toy":
        out += _toy_section(results, root)
    else:
        out += _models_section(by_seed_models, profile)
        if "demo" in results:
            out += _demo_section(results["demo"])
        else:
            out += _definitions_section()
        out += _table1_section(view)
        if "figure3" in profile.experiments and figure3(results, root / "figure3.png",
                                                        list(published.TABLE1_MODELS)):
            out.append("## Figure 3: white-box FGSM per architecture\n")
            out.append("![Figure 3](figure3.png)\n")
            out.append("Stars: the paper's white-box accuracy at eps 0.1 (Table 1's diagonal); "
                       "the paper prints no other point of Figure 3. Accuracy (%), mean over "
                       "seeds:\n")
            out.append(_curve_table(view, "fgsm", True, None, list(published.TABLE1_MODELS)))
        defenses = [m for m in published.DEFENSE_MODELS if m in profile.models]
        number = 4 if repro.dataset == "mnist" else 5
        if figure4(results, root / f"figure{number}.png", defenses, "resnet", repro.dataset):
            out.append(f"## Figure {number}: defenses under FGSM and Random + FGSM\n")
            out.append(f"![Figure {number}](figure{number}.png)\n")
            out.append(f"Stars: the paper's black-box FGSM accuracy at eps 0.1 (Table {number}'s "
                       "FGSM column); the paper prints no other point of the figure.\n")
            points = (0.05, 0.1, 0.2, 0.3) if repro.dataset == "cifar10" else None
            for attack in ("fgsm", "rand-fgsm"):
                out.append(f"White-box {attack}, accuracy (%) at selected eps (mean over "
                           "seeds):\n")
                out.append(_curve_table(view, attack, True, None, defenses, points))
                out.append(f"Black-box {attack} (crafted on the undefended ResNet of the same "
                           "seed):\n")
                out.append(_curve_table(view, attack, False, "resnet", defenses, points))
        out += _table2_section(view, repro.dataset)
        # The authors' code measured one model per defense: their columns sit beside the
        # first seed's (results, not the mean view).
        out += authors.table2_section(results, repro.dataset)
        out += _table3_section(view)
        out += authors.table3_section(results, repro.dataset)
        out += _table4_section(view, repro.dataset, profile, len(seeds))
        out += strong_section(results, LABELS)
        out += certified_section(results, LABELS, repro.dataset, certified_figure(
            results, root / "certified.png", LABELS, COLOURS))
        if figure1(results, root / "figure1.png"):
            out.append("## Figure 1: minimal perturbations\n")
            out.append("Minimal FGSM (the Table 2 attack) on the first ten test images; titles "
                       "give the smallest eps that changes the prediction.\n")
            out.append("![Figure 1](figure1.png)\n")
        if "demo" not in results:
            out += _findings(results, by_seed_models, repro.dataset)
            out += authors.settings_section(profile.name)
    out += stage_times_section(timings)
    path = root / "report.md"
    write_text(path, "\n".join(out) + "\n")
    provenance = {"advbench_version": __version__, "revision": repro.revision,
                  "invocation": repro.invocation}
    write_text(root / "results.json", json.dumps(jsonable({**results, "provenance": provenance},
                                                          strict=False), indent=1))
    return path


def _provenance(repro, timings: dict[str, tuple[float, str]]) -> str:
    """Which code made the report, when, under what load, and how much of it this
    invocation computed (one uninterrupted run computes every stage)."""
    run = repro.invocation
    worked = sum(where != "an earlier run" for _, where in timings.values())
    text = (f"**Provenance**: advbench {__version__} at {describe(repro.revision)} (read when "
            "this invocation started).")
    if run.get("finished"):
        loads = [run.get("load_start"), run.get("load_end")]
        load = (f"; 1-min load average {loads[0][0]:.2f} at the start, {loads[1][0]:.2f} at "
                f"the end, on {os.cpu_count()} cores" if all(loads) else "")
        text += (f" This invocation ran from {run['started']} to {run['finished']} "
                 f"({run['wall_seconds'] / 60:.1f} min wall clock{load}).")
    text += (f" {worked} of {len(timings)} stages did their work in it"
             + (" (one uninterrupted run)." if worked == len(timings) else
                f"; the other {len(timings) - worked} were found complete on disk, done by an "
                "earlier invocation, a job array or Ray tasks (their times below say so)."))
    return text + "\n"


def stage_times_section(timings: dict[str, tuple[float, str]]) -> list[str]:
    """The report's stage times: per stage, the seconds of the run(s) that did its work
    (``Reproduction.timings``: kept in timings.json across interrupts and resumes)."""
    return ["## Stage times\n",
            f"Sum over the stages when they did their work: "
            f"{sum(t for t, _ in timings.values()) / 60:.1f} min.\n",
            _table(["stage", "seconds", "measured in"],
                   [[k, f"{t:.1f}", where] for k, (t, where) in timings.items()])]


def _device() -> str:
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    except Exception:  # reporting only
        gpus = []
    return f"{len(gpus)} GPU" if gpus else "no GPU"


def _models_section(by_seed: dict[int, dict[str, dict]], profile) -> list[str]:
    """One row per model: means over its training seeds (min-max of the clean accuracy)."""
    names = list(dict.fromkeys(n for metas in by_seed.values() for n in metas))
    rows = []
    for name in names:
        metas = [metas[name] for metas in by_seed.values() if name in metas]
        meta = metas[0]
        params = ", ".join(f"{k}={v}" for k, v in (meta.get("defense_params") or {}).items())
        acc = [m["clean_test_accuracy"] for m in metas]
        seconds = [m["training_time_s"] for m in metas]
        epochs = [max(m["epochs_run"], 1) for m in metas]
        processed = [max(m["samples_processed"], 1) for m in metas]
        rows.append([LABELS.get(name, name), name, params or "-", len(metas),
                     f"{np.mean(epochs):g}", meta["train_samples"],
                     f"{np.mean(processed):.0f}",
                     _pct(float(np.mean(acc))) + (f" [{_pct(min(acc))}, {_pct(max(acc))}]"
                                                  if len(acc) > 1 else ""),
                     f"{np.mean(seconds):.0f}",
                     f"{np.mean([t / e for t, e in zip(seconds, epochs)]):.1f}",
                     f"{1e6 * np.mean([t / n for t, n in zip(seconds, processed)]):.0f}"])
    return ["## Models\n", _footing_note(profile), _table(
        ["model", "zoo name", "defense parameters", "seeds", "epochs", "train images",
         "samples processed", "clean test acc (%) [min, max]", "train time (s)", "s / epoch",
         "us / processed sample"], rows),
        "\nTimes are means over seeds; \"train time\" is the whole training (both phases of "
        "adversarial training and VAT, with the crafting of their adversarials), measured on "
        "this machine while the stage ran.\n"]


def _footing_note(profile) -> str:
    """How this profile puts the defenses on an equal footing, and why."""
    if profile.patience >= max(profile.epochs, profile.static_epochs or 0, profile.gda_epochs):
        return ("**Equal footing: the same number of processed samples.** Early stopping is "
                "off (patience >= epochs), and the epochs are chosen so that every model "
                "processes about the same number of training samples: an undefended epoch is "
                "one pass over the images, a GDA epoch eleven (each image and 10 noisy "
                "copies), an adversarial-training or VAT epoch three (a phase over the images, "
                "then one over the images and their adversarials). Chosen over training to "
                "convergence because it fixes the cost in advance (what a 2-core budget "
                "needs) and makes the defenses' cost comparable per sample (claim 7); "
                "convergence by early stopping is the `paper` profile's rule.\n")
    return (f"**Equal footing: every model trained to convergence** (early stopping on "
            f"validation accuracy, patience {profile.patience}, at most {profile.epochs} "
            "epochs, best weights kept; the authors' schedule): each defense gets the samples "
            "it needs, so the processed samples differ (GDA's epochs are 11 passes).\n")


def _definitions_section() -> list[str]:
    return ["## Success and \"fooled\"\n",
            "An adversarial sample *fools* the model (counts as a success) when its prediction "
            "differs from the model's prediction on the clean image, as in IBM ART and the "
            "authors' code; the artifacts also store success against the true label (a "
            "sample the model already misclassified then counts as fooled). Which each table "
            "uses:\n",
            "- Accuracies (Tables 1, 4, 5 and the curves of Figures 3-5): the share of "
            "adversarial images predicted as their true label; no success definition enters.\n"
            "- Table 2 robustness and training-set distance, and its \"fooled\" column: "
            "against the clean prediction (the minimal-FGSM search stops when the prediction "
            "changes, the paper's rule); the fooled share against the true label is given "
            "beside it.\n"
            "- Table 3 (loss sensitivity): clean images, no attack.\n"
            "- The demo table's DeepFool success: over the samples the model classifies "
            "correctly (AutoAttack's convention), so the clean errors cannot cap it; DeepFool "
            "starts from the clean prediction, as ART, and its mean L2 and robustness average "
            "over every sample whose prediction it moved.\n"]


def _demo_section(demo: dict) -> list[str]:
    rows = []
    for name, summary in demo.items():
        by_attack = {a["attack"]: a for a in summary["artifacts"]}
        fgsm, deepfool = by_attack.get("fgsm", {}), by_attack.get("deepfool", {})
        robustness = (deepfool.get("robustness") or {}).get("value")
        rows.append([LABELS.get(name, name), _pct(summary["clean"]["accuracy"]),
                     _pct(fgsm.get("adv_accuracy")), _pct(deepfool.get("success_rate")),
                     _num((deepfool.get("norms") or {}).get("l2_mean")), _num(robustness),
                     _num(summary["clean"]["loss_sensitivity"], 4)])
    return ["## Undefended vs GDA + BRELU\n", _table(
        ["model", "clean acc (%)", "FGSM eps 0.1 acc (%)",
         "DeepFool success (% of correctly classified)",
         "DeepFool mean L2", "robustness (L2)", "loss sensitivity"], rows), ""]


def _table1_section(results) -> list[str]:
    t1 = results.get("table1")
    if not t1:
        return []
    summary, names = t1["summary"], t1["names"]
    cells = {(src, tgt): summary["accuracy"][i][j]
             for i, src in enumerate(names) for j, tgt in enumerate(names)}
    rows = []
    for src in names:
        row = [f"crafted on {LABELS[src]}"]
        for tgt in names:
            ours = cells.get((src, tgt))
            row.append(f"{_pct(ours)} ({published.TABLE1[src][tgt]:.2f})")
        rows.append(row)
    return ["## Table 1: FGSM (eps 0.1) transfer matrix, accuracy (%)\n",
            "Rows: crafted on; columns: tested on; the diagonal is white-box. Each seed's "
            "models attack each other; mean over seeds.\n",
            _table([""] + [f"tested on {LABELS[n]}" for n in names], rows), ""]


def _accuracy_at(entry, name, eps_value):
    eps = np.asarray(entry["eps"])
    i = int(np.argmin(np.abs(eps - eps_value)))
    return entry["accuracy"][name][i] if abs(eps[i] - eps_value) < 1e-6 else None


def _curve_table(results, attack, white_box, source, names, points=None) -> str:
    points = points or (0.1, 0.2, 0.3, 0.5, 1.0)
    rows = []
    for e in _curves(results, attack, white_box, source):
        for name in e["accuracy"]:
            if name in names and (not white_box or name == e["source"]):
                rows.append([LABELS.get(name, name), _pct(e["clean"][name])] +
                            [_pct(_accuracy_at(e, name, p)) for p in points])
    rows.sort(key=lambda r: list(LABELS.values()).index(r[0]) if r[0] in LABELS.values() else 99)
    return _table(["model", "clean"] + [f"eps {p}" for p in points], rows) + "\n"


def _table2_section(results, dataset) -> list[str]:
    t2 = results.get("table2")
    if not t2:
        return []
    rows = []
    for name, s in t2.items():
        rob = s.get("robustness") or {}
        dist = s.get("training_distance") or {}
        p = published.TABLE2.get(name, (None, None, None)) if dataset == "mnist" else (None,) * 3
        rows.append([LABELS.get(name, name),
                     f"{_pct(s['adv_accuracy'])} ({_num(p[0], 2)})",
                     f"{_num(rob.get('value'))} ({_num(p[1])})",
                     f"{_num(dist.get('mean'), 2)} ({_num(p[2], 2)})",
                     # Over all samples, against the clean prediction (the paper's rule).
                     _pct(s.get("success_rate_prediction", s["success_rate"])),
                     _pct(s.get("success_rate_label")), s["samples"]])
    return ["## Table 2: white-box minimal FGSM\n",
            "Minimal FGSM with the paper code's grid (eps step 0.05 up to 1.0). Accuracy: "
            "on the returned examples (a sample never fooled on the grid keeps its label); "
            "robustness: mean over fooled samples (prediction moved off the clean prediction, "
            "as ART and the paper's authors count them) of ||dx||_inf / ||x||_inf (ART's "
            "definition); training-set distance: mean exact L2 distance of the fooled "
            "adversarials to their nearest training image (the paper's code divided a squared "
            "distance by ||x||; see docs/metrics.md). The paper's accuracy column (52% for "
            "the undefended CNN) cannot be the accuracy on minimal-FGSM examples searched up "
            "to eps 1, which fool nearly every image: it is the share of images the authors' "
            "search left unflipped (the next table computes it).\n",
            _table(["defense", "accuracy (%)", "robustness", "training-set distance",
                    "fooled vs clean prediction (%)", "fooled vs label (%)", "samples"],
                   rows), ""]


def _table3_section(results) -> list[str]:
    t3 = results.get("table3")
    if not t3:
        return []
    rows = [[LABELS.get(n, n), f"{_num(s['loss_sensitivity'], 4)} ({_num(published.TABLE3.get(n), 4)})",
             s["samples"]] for n, s in t3.items()]
    return ["## Table 3: local loss sensitivity\n",
            "Mean over clean test images of ||dJ(x, y)/dx||_2 with a per-sample loss.\n",
            _table(["model", "loss sensitivity", "samples"], rows), ""]


def _table4_section(results, dataset, profile=None, seeds: int = 1) -> list[str]:
    t4 = results.get("table4")
    if not t4:
        return []
    reference = published.TABLE4 if dataset == "mnist" else published.TABLE5
    rows = []
    samples = {}
    for name, row in t4.items():
        cells = [LABELS.get(name, name)]
        for j, attack in enumerate(published.BLACKBOX_ATTACKS):
            s = row.get(attack)
            samples[attack] = s["samples"] if s else None
            ref = reference.get(name)
            cells.append(f"{_pct(s['adv_accuracy'] if s else None)} "
                         f"({_num(ref[j], 2) if ref else 'n/a'})")
        rows.append(cells)
    number = 4 if dataset == "mnist" else 5
    note = ""
    if seeds > 1 and profile is not None and profile.seed_expensive_limit is not None:
        note = (f" (first seed; {profile.seed_expensive_limit} for DeepFool, JSMA and C&W on "
                "the other seeds)")
    return [f"## Table {number}: black-box accuracy (%), crafted on the undefended ResNet\n",
            "Each seed's defenses are attacked with examples crafted on that seed's ResNet; "
            f"mean over {seeds} seed(s), the paper's number in parentheses. Samples per "
            "attack: " + ", ".join(f"{published.BLACKBOX_LABELS[a]} {n}"
                                   for a, n in samples.items()) + note + ".\n",
            _table(["defense"] + [published.BLACKBOX_LABELS[a] for a in published.BLACKBOX_ATTACKS],
                   rows), ""]


def _toy_section(results, root: Path) -> list[str]:
    out = ["## Figure 2: toy data sets\n"]
    for name, res in (results.get("toy") or {}).items():
        png = Path(res["png"])
        out.append(f"### {name}\n")
        out.append(f"![{name}]({png.relative_to(root) if png.is_relative_to(root) else png})\n")
        rows = [[aug, _pct(m["test_accuracy"]), _num(m["grid_max_slope"], 1),
                 _pct(m["grid_confident_area"]), _num(m["test_loss_sensitivity"], 3)]
                for aug, m in res["panels"].items()]
        out.append(_table(["augmentation", "test acc (%)", "max slope of P(class 1)",
                           "area with confidence >= 0.9 (%)", "loss sensitivity"], rows))
        out.append("")
        panels = res["panels"]
        augmented = [a for a in panels if a != "none"]
        if "gaussian" in panels and augmented:
            smoothest = min(augmented, key=lambda a: panels[a]["grid_max_slope"])
            least_confident = min(augmented, key=lambda a: panels[a]["grid_confident_area"])
            keeps = panels["gaussian"]["test_accuracy"] >= panels["none"]["test_accuracy"] - 0.01
            out.append(f"Paper's claim (GDA smooths the confidence without hurting accuracy) on "
                       f"{name}: GDA keeps clean accuracy: {'yes' if keeps else 'no'}; smoothest "
                       f"augmentation (lowest max slope): {smoothest}; least over-confident "
                       f"(smallest area with confidence >= 0.9): {least_confident}.\n")
    return out


# -- means over seeds ----------------------------------------------------------------------
_KEEP_FIRST = ("samples", "path", "eps", "names", "source", "targets", "attack", "variant",
               "success_against", "setting")


def _average(values: list, key: str = ""):
    """Element-wise mean of the same structure over seeds: dicts by common key, lists of equal
    length by position, numbers by mean (None if any is None); identifiers kept from the
    first."""
    first = values[0]
    if key in _KEEP_FIRST:
        return first
    if all(isinstance(v, dict) for v in values):
        return {k: _average([v[k] for v in values], k) for k in first
                if all(k in v for v in values)}
    if all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
        return [_average([v[i] for v in values], key) for i in range(len(first))]
    numbers = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in values]
    if all(numbers):
        return float(np.mean(values))
    if any(numbers) and all(n or v is None for n, v in zip(numbers, values)):
        return None  # a seed that did not measure it: no mean
    return first


def _mean_view(results: dict) -> dict:
    """``results`` with the tables and curves averaged over training seeds (as they are
    when one seed ran)."""
    by_seed = results.get("by_seed") or {}
    if len(by_seed) < 2:
        return results
    view = dict(results)
    seeds = list(by_seed.values())
    for key in ("table1", "table2", "table3", "table4"):
        found = [r[key] for r in seeds if key in r]
        if found:
            view[key] = _average(found) if len(found) == len(seeds) else results.get(key)
    curves = []
    for entry in results.get("curves") or []:
        same = [c for r in seeds for c in r.get("curves", [])
                if (c["source"], c["targets"], c["attack"]) ==
                (entry["source"], entry["targets"], entry["attack"])]
        curves.append(_average(same) if len(same) == len(seeds) else entry)
    view["curves"] = curves
    return view


# -- findings --------------------------------------------------------------------------------
VERDICT_TEXT = {"reproduced": "**reproduced**", "not reproduced": "**not reproduced**",
                "inconclusive": "**inconclusive**", None: "**not measured**"}


def _interval_text(c, scale: float) -> str:
    i = c.interval
    return f"{scale * i.mean:+.2f} [{scale * i.low:+.2f}, {scale * i.high:+.2f}]"


def _findings(results, models: dict[int, dict[str, dict]], dataset: str) -> list[str]:
    by_seed = results.get("by_seed") or {}
    n = len(by_seed)
    out = ["## Findings: the paper's claims against this run\n",
           f"Each claim in the paper's words, what we measure, and the verdict over {n} "
           "training seed(s). Every comparison is a paired difference per seed (both models "
           "of the same seed, on the same test images); the interval is the 95% percentile "
           "bootstrap of its mean over seeds (10,000 resamples, fixed generator seed; "
           "advbench/paper/statistics.py). **Reproduced**: the interval lies on the claim's "
           "side of 0; **not reproduced**: on the other side; **inconclusive**: it contains "
           "0. A claim made of several comparisons is reproduced when all are, not "
           "reproduced when any is. Accuracies and their differences are in percentage "
           "points; robustness, distances and sensitivities in their own units.\n"]
    if n < 2:
        out.append("Only one training seed ran: every verdict is inconclusive; run a profile "
                   "with seeds >= 2 (quick and paper have 5).\n")
    tally: dict[str | None, int] = {}
    for claim in paper_claims.CLAIMS.values():
        if dataset not in claim.datasets:
            continue
        verdict, comparisons = paper_claims.judge(claim, by_seed, models, dataset)
        tally[verdict] = tally.get(verdict, 0) + 1
        out.append(f"### Claim {claim.number} ({claim.where}): {VERDICT_TEXT[verdict]}\n")
        out.append(f"> \"{claim.quote}\"\n")
        out.append(f"Measured: {claim.measure}.\n")
        if comparisons:
            rows = []
            for c in comparisons:
                percent = claim.number not in (3, 4, 5)
                scale = 100.0 if percent else 1.0
                per_seed = ", ".join(f"{scale * v:+.2f}" if percent else f"{v:+.4f}"
                                     for v in c.differences.values())
                rows.append([c.label, per_seed, _interval_text(c, scale) if percent else
                             f"{c.interval.mean:+.4f} [{c.interval.low:+.4f}, "
                             f"{c.interval.high:+.4f}]",
                             "> 0" if c.side == "greater" else "< 0", c.verdict])
            out.append(_table(["comparison", "per seed", "mean [95% CI]", "claimed", "verdict"],
                              rows))
            out.append("")
        if claim.number == 7:
            out += _cost_lines(models)
    out.append("Summary: " + ", ".join(f"{count} {VERDICT_TEXT[v].strip('*')}"
                                       for v, count in tally.items()) + ".\n")
    return out


def _cost_lines(models: dict[int, dict[str, dict]]) -> list[str]:
    """Claim 7's times: total training time and time per epoch beside the per-sample ratio."""
    rows = []
    for name in ("cnn", "cnn-gda", "cnn-brelu-gda", "cnn-fgsm-at", "cnn-vat"):
        metas = [m[name] for m in models.values() if name in m]
        if not metas:
            continue
        total = np.mean([m["training_time_s"] for m in metas])
        per_epoch = np.mean([m["training_time_s"] / max(m["epochs_run"], 1) for m in metas])
        per_sample = np.mean([paper_claims.per_sample_seconds(m) or np.nan for m in metas])
        rows.append([LABELS.get(name, name), f"{total:.0f}", f"{np.mean([m['epochs_run'] for m in metas]):g}",
                     f"{per_epoch:.1f}", f"{np.mean([m['samples_processed'] for m in metas]):.0f}",
                     f"{1e6 * per_sample:.0f}"])
    return ["Training cost, means over seeds:\n", _table(
        ["model", "total training time (s)", "epochs", "s / epoch", "samples processed",
         "us / processed sample"], rows), ""]
