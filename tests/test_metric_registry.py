"""Contracts over the metric registry (``advbench.score.metric_registry.METRICS``): every
metric has a valid declaration, is documented (docs/metrics.md, docs/evaluate.md, `advbench
evaluate --help`), is gateable, and appears in the JSON summary and the CSV of a real
evaluation with the value the registry reads; every CSV metric is a registered one."""

import json
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from advbench.attacks.fgsm import FGSM
from advbench.attacks.fgsm_min import MinimalFGSM
from advbench.cli import main
from advbench.core.errors import ParameterError
from advbench.run.runner import AttackRun, attack_split
from advbench.score import certify, evaluate as ev, report
from advbench.score.metric_registry import (DIRECTIONS, METRICS, QUALIFIERS, SCOPES, gate_help,
                                            gate_names, lookup, walk)

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 30


@pytest.fixture(scope="module")
def evaluation(trained_tiny_cnn, fake_data_dir, tmp_path_factory):
    """A real evaluation of the tiny CNN that measures every metric: an FGSM artifact, a
    white-box minimal-FGSM one (robustness, training distance) and a certification."""
    path, model, meta = trained_tiny_cnn
    folder = tmp_path_factory.mktemp("registry")
    run = AttackRun(model_path=str(path), dataset="mnist", limit=LIMIT,
                    data_dir=str(fake_data_dir), batch_size=16)
    fgsm = attack_split(run, FGSM(eps=0.1), model, meta, folder / "fgsm.h5")
    minimal = attack_split(run, MinimalFGSM(eps_step=0.05), model, meta, folder / "min.h5")
    certified = certify.certify_split(
        certify.CertifyRun(model_path=str(path), dataset="mnist", limit=12, sigma=0.25, n0=10,
                           n=200, batch_size=500, data_dir=str(fake_data_dir)),
        model, meta, folder / "cert.h5")
    return ev.evaluate(model, meta, path, [fgsm, minimal, certified], limit=LIMIT,
                       data_dir=fake_data_dir).summary


def records(summary, metric):
    """The records of ``summary`` that hold ``metric`` (its scope's)."""
    if metric.scope == "clean":
        return [summary["clean"]]
    return [e for e in summary["artifacts"] if e["kind"] == metric.scope]


# -- declarations --------------------------------------------------------------------------
@pytest.mark.parametrize("name", METRICS)
def test_every_metric_has_a_valid_declaration(name):
    metric = METRICS[name]
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name) and metric.name == name
    assert metric.better in DIRECTIONS and metric.scope in SCOPES
    assert metric.qualifier in (None, *QUALIFIERS)
    assert metric.qualifier != "ATTACK" or metric.scope == "attack"
    assert metric.low < metric.high and not math.isnan(metric.low)
    if metric.unit == "fraction":
        assert (metric.low, metric.high) == (0.0, 1.0)
    assert metric.path and metric.value and metric.unit and metric.needs


def test_names_and_aliases_are_unique():
    names = list(gate_names())
    assert len(names) == len(set(names))
    assert all(lookup(alias) is METRICS["adv_accuracy"] for alias in ("robust_accuracy",))


# -- documented ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", METRICS)
def test_every_metric_is_documented(name):
    metrics_md = (ROOT / "docs" / "metrics.md").read_text()
    evaluate_md = (ROOT / "docs" / "evaluate.md").read_text()
    table = metrics_md[metrics_md.index("<!-- generated: metrics -->"):]
    gate = evaluate_md[evaluate_md.index("<!-- generated: gate-metrics -->"):]
    assert re.search(rf"^\| `{name}[`@]", table, re.M), name
    assert re.search(rf"^\| `{name}[`@]", gate, re.M), name
    assert re.search(rf"\b{name}\b", gate_help()), name


def test_evaluate_help_lists_every_gate_metric():
    result = CliRunner().invoke(main, ["evaluate", "--help"], terminal_width=1000)
    assert result.exit_code == 0
    assert gate_help() in " ".join(result.output.split())


# -- gateable ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(gate_names()))
def test_every_metric_is_gateable(evaluation, name):
    metric = lookup(name)
    values = [v for v in (metric.read(r) for r in records(evaluation, metric)) if v is not None]
    assert values, f"the fixture does not measure {name}"
    expected = values[0] if metric.scope == "clean" else \
        (min if metric.better == "higher" else max)(values)
    for bound in ("under", "over"):
        threshold = ev.parse_threshold(f"{name}={metric.low:g}", bound)
        value = ev.metric_value(evaluation, threshold)
        if math.isnan(expected):
            assert math.isnan(value)
        else:
            assert value == expected and metric.low <= value <= metric.high
    if metric.qualifier == "ATTACK":
        entry = next(r for r in records(evaluation, metric) if metric.read(r) is not None)
        threshold = ev.parse_threshold(f"{name}@{entry['name']}={metric.low:g}")
        value = ev.metric_value(evaluation, threshold)
        assert value == metric.read(entry) or math.isnan(value) and math.isnan(metric.read(entry))


@pytest.mark.parametrize("name", METRICS)
def test_every_threshold_outside_the_range_is_refused(name):
    metric = METRICS[name]
    text = f"{name}={metric.low - 1:g}"
    with pytest.raises(ParameterError) as error:
        ev.parse_threshold(text)
    assert str(error.value) == f"threshold {text!r}: {name} is {metric.range_text()}"


def test_a_bounded_range_is_said():
    with pytest.raises(ParameterError) as error:
        ev.parse_threshold("linf_mean=2")
    assert str(error.value) == "threshold 'linf_mean=2': linf_mean is in [0, 1]"


def test_a_qualifier_only_where_the_metric_takes_one():
    with pytest.raises(ParameterError) as error:
        ev.parse_threshold("smoothed_accuracy@fgsm=0.5")
    assert str(error.value) == "smoothed_accuracy is not a per-artifact metric; drop @fgsm"


def test_summary_metrics_are_the_headline_ones(evaluation):
    assert list(evaluation["metrics"]) == [m.name for m in METRICS.values() if m.summary]


# -- in the JSON and the CSV ---------------------------------------------------------------
@pytest.mark.parametrize("name", METRICS)
def test_every_metric_appears_in_the_json_and_the_csv(evaluation, name):
    metric = METRICS[name]
    as_json = json.loads(report.to_json(evaluation))
    rows = report.evaluation_rows(evaluation)
    record = next(r for r in records(evaluation, metric) if metric.read(r) is not None)
    json_record = as_json["clean"] if metric.scope == "clean" else \
        as_json["artifacts"][evaluation["artifacts"].index(record)]
    value = walk(record, metric.path)
    assert value is not None
    stored = walk(json_record, metric.path)
    assert stored == value or stored is None and math.isnan(value)
    csv = [r for r in rows if r["metric"] == metric.csv_name(record)
           and r["artifact"] == record.get("path", "")]
    assert csv, f"{name} has no CSV row"
    if metric.qualifier == "RADIUS":
        assert {r["eps"]: r["value"] for r in csv} == value
    else:
        assert csv[0]["value"] == value or math.isnan(value) and math.isnan(csv[0]["value"])
    if metric.summary:
        assert name in as_json["metrics"]


def test_every_csv_metric_is_registered(evaluation):
    """The reverse: no CSV row names a metric the registry does not declare (the variant
    suffixes and AutoAttack's per-member robust accuracy apart)."""
    names = set(gate_names())
    for row in report.evaluation_rows(evaluation):
        metric = row["metric"]
        base = next((n for n in names if metric == n or metric.startswith(n + "_")
                     and METRICS.get(n) and METRICS[n].variant), None)
        assert base or metric.startswith("robust_accuracy_after_"), metric
