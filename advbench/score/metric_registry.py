"""The metrics an evaluation reports, each declared once: its name (the field's term: the JSON
key, the CSV ``metric`` and the gate's NAME), what it is, the direction in which it is better,
its range and unit, its scope (where it is measured) and where it is read from an evaluation
record (``advbench.score.evaluate.evaluate``'s summary).

The gate (``evaluate.parse_threshold``, ``evaluate.metric_value``), ``summary["metrics"]``, the
CSV rows (``report.evaluation_rows``), `advbench evaluate --help`'s list of gate metrics and the
tables of docs/metrics.md and docs/evaluate.md (``tools/docgen.py``) all derive from
``METRICS``: adding a metric is one ``Metric`` here (and its computation, ``run.metrics``).
TensorFlow-free (``--help`` reads it).

Example:
    >>> METRICS["adv_accuracy"].read({"kind": "attack", "adv_accuracy": 0.4})
    0.4
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterator

from advbench.attacks import MINIMAL_ATTACKS

#: Where a metric is measured: scope -> (what the docs call it, where the JSON summary of
#: ``advbench evaluate`` holds its records, how the gate takes it without a qualifier).
SCOPES: dict[str, tuple[str, str, str]] = {
    "clean": ("the clean split", "['clean']", "-"),
    "attack": ("each attack artifact", "['artifacts'][i]", "worst over the artifacts"),
    "certification": ("each certification artifact", "['artifacts'][i]",
                      "worst over the certifications"),
}

#: The directions, and the ``--fail-*`` flag that guards each (what a gate would check).
DIRECTIONS = {"higher": "--fail-under", "lower": "--fail-over"}

#: Qualifiers a metric takes after ``@``: the attack name or file stem of the artifacts it is
#: read from, or the L2 radius of a certified accuracy.
QUALIFIERS = ("ATTACK", "RADIUS")


@dataclasses.dataclass(frozen=True)
class Metric:
    """One reported metric.

    Attributes:
        name: the field's term: the JSON key, the CSV ``metric``, the gate's NAME.
        value: what it is (one sentence, docs/metrics.md; the gate table of docs/evaluate.md).
        better: "higher" or "lower" (``DIRECTIONS``): the unqualified gate takes the worst
            value, the lowest or the highest.
        unit: "fraction" ([0, 1], never a percentage), "samples", "features", or the unit in
            words.
        scope: one of ``SCOPES``.
        path: the keys that lead to the value in a record of its scope
            (``("robustness", "value")``); a missing key or a None on the way: not measured.
        low, high: its range (a threshold outside it is refused).
        qualifier: one of ``QUALIFIERS`` or None; a RADIUS metric's value is a dict of
            values by radius (``"0.5"``), one CSV row each, the radius in the ``eps`` column.
        variant: keys of the record naming the variant the value was measured with; the CSV
            metric is ``NAME_VARIANT`` (``robustness_linf``) except for ``plain_variant``.
        plain_variant: the variant whose CSV name stays plain (``loss``); the gate names any
            other one ("loss_sensitivity (softmax variant)").
        aliases: other names of the same value, with a CSV row each (``robust_accuracy``).
        also_per_artifact: keys of the same measure in each attack artifact's record (the
            clean accuracy of the artifact's own samples), written to its CSV rows.
        summary: one of the gate values of ``summary["metrics"]`` (the headline metrics).
        note: how `advbench evaluate --help` qualifies it ("of the correctly classified
            samples").
        needs: what the gate says an evaluation needs to give it, when it does not.
        column: its column in the printed table of attack artifacts (``report.
            print_evaluation``); None: not printed there. Fractions print as percentages,
            other values with ``digits`` decimals.
        of_minimal: whether a minimal-perturbation artifact gives it. Robust accuracy does
            not: a minimal attack has no budget and flips every sample it can, so its
            accuracy is no robustness figure (the table prints "- (minimal)").
    """

    name: str
    value: str
    better: str
    unit: str
    scope: str
    path: tuple[str, ...]
    low: float = 0.0
    high: float = math.inf
    qualifier: str | None = None
    variant: tuple[str, ...] | None = None
    plain_variant: str | None = None
    aliases: tuple[str, ...] = ()
    also_per_artifact: tuple[str, ...] | None = None
    summary: bool = False
    note: str = ""
    needs: str = "at least one attack artifact"
    column: str | None = None
    digits: int = 4
    of_minimal: bool = True

    def read(self, record: dict[str, Any], radius: float = 0.0) -> Any:
        """The value in ``record`` (an entry of its scope, or ``summary["clean"]``), None
        where it is not measured (or not a figure of it: ``of_minimal``); a RADIUS metric's
        value at ``radius``."""
        if record.get("minimal") and not self.of_minimal:
            return None
        value = walk(record, self.path)
        if self.qualifier == "RADIUS" and isinstance(value, dict):
            return value.get(f"{radius:g}")
        return value

    @property
    def artifact_path(self) -> tuple[str, ...] | None:
        """Where an attack artifact's record holds it (``path`` or ``also_per_artifact``);
        None for a metric no attack artifact reports."""
        return self.path if self.scope == "attack" else self.also_per_artifact

    def variant_of(self, record: dict[str, Any]) -> Any:
        """The variant ``record``'s value was measured in; None without one."""
        return walk(record, self.variant) if self.variant else None

    def csv_name(self, record: dict[str, Any]) -> str:
        """The CSV ``metric`` of this value in ``record``: the name, with the variant it was
        measured in unless that is the plain one."""
        variant = self.variant_of(record)
        if variant in (None, self.plain_variant):
            return self.name
        return f"{self.name}_{variant}"

    def range_text(self) -> str:
        """The range as the docs and errors say it: "a fraction in [0, 1]", ">= 0"."""
        if self.unit == "fraction":
            return "a fraction in [0, 1]"
        if self.high == math.inf:
            return f">= {self.low:g}"
        return f"in [{self.low:g}, {self.high:g}]"


def walk(record: Any, path: tuple[str, ...]) -> Any:
    """The value at the keys ``path`` of ``record``; None where a key is missing."""
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return None
        record = record[key]
    return record


_EVERY = "a minimal-perturbation artifact crafted on this model"
_CERTIFIED = "a certification artifact (advbench certify; CERTIFY, not --predict)"
_NORMS = "mean over the successful samples of the perturbation's"

METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("clean_accuracy", "accuracy on the clean split", "higher", "fraction", "clean",
           ("accuracy",), high=1.0, also_per_artifact=("clean_accuracy",), summary=True,
           column="clean %"),
    Metric("loss_sensitivity", "l_F = mean ||dJ(x, y)/dx||_2 on the clean split (or the "
           "--sensitivity-variant chosen; a missed gate names a softmax or logit variant)",
           "lower", "nats per unit L2 of input", "clean", ("loss_sensitivity",),
           variant=("loss_sensitivity_variant",), plain_variant="loss", summary=True,
           needs="no --no-sensitivity"),
    Metric("adv_accuracy", "robust accuracy: accuracy on an artifact's x_adv (all samples; "
           "`robust_accuracy` in JSON); a bounded attack's artifact only, as the gate and the "
           "summary's metrics read it", "higher", "fraction", "attack", ("adv_accuracy",),
           high=1.0, qualifier="ATTACK", aliases=("robust_accuracy",), summary=True,
           note="= robust_accuracy; bounded attacks only", column="robust %", of_minimal=False,
           needs="an artifact of a bounded attack (a minimal attack has no budget: its "
                 "accuracy is no robustness figure)"),
    Metric("success_rate", "attack success on MODEL over the samples it classifies correctly "
           "(NaN when none)", "lower", "fraction", "attack", ("success_rate",), high=1.0,
           qualifier="ATTACK", summary=True, note="of the correctly classified samples",
           column="success %"),
    Metric("clean_errors", "the artifact's samples MODEL misclassifies before the attack",
           "lower", "samples", "attack", ("clean_errors",), qualifier="ATTACK",
           column="clean errors"),
    Metric("success_rate_errors", "the share of the clean errors whose prediction the attack "
           "moved (NaN when none)", "lower", "fraction", "attack", ("success_rate_errors",),
           high=1.0, qualifier="ATTACK"),
    Metric("success_rate_prediction", "attack success over all samples, the prediction moved "
           "off the clean prediction", "lower", "fraction", "attack",
           ("success_rate_prediction",), high=1.0, qualifier="ATTACK"),
    Metric("success_rate_label", "attack success over all samples, the prediction differs "
           "from the label", "lower", "fraction", "attack", ("success_rate_label",), high=1.0,
           qualifier="ATTACK"),
    Metric("l0_mean", f"{_NORMS} L0 (entries changed by more than 1e-6)", "higher",
           "features", "attack", ("norms", "l0_mean"), qualifier="ATTACK"),
    Metric("l1_mean", f"{_NORMS} L1", "higher", "[0, 1] intensity", "attack",
           ("norms", "l1_mean"), qualifier="ATTACK", column="L1", digits=2),
    Metric("l2_mean", f"{_NORMS} L2", "higher", "[0, 1] intensity", "attack",
           ("norms", "l2_mean"), qualifier="ATTACK", column="L2", digits=3),
    Metric("linf_mean", f"{_NORMS} L-inf", "higher", "[0, 1] intensity", "attack",
           ("norms", "linf_mean"), high=1.0, qualifier="ATTACK", column="Linf", digits=3),
    Metric("robustness", "empirical robustness, mean ||dx||_p / ||x||_p over the successful "
           "samples (white-box minimal artifacts, in the attack's norm)", "higher",
           "dimensionless", "attack", ("robustness", "value"), qualifier="ATTACK",
           variant=("robustness", "norm"), summary=True, column="robustness", digits=3,
           needs=f"a minimal-perturbation artifact ({', '.join(MINIMAL_ATTACKS)}) crafted on "
                 "this model"),
    Metric("training_distance", "mean nearest-training distance over the successful samples "
           "(same artifacts; --distance-variant)", "higher", "[0, 1] intensity (l2 variant)",
           "attack", ("training_distance", "mean"), qualifier="ATTACK",
           variant=("training_distance", "variant"), summary=True, column="train dist",
           digits=2,
           needs=f"{_EVERY} (and no --no-distance)"),
    Metric("certified_accuracy", "fraction of images a certification artifact (`advbench "
           "certify`) certifies correct at L2 radius R ([0, 1] pixel units; no @R: radius 0, "
           "the smoothed classifier's accuracy)", "higher", "fraction", "certification",
           ("certified_accuracy",), high=1.0, qualifier="RADIUS", summary=True,
           needs=_CERTIFIED),
    Metric("smoothed_accuracy", "accuracy of the smoothed classifier (abstentions wrong; "
           "CERTIFY and PREDICT)", "higher", "fraction", "certification",
           ("smoothed_accuracy",), high=1.0,
           needs="a certification artifact (advbench certify)"),
    Metric("average_certified_radius", "mean certified radius, 0 for wrong or abstained "
           "images", "higher", "L2, [0, 1] pixel units", "certification",
           ("average_certified_radius",), summary=True, needs=_CERTIFIED),
    Metric("abstention_rate", "fraction of images where the smoothed classifier abstains",
           "lower", "fraction", "certification", ("abstention_rate",), high=1.0, summary=True,
           needs="a certification artifact (advbench certify)"),
)}


def of_scope(scope: str) -> list[Metric]:
    """The metrics measured in ``scope``, in declaration order (the CSV's order)."""
    return [m for m in METRICS.values() if m.scope == scope]


def gate_names() -> Iterator[str]:
    """Every name a threshold takes (the metrics and their aliases)."""
    for metric in METRICS.values():
        yield metric.name
        yield from metric.aliases


def lookup(name: str) -> Metric | None:
    """The metric named ``name`` or one of its aliases; None when there is none."""
    if name in METRICS:
        return METRICS[name]
    return next((m for m in METRICS.values() if name in m.aliases), None)


def worst(values: list[float], better: str) -> float | None:
    """The worst of ``values`` in direction ``better`` (NaN when any is NaN: the gate cannot
    vouch for it); None when there is none."""
    if not values:
        return None
    if any(math.isnan(v) for v in values):
        return math.nan
    return min(values) if better == "higher" else max(values)


def gate_help() -> str:
    """The paragraph of `advbench evaluate --help` that lists the gate metrics."""
    def listed(scope: str, last: str = ", ") -> str:
        names = [(m.name + ("@RADIUS" if m.qualifier == "RADIUS" else "")
                  + (f" ({m.note})" if m.note else "")) for m in of_scope(scope)]
        return ", ".join(names[:-1]) + last + names[-1]

    return ("Gate metrics (--fail-under / --fail-over NAME[@ATTACK]=VALUE, docs/metrics.md): "
            f"{listed('clean')} (the clean split); {listed('attack')} (each attack artifact; "
            "without @ATTACK the worst value over the artifacts counts). Certification "
            f"artifacts (`advbench certify`) give {listed('certification', ' and ')} (worst "
            "over them);")
