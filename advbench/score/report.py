"""Reports of evaluations: rich tables (stderr), JSON, CSV and accuracy-vs-eps plots.

Tables print fractions as percentages with two decimals, as the paper's tables do
("Efficient Defenses Against Adversarial Attacks", https://arxiv.org/abs/1707.06728).
JSON and CSV keep fractions in [0, 1] at full precision; NaN (a metric over no successful
sample) is written as null in JSON and as an empty cell in CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from advbench.attacks.budgets import shown
from advbench.core import files
from advbench.core.errors import ParameterError
from advbench.core.types import PathLike
from advbench.data import display_name
from advbench.run.artifacts import jsonable
from advbench.score import TABLE_FORMATS, VERDICTS
from advbench.score.metric_registry import METRICS, Metric, of_scope, walk

# At most this many eps columns in a curve table (evenly spaced, ends included); the JSON,
# CSV and plot always keep every eps.
TABLE_EPS_COLUMNS = 11


#: How a table names each success definition (metrics.SUCCESS_DEFINITIONS).
SUCCESS_WORDS = {"prediction": "prediction moved off the clean prediction",
                 "label": "prediction differs from the label"}


# Width of a console that is not a terminal: wide enough that no table is ever cut
# (rich's 80-column default turned "robustness" into "robustne…" in CI logs).
_UNBOUNDED_WIDTH = 100_000


def param_text(value: Any) -> str:
    """An attack parameter as a table shows it: eps-like floats as people write them
    (``8/255``, ``0.3``), anything else as is."""
    return shown(value) if isinstance(value, float) else str(value)


def params_text(params: dict[str, Any] | None, sep: str = " ") -> str:
    """An artifact's attack parameters as a table shows them, ``k=v`` joined by ``sep``;
    None values left out: they stand for a default derived at run time (AutoAttack's
    members' settings from its version, a step size from eps), which the start line
    printed and the stored parameters keep."""
    return sep.join(f"{k}={param_text(v)}" for k, v in (params or {}).items() if v is not None)


def _console(console: Console | None) -> Console:
    if console is not None:
        return console
    if sys.stderr.isatty():
        return Console(file=sys.stderr)
    # Logs and CI pipes: full width, and no styles, which a log would lose anyway (nothing
    # may be told by bold alone: white-box cells also carry a "*").
    return Console(file=sys.stderr, width=_UNBOUNDED_WIDTH, color_system=None,
                   highlight=False, emoji=False)


def _plain(cell: Any) -> str:
    return Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)


def markdown_table(table: Table) -> str:
    """A rich table as GitHub markdown: its title in bold, then the header, the alignment
    row and one line per row, markup removed and ``|`` escaped."""
    def cell(value: Any) -> str:
        return _plain(value).replace("|", "\\|").replace("*", "\\*")

    lines = [f"**{_plain(table.title)}**", ""] if table.title else []
    lines.append("| " + " | ".join(cell(c.header) for c in table.columns) + " |")
    lines.append("|" + "|".join("---:" if c.justify == "right" else "---"
                                for c in table.columns) + "|")
    for row in zip(*(list(c.cells) for c in table.columns)):
        lines.append("| " + " | ".join(cell(value) for value in row) + " |")
    if table.caption:
        lines += ["", _plain(table.caption)]
    return "\n".join(lines) + "\n"


def show(table: Table, console: Console | None = None, fmt: str = "table") -> None:
    """Print ``table`` to stderr (or ``console``) in one of ``TABLE_FORMATS``."""
    if fmt not in TABLE_FORMATS:
        raise ParameterError(f"table format must be one of {', '.join(TABLE_FORMATS)}, "
                             f"got {fmt!r}")
    console = _console(console)
    if fmt == "markdown":
        console.print(markdown_table(table), markup=False, highlight=False, soft_wrap=True)
    else:
        console.print(table)


def _percent(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.2f}"


def _number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def to_json(value: Any) -> str:
    """Strict JSON text (NaN -> null), indented."""
    return json.dumps(jsonable(value), indent=2)


# -- curves ----------------------------------------------------------------------------------
def curve_lines(curves: list[dict]) -> list[dict]:
    """Flatten curve summaries (``Curve.summary()``: several targets; or an evaluate curve
    entry: one model) into lines {label, source, target, setting, eps, accuracy, clean}."""
    lines = []
    for curve in curves:
        attack = curve["attack"]
        source = curve["source"]["name"]
        if "targets" in curve:
            for target in curve["targets"]:
                lines.append({
                    "label": f"{attack}: {source} -> {target['name']}"
                             + (" (white-box)" if target["setting"] == "white-box" else ""),
                    "attack": attack, "source": source, "target": target["name"],
                    "setting": target["setting"], "eps": curve["eps"],
                    "accuracy": target["accuracy"], "clean": target["clean_accuracy"],
                    "path": curve["path"]})
        else:
            lines.append({
                "label": f"{attack}: crafted on {source} ({curve['setting']})",
                "attack": attack, "source": source, "target": curve.get("target", ""),
                "setting": curve["setting"], "eps": curve["eps"], "accuracy": curve["accuracy"],
                "clean": curve["clean_accuracy"], "path": curve["path"]})
    return lines


def _eps_columns(eps: list[float]) -> list[int]:
    if len(eps) <= TABLE_EPS_COLUMNS:
        return list(range(len(eps)))
    step = (len(eps) - 1) / (TABLE_EPS_COLUMNS - 1)
    return sorted({round(i * step) for i in range(TABLE_EPS_COLUMNS)})


def print_curves(lines: list[dict], console: Console | None = None, fmt: str = "table") -> None:
    """Accuracy (%) per eps, one row per curve line; long grids are sampled evenly."""
    if not lines:
        return
    eps = lines[0]["eps"]
    shown = _eps_columns(eps)
    table = Table(title="accuracy (%) vs eps")
    table.add_column("curve")
    table.add_column("clean", justify="right")
    for i in shown:
        table.add_column(f"{eps[i]:g}", justify="right")
    for line in lines:
        cells = [_percent(line["accuracy"][i]) if i < len(line["accuracy"]) else "" for i in shown]
        table.add_row(line["label"], _percent(line["clean"]), *cells)
    show(table, console, fmt)


def plot_curves(lines: list[dict], path: PathLike, *, title: str | None = None) -> Path:
    """Save accuracy (%) vs eps for every curve line to ``path`` (PNG, PDF, SVG...).

    Uses matplotlib's Agg backend (no display needed). Raises ParameterError when ``lines``
    is empty. Example:
        >>> plot_curves(curve_lines([curve.summary()]), "fgsm.png")
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not lines:
        raise ParameterError("no curve to plot; give an eps list (--eps 0.01:1:0.01)")
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for line in lines:
        style = "-" if line["setting"] == "white-box" else "--"
        axes.plot(line["eps"], [100 * a for a in line["accuracy"]], style, label=line["label"])
    return _save_percent_plot(figure, axes, path, xlabel="eps (L-inf perturbation size)",
                              ylabel="accuracy (%)", title=title or "accuracy vs eps")


def _save_percent_plot(figure, axes, path: PathLike, *, xlabel: str, ylabel: str,
                       title: str) -> Path:
    """Label a 0-100 % plot, save it (``save_figure``) and close it; returns the path."""
    import matplotlib.pyplot as plt

    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, 100)
    axes.grid(True, alpha=0.3)
    axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    path = Path(path)
    try:
        save_figure(figure, path, dpi=120)
    finally:
        plt.close(figure)
    return path


# -- evaluate --------------------------------------------------------------------------------
def print_evaluation(summary: dict, console: Console | None = None,
                     fmt: str = "table") -> None:
    """The clean scores, one row per attack artifact, and the curves, on stderr."""
    console = _console(console)
    model, clean = summary["model"], summary["clean"]
    table = Table(title=f"{model['name'] or model['path']}: clean "
                        f"{display_name(clean['dataset'])} {clean['split']} "
                        f"({clean['samples']} images)")
    table.add_column("accuracy (%)", justify="right")
    variant = clean.get("loss_sensitivity_variant")
    # The authors' variants differentiate no loss: say which quantity the column holds.
    table.add_column("loss sensitivity" if variant in (None, "loss")
                     else f"sensitivity ({variant} of predicted class)", justify="right")
    table.add_row(_percent(clean["accuracy"]), _number(clean["loss_sensitivity"]))
    show(table, console, fmt)
    attacks = [e for e in summary["artifacts"] if e["kind"] == "attack"]
    if attacks:
        against = attacks[0].get("success_against", "label")
        table = Table(title="adversarial artifacts (robust %: label-based, all samples; "
                            "success %: of the correctly classified samples, clean errors "
                            "apart with how many the attack moved; norms, robustness and "
                            "distance over the samples of success: "
                            f"{SUCCESS_WORDS[against]})")
        shown = [m for m in METRICS.values() if m.column and m.artifact_path]
        for column in ("attack", "crafted on", "setting", "n", *(str(m.column) for m in shown)):
            table.add_column(column, justify="left" if column in (
                "attack", "crafted on", "setting") else "right")
        for e in attacks:
            params = params_text(e["attack_params"])
            seed = f" seed={e['seed']}" if e.get("seed") is not None else ""
            table.add_row(
                f"{e['attack']} {params}{seed}".strip(),
                e["crafted_on"]["name"] or str(e["crafted_on"]["path"]),
                e["setting"].replace("-box", ""), str(e["samples"]),
                *(_CELLS.get(m.name, _cell)(e, m) for m in shown))
        show(table, console, fmt)
        for e in attacks:
            print_autoattack_table(e, console, fmt)
    print_curves(curve_lines([e for e in summary["artifacts"] if e["kind"] == "curve"]), console,
                 fmt)
    print_certifications([e for e in summary["artifacts"] if e["kind"] == "certification"],
                         console, fmt)
    print_per_class(summary, console, fmt)


def _cell(entry: dict, metric: Metric) -> str:
    """A metric of an attack entry as its table shows it: fractions in %, other values with
    the metric's decimals; "-" where it was not measured."""
    path = metric.artifact_path or metric.path
    if not _has(entry, path) or walk(entry, path) is None:
        return "-"
    value = walk(entry, path)
    return _percent(value) if metric.unit == "fraction" else _number(value, metric.digits)


#: The cells that say more than the value: a minimal attack has no budget, so no robust
#: accuracy to speak of; the clean errors with how many the attack moved; robustness with its
#: norm and success count.
_CELLS: dict[str, Callable[[dict, Metric], str]] = {
    "adv_accuracy": lambda e, m: "- (minimal)" if e.get("minimal") else _cell(e, m),
    "clean_errors": lambda e, m: _clean_errors(e),
    "robustness": lambda e, m: _cell(e, m) if e.get("robustness") is None else
    f"{_cell(e, m)} {e['robustness']['norm']} "
    f"({e['robustness']['count']}/{e['robustness']['total']})",
}


def write_evaluation_reports(summary: dict, *, output: PathLike | None = None,
                             csv_path: PathLike | None = None, plot: PathLike | None = None,
                             title: str = "") -> list[Path]:
    """Write an evaluation's CSV (``evaluation_rows``) and plot: its eps curves when it has
    any, else its certified-accuracy curves (``plot_curves``, ``plot_certified``). Returns
    the files an evaluation wrote, ``output`` (its artifact, already written) first."""
    written = [Path(output)] if output else []
    if csv_path:
        written.append(write_text(csv_path, csv_text(evaluation_rows(summary))))
    if plot:
        lines = curve_lines([e for e in summary["artifacts"] if e["kind"] == "curve"])
        certified = [e for e in summary["artifacts"] if e["kind"] == "certification"]
        written.append(plot_curves(lines, plot, title=title)
                       if lines or not certified else plot_certified(certified, plot))
    return written


def print_autoattack_table(entry: dict, console: Console | None = None,
                           fmt: str = "table") -> None:
    """An ``autoattack`` entry's robust accuracy after each member (as AutoAttack prints it),
    titled with its protocol; nothing for other entries."""
    aa = entry.get("autoattack_table")
    if not aa:
        return
    table = Table(title=f"{entry['protocol']} on {entry['crafted_on']['name'] or 'its model'}:"
                        " robust accuracy after each attack"
                        + (f" (not run: {'; '.join(aa['skipped'].values())})"
                           if aa["skipped"] else ""))
    table.add_column("after", justify="left")
    table.add_column("robust %", justify="right")
    for name, value in aa["after"].items():
        table.add_row("clean" if name == "clean" else name, _percent(value))
    show(table, _console(console), fmt)


def _clean_errors(entry: dict) -> str:
    """"3 (2 moved)": the samples misclassified before the attack, and how many of them the
    attack moved off their prediction; "-" for summaries older than issue 19."""
    if "clean_errors" not in entry:
        return "-"
    moved = entry.get("success_rate_errors")
    count = entry["clean_errors"]
    if not count or moved is None or math.isnan(moved):
        return str(count)
    return f"{count} ({round(moved * count)} moved)"


def print_certifications(entries: list[dict], console: Console | None = None,
                         fmt: str = "table") -> None:
    """One row per certification entry (``certify.certification_entry``): the certified
    model, sigma, n, certified accuracy (%) at each radius, average radius, abstentions."""
    if not entries:
        return
    radii = list(dict.fromkeys(r for e in entries for r in e["certified_accuracy"]))
    table = Table(title="certified (randomized smoothing, L2; the smoothed classifier of the "
                        "certified model, each certificate failing with probability alpha)")
    for column in ("certified model", "mode", "sigma", "n", "alpha", "images", "smoothed %",
                   *[f"r={r} %" for r in radii], "avg radius", "abstain %"):
        table.add_column(column, justify="left" if column in ("certified model", "mode")
                         else "right")
    for e in entries:
        table.add_row(e["certified_on"]["name"] or str(e["certified_on"]["path"]), e["mode"],
                      f"{e['sigma']:g}", str(e["n"]), f"{e['alpha']:g}", str(e["samples"]),
                      _percent(e["smoothed_accuracy"]),
                      *[_percent(e["certified_accuracy"].get(r)) for r in radii],
                      _number(e["average_certified_radius"], 3), _percent(e["abstention_rate"]))
    show(table, console, fmt)
    for e in entries:
        cap = e.get("largest_certifiable_radius")
        above = [r for r in radii if cap is not None and float(r) > cap]
        if above:
            _console(console).print(
                f"note: n = {e['n']:,} draws certify no L2 radius above {cap:.3f} (sigma "
                f"{e['sigma']:g}, alpha {e['alpha']:g}), so r = {', '.join(above)} read 0 "
                "whatever the model; certify with a larger --n to measure them",
                markup=False, highlight=False)


def certified_labels(entries: list[dict]) -> list[str]:
    """The legend of ``plot_certified``: "<model> (sigma S, n N)" per certification, and the
    artifact's name after it where two would read the same (one model certified twice, e.g.
    a run and its merged shards, or two test slices)."""
    labels = [f"{e['certified_on']['name'] or Path(str(e['certified_on']['path'])).stem} "
              f"(sigma {e['sigma']:g}, n {e['n']})" for e in entries]
    return [f"{label}, {e['name']}" if labels.count(label) > 1 else label
            for label, e in zip(labels, entries)]


def plot_certified(entries: list[dict], path: PathLike, *, title: str | None = None) -> Path:
    """Save certified accuracy (%) vs L2 radius for every CERTIFY entry to ``path``, one line
    per certification (several models on one plot). ParameterError when there is none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = [e for e in entries if e.get("curve", {}).get("radius")]
    if not lines:
        raise ParameterError("no certified radii to plot; give a certification artifact of "
                             "`advbench certify` (not --predict)")
    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for e, label in zip(lines, certified_labels(lines)):
        axes.step(e["curve"]["radius"], [100 * a for a in e["curve"]["certified_accuracy"]],
                  where="post", label=label)
    axes.set_xlim(left=0)
    return _save_percent_plot(figure, axes, path, xlabel="L2 radius ([0, 1] pixel units)",
                              ylabel="certified accuracy (%)",
                              title=title or "certified accuracy vs radius")


# -- audit -----------------------------------------------------------------------------------
def print_audit(summary: dict, console: Console | None = None, fmt: str = "table") -> None:
    """One row per audit check (number, name, verdict, evidence), on stderr; the title
    names the model, eps, norm, samples and clean accuracy, the caption the worst verdict."""
    console = _console(console)
    model = summary.get("model") or {}
    name = model.get("name") or model.get("path") or "model"
    table = Table(title=f"audit of {name} at eps {summary['eps']:g} ({summary['norm']}), "
                        f"{summary['samples']} samples, clean accuracy "
                        f"{_percent(summary['clean_accuracy'])}% (accuracies are robust "
                        "accuracies: correct clean and under attack)",
                  caption=f"verdict: {summary['verdict']}")
    for column in ("#", "check", "verdict", "evidence"):
        table.add_column(column, justify="right" if column == "#" else "left")
    for row in summary["checks"]:
        table.add_row(str(row["number"]), row["name"], row["verdict"], row["detail"])
    show(table, console, fmt)


def audit_failure(summary: dict, fail_on: str | None) -> str | None:
    """The line that fails an audit under ``--fail-on`` (the checks at or above that verdict,
    ``score.VERDICTS``); None when it passes or ``fail_on`` is None."""
    if fail_on is None or VERDICTS.index(summary["verdict"]) < VERDICTS.index(fail_on):
        return None
    flagged = [f"{row['number']} {row['name']} ({row['verdict']})" for row in summary["checks"]
               if VERDICTS.index(row["verdict"]) >= VERDICTS.index(fail_on)]
    return f"audit failed (--fail-on {fail_on}): {', '.join(flagged)}"


def artifact_labels(entries: list[dict]) -> list[str]:
    """Distinct column labels of attack artifacts (``evaluate``'s entries): the attack name;
    where names repeat, with the model it was crafted on; where those repeat too, with the
    attack parameters that differ (``fgsm-min (cnn) search=authors``); where even those are
    equal (two runs of one attack), with the artifact's file stem."""
    def crafted_on(e: dict) -> str:
        return e["crafted_on"]["name"] or Path(str(e["crafted_on"]["path"])).name

    labels = [e["attack"] for e in entries]
    if len(set(labels)) == len(labels):
        return labels
    labels = [f"{e['attack']} ({crafted_on(e)})" for e in entries]
    out = []
    for e, label in zip(entries, labels):
        same = [o for o, other in zip(entries, labels) if other == label]
        params = e.get("attack_params") or {}
        differing = [f"{k}={param_text(v)}" for k, v in params.items()
                     if any((o.get("attack_params") or {}).get(k) != v for o in same)]
        out.append(" ".join([label, *differing]))
    if len(set(out)) < len(out):
        out = [f"{label} [{Path(str(e['path'])).stem}]" for e, label in zip(entries, out)]
    return out


def print_per_class(summary: dict, console: Console | None = None, fmt: str = "table") -> None:
    """Accuracy per class (rows named by the data's class names): clean, then per attack."""
    clean = summary["clean"]
    names = clean.get("class_names")
    if not names or len(names) > 100:
        return
    attacks = [e for e in summary["artifacts"] if e["kind"] == "attack"]
    table = Table(title="accuracy per class (%)")
    table.add_column("class")
    # Each column's own sample count: the clean pass and each artifact may cover other images.
    table.add_column(f"clean (n={clean['samples']})", justify="right")
    for label, e in zip(artifact_labels(attacks), attacks):
        table.add_column(f"{label} (n={e['samples']})", justify="right")
    for c, name in enumerate(names):
        cells = [clean["per_class_accuracy"][c]] + [
            (e.get("per_class_accuracy") or [None] * len(names))[c] for e in attacks]
        table.add_row(name, *("-" if v is None else _percent(v) for v in cells))
    show(table, console, fmt)


def evaluation_rows(summary: dict) -> list[dict]:
    """Long-format CSV rows: model, artifact, attack, setting, eps, metric, value."""
    model = summary["model"]["name"] or summary["model"]["path"]
    rows = []

    def add(artifact, attack, setting, metric, value, eps="", protocol=""):
        rows.append({"model": model, "artifact": artifact, "attack": attack,
                     "setting": setting, "eps": eps, "metric": metric, "value": value,
                     "protocol": protocol})

    for metric in of_scope("clean"):
        value = metric.read(summary["clean"])
        if value is not None:
            add("", "", "clean", metric.csv_name(summary["clean"]), value)
    for e in summary["artifacts"]:
        if e["kind"] == "curve":
            for eps, accuracy in zip(e["eps"], e["accuracy"]):
                add(e["path"], e["attack"], e["setting"], "adv_accuracy", accuracy, eps)
            continue
        if e["kind"] == "certification":
            for metric in of_scope("certification"):
                value = walk(e, metric.path)
                if isinstance(value, dict):  # per radius: the eps column holds the L2 radius
                    for radius, accuracy in value.items():
                        add(e["path"], e["mode"], "certified", metric.name, accuracy, radius)
                elif value is not None:
                    add(e["path"], e["mode"], "certified", metric.name, value)
            continue
        stamp = e.get("protocol", "")
        for metric in METRICS.values():
            path = metric.artifact_path
            if path is None or not _has(e, path):
                continue  # not measured (a minimal attack of another model, an old summary)
            for name in (metric.csv_name(e), *metric.aliases):
                add(e["path"], e["attack"], e["setting"], name, walk(e, path),
                    protocol=stamp)
        for name, value in ((e.get("autoattack_table") or {}).get("after") or {}).items():
            if name != "clean":
                add(e["path"], e["attack"], e["setting"], f"robust_accuracy_after_{name}",
                    value, protocol=stamp)
    return rows


def _has(record: dict, path: tuple[str, ...]) -> bool:
    """Whether ``record`` holds a value at ``path`` (None, NaN included); a None on the way
    means it was not measured (the robustness of a black-box artifact)."""
    parent = walk(record, path[:-1])
    return isinstance(parent, dict) and path[-1] in parent


# -- transfer --------------------------------------------------------------------------------
def print_transfer(summary: dict, console: Console | None = None, fmt: str = "table") -> None:
    """The matrix in % (rows: crafted on; columns: tested on; diagonal: white-box)."""
    params = params_text(summary["attack_params"], ", ")
    table = Table(title=f"accuracy (%) under {summary['attack']} ({params}), "
                        f"{summary['samples']} {display_name(summary['dataset'])} "
                        f"{summary['split']} images")
    table.add_column("crafted on \\ tested on")
    for target in summary["targets"]:
        table.add_column(target["name"], justify="right")
    for s, source in enumerate(summary["sources"]):
        cells = []
        for t in range(len(summary["targets"])):
            cell = _percent(summary["accuracy"][s][t])
            cells.append(f"[bold]{cell}*[/bold]" if summary["setting"][s][t] == "white-box"
                         else cell)
        table.add_row(source["name"], *cells)
    table.add_row("(clean)", *[_percent(a) for a in summary["clean_accuracy"]],
                  style="dim")
    console = _console(console)
    show(table, console, fmt)
    console.print("*: white-box (crafted on the tested model); others: black-box",
                  markup=False)
    if summary.get("success_over") != "correct":
        return  # a matrix from before issue 19: its success rate was over all samples
    table = Table(title="success rate (%) over the images each tested model classifies "
                        "correctly (clean errors apart)")
    table.add_column("crafted on \\ tested on")
    for target in summary["targets"]:
        table.add_column(target["name"], justify="right")
    for s, source in enumerate(summary["sources"]):
        table.add_row(source["name"], *[_percent(v) for v in summary["success_rate"][s]])
    table.add_row("(correct / clean errors)",
                  *[f"{c} / {e}" for c, e in zip(summary["correct"], summary["clean_errors"])],
                  style="dim")
    show(table, console, fmt)


def transfer_rows(summary: dict) -> list[dict]:
    """CSV rows, one per (source, target) cell (and per eps for curves)."""
    rows = []
    if "curves" in summary:
        for line in curve_lines(summary["curves"]):
            for eps, accuracy in zip(line["eps"], line["accuracy"]):
                rows.append({"source": line["source"], "target": line["target"],
                             "setting": line["setting"], "attack": line["attack"], "eps": eps,
                             "accuracy": accuracy, "clean_accuracy": line["clean"],
                             "artifact": line["path"]})
        return rows
    for s, source in enumerate(summary["sources"]):
        for t, target in enumerate(summary["targets"]):
            rows.append({"source": source["name"], "target": target["name"],
                         "setting": summary["setting"][s][t], "attack": summary["attack"],
                         "eps": summary["attack_params"].get("eps", ""),
                         "accuracy": summary["accuracy"][s][t],
                         "success_rate": summary["success_rate"][s][t],
                         **({"success_over": "correct",
                             "correct": summary["correct"][t],
                             "clean_errors": summary["clean_errors"][t],
                             "success_rate_errors": summary["success_rate_errors"][s][t],
                             "success_rate_prediction": summary["success_rate_prediction"][s][t]}
                            if summary.get("success_over") == "correct" else {}),
                         "clean_accuracy": summary["clean_accuracy"][t],
                         "artifact": summary["artifacts"][s]})
    return rows


def csv_text(rows: list[dict]) -> str:
    """CSV with a header from the first row's keys; None and NaN as empty cells."""
    buffer = io.StringIO()
    if not rows:
        return ""
    fields = list(rows[0])
    for row in rows[1:]:
        fields += [k for k in row if k not in fields]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v
                         for k, v in row.items()})
    return buffer.getvalue()


def write_text(path: PathLike, text: str) -> Path:
    """Write a report file (CSV, JSON) atomically, creating its folder (``files``)."""
    return files.write_text(path, text, "report")


def save_figure(figure: Any, path: PathLike, **kwargs: Any) -> Path:
    """Save a matplotlib figure atomically; the format comes from ``path``'s extension."""
    path = Path(path)
    with files.atomic_write(path, "plot") as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip(".").lower() or "png", **kwargs)
    return path


def print_markdown_table(markdown_path: PathLike, heading: str,
                         console: Console | None = None) -> None:
    """Print the first markdown table under ``heading`` of a report as a rich table."""
    lines = Path(markdown_path).read_text().splitlines()
    start = lines.index(heading) + 1
    rows = []
    for line in lines[start:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    header, body = rows[0], [r for r in rows[2:]]
    table = Table(title=heading.lstrip("# "))
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in body:
        table.add_row(*row)
    _console(console).print(table)


def models_table(rows: list[dict[str, Any]]) -> Any:
    """The table of ``advbench models`` (rows of ``stages.list_models``)."""
    from rich.table import Table

    from advbench import data as datamod

    table = Table(title="trained models")
    for col in ("name", "dataset", "defense params", "epochs", "train images",
                "clean accuracy", "train time (s)", "path"):
        table.add_column(col, justify="right" if col in ("epochs", "train images",
                                                         "clean accuracy", "train time (s)")
                         else "left")

    def cell(value, form="{}"):
        return "-" if value is None else form.format(value)  # artifacts may lack training info

    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in (r["defense_params"] or {}).items())
        table.add_row(cell(r["name"]), cell(r["dataset"] and datamod.display_name(r["dataset"])),
                      params or "-", cell(r["epochs_run"]), cell(r["train_samples"]),
                      cell(r["clean_test_accuracy"] and 100 * r["clean_test_accuracy"],
                           "{:.2f}%"),
                      cell(r["training_time_s"], "{:.1f}"), r["path"])
    return table


def data_table(rows: list[dict[str, Any]]) -> Any:
    """The table of ``advbench data info``: one row per built-in data set (rows of
    ``data.describe``: found or not, layout, path, folders searched, layouts accepted), then
    the user's own data."""
    from rich.table import Table

    table = Table(title="advbench data sets")
    for col in ("data set", "found", "layout", "path", "searched", "accepts"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["dataset"], "yes" if row["found"] else "no", row["layout"],
                      row["path"], "\n".join(row["searched"]), row["accepts"])
    table.add_row("your own", "", "", "--data PATH", "", "an .npz (x_train, y_train, x_test, "
                  "y_test; or x, y) or DIR/<class>/*.png|jpg (or DIR/train/, DIR/test/)")
    return table
