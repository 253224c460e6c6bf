"""The AutoAttack ensemble: order, bookkeeping, never weaker than a member, versions."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import (PROTOTYPE_CLASSES, PROTOTYPE_SHAPE, behind, input_noise, perturbation_size,
                      prototype_images, quantiser)

from advbench.attacks.autoattack import (MISCLASSIFIED, ROBUST, VERSION_MEMBERS, AutoAttack,
                                         missing_reason, robust_accuracy_by_attack)
from advbench.core.errors import ParameterError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

FAST = {"n_iter": 5, "n_target_classes": 2, "n_queries": 100}


@pytest.fixture(scope="module")
def samples():
    return prototype_images(48, seed=5)


def predictions(model, x):
    return np.argmax(model(x, training=False).numpy(), axis=1)


@pytest.mark.parametrize("version", ["standard", "plus", "rand"])
@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_members_are_the_versions_data(version, norm):
    """The members run are VERSION_MEMBERS' in order, with its settings and the ensemble's eps
    and norm, less the ones advbench lacks (named in ``skipped`` and in the protocol)."""
    attack = AutoAttack(eps=0.1, norm=norm, version=version)
    members = VERSION_MEMBERS[version][norm]
    assert attack.attack_names == tuple(n for n, _ in members if n not in attack.skipped)
    assert set(attack.skipped) == {n for n, _ in members if missing_reason(n, norm)}
    settings = dict(members)
    for member in attack.attacks:
        assert member.eps == 0.1 and member.norm == norm
        assert {k: member.params()[k] for k in settings[member.name]} == settings[member.name]
    for name in attack.skipped:
        assert name in attack.protocol


def test_the_versions_data_is_the_authors():
    """Names, order and budgets, from the authors' objects (the reference's checkout on the
    path: bench/bench_autoattack.py --reference)."""
    assert [n for n, _ in VERSION_MEMBERS["standard"]["linf"]] == [
        "apgd-ce", "apgd-t", "fab-t", "square"]
    assert dict(VERSION_MEMBERS["standard"]["l1"])["apgd-t"]["n_target_classes"] == 5
    assert dict(VERSION_MEMBERS["standard"]["l1"])["apgd-ce"]["use_largereps"] is True
    pytest.importorskip("torch")
    pytest.importorskip("autoattack")
    from bench_autoattack import check_members

    for version in VERSION_MEMBERS:
        for norm in VERSION_MEMBERS[version]:
            check_members(version, norm)


def _chunk(start, broken_by, robust, seconds, **config):
    """A JSON run of bench/bench_autoattack.py on images start.. of the order."""
    members = ["apgd-ce", "apgd-t"]
    n = len(broken_by)
    ours = robust_accuracy_by_attack(np.array(broken_by), tuple(members))
    theirs = {"clean": ours["clean"], "apgd-ce": np.mean(robust), "apgd-t": np.mean(robust)}
    return {"model": "m.h5", "dataset": "mnist", "limit": 6, "norm": "linf", "eps": 0.3,
            "version": "standard", "seed": 0, "threads": 1, "batch_size": 500,
            "members": members, "start": start, "images": n, "load_start": [1, 1, 1],
            "indices": list(range(start, start + n)),
            "advbench": {"counts": {k: round(v * n) for k, v in ours.items()},
                         "seconds": {"apgd-ce": seconds}, "entering": {"apgd-ce": n},
                         "total_seconds": seconds, "broken_by": broken_by},
            "reference": {"counts": {k: round(v * n) for k, v in theirs.items()},
                          "seconds": {"apgd-ce": 2 * seconds}, "entering": {"apgd-ce": n},
                          "total_seconds": 2 * seconds, "robust": robust}, **config}


def test_bench_chunks_merge_into_their_union(tmp_path):
    """bench_autoattack.py --merge: counts and seconds summed, per-sample arrays in image
    order; chunks of another configuration or sharing images are refused."""
    import json

    from bench_autoattack import merge, table

    paths = []
    for name, chunk in (("b", _chunk(3, [-1, 0, -2], [True, False, False], 2.0)),
                        ("a", _chunk(0, [-1, -1, 1], [True, True, False], 1.0))):
        paths.append(str(tmp_path / f"{name}.json"))
        Path(paths[-1]).write_text(json.dumps(chunk))
    merged = merge(paths)
    assert merged["images"] == 6 and merged["indices"] == list(range(6))
    assert merged["advbench"]["broken_by"] == [-1, -1, 1, -1, 0, -2]
    assert merged["advbench"]["after"] == {"clean": 5 / 6, "apgd-ce": 4 / 6, "apgd-t": 3 / 6}
    assert merged["advbench"]["seconds"] == {"apgd-ce": 3.0}
    assert merged["reference"]["robust"] == [True, True, False, True, False, False]
    assert "| apgd-ce | 66.7 | 50.0 | 3.0 (6) | 6.0 (6) | 2.00 | 1.00 |" in table(merged)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_chunk(6, [-1], [True], 1.0, eps=0.1)))
    with pytest.raises(ValueError, match="eps 0.1 differs from .*'s 0.3; merge runs of one"):
        merge([paths[0], str(other)])
    with pytest.raises(ValueError, match="the chunks share images"):
        merge([paths[0], paths[0]])


def test_overrides_reach_the_members_they_apply_to():
    attack = AutoAttack(eps=0.2, n_iter=7, n_target_classes=3, n_queries=50)
    for member in attack.attacks:
        params = member.params()
        assert params.get("n_iter", 7) == 7 and params.get("n_queries", 50) == 50
        assert params.get("n_target_classes", 3) == 3
    rand = AutoAttack(version="rand", eot_iter=4)
    assert all(a.eot_iter == 4 and a.n_restarts == 1 for a in rand.attacks)


# L1 takes 18 s on an idle core (5 restarts, large reps): slow; L-inf and L2 guard the rule.
@pytest.mark.parametrize("norm, eps", [("linf", 0.15), ("l2", 0.8),
                                       pytest.param("l1", 2.0, marks=pytest.mark.slow)])
def test_never_weaker_than_any_member(tiny_model, samples, norm, eps):
    """Per sample: every sample a member fools alone, the ensemble fools too."""
    x, y = samples
    ensemble = AutoAttack(eps=eps, norm=norm, **FAST)
    out = ensemble(tiny_model, x, y, seed=2)
    robust = predictions(tiny_model, out.x_adv) == y
    # The ensemble's own member objects, run alone (their settings are checked above).
    members = ensemble.attacks
    fooled_by_some = np.zeros(len(x), bool)
    for member in members:
        alone = predictions(tiny_model, member(tiny_model, x, y, seed=2).x_adv) != y
        assert not np.any(alone & robust), member.name
        fooled_by_some |= alone
    # And the ensemble fools exactly the union of its members' samples.
    np.testing.assert_array_equal(~robust, fooled_by_some)
    assert perturbation_size(x, out.x_adv, norm).max() <= eps
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0


def test_broken_by_records_the_first_member_that_fooled(tiny_model, samples):
    x, y = samples
    y = y.copy()
    y[:3] = (y[:3] + 1) % PROTOTYPE_CLASSES  # three samples the model gets wrong
    attack = AutoAttack(eps=0.15, **FAST)
    out = attack(tiny_model, x, y, seed=0)
    broken_by = out.extras["broken_by"]
    assert broken_by.dtype == np.int32 and broken_by.shape == y.shape
    clean_wrong = predictions(tiny_model, x) != y
    np.testing.assert_array_equal(broken_by == MISCLASSIFIED, clean_wrong)
    np.testing.assert_array_equal(out.x_adv[clean_wrong], x[clean_wrong])
    adv_wrong = predictions(tiny_model, out.x_adv) != y
    np.testing.assert_array_equal(broken_by == ROBUST, ~adv_wrong)
    # Members that ran later only saw what the earlier ones left.
    assert set(np.unique(broken_by)) <= {MISCLASSIFIED, ROBUST, *range(len(attack.attacks))}
    assert (broken_by == 0).sum() > 0


def test_robust_accuracy_table():
    broken_by = np.array([-2, -1, 0, 0, 1, 2, -1, -1, 2, 0])
    table = robust_accuracy_by_attack(broken_by, ("apgd-ce", "apgd-t", "square"))
    assert table == {"clean": 0.9, "apgd-ce": 0.6, "apgd-t": 0.5, "square": 0.3}
    assert robust_accuracy_by_attack(np.array([], int), ("a",)) == {"clean": 0.0, "a": 0.0}


def test_square_catches_what_gradients_miss(tiny_model, samples):
    """Behind a quantiser with no gradient only Square fools anything: the
    per-attack table then shows the gradient attacks leaving robust accuracy untouched."""
    x, y = samples
    model = behind(tiny_model, quantiser())
    attack = AutoAttack(eps=0.3, n_iter=5, n_target_classes=2, n_queries=300)
    table = robust_accuracy_by_attack(attack(model, x, y, seed=0).extras["broken_by"],
                                      attack.attack_names)
    assert table["clean"] == table["apgd-ce"] == table["apgd-t"]
    assert table["square"] < table["apgd-t"] - 0.3


def test_rand_version_on_a_randomised_model(tiny_model, samples):
    x, y = samples
    model = behind(tiny_model, input_noise())
    attack = AutoAttack(eps=0.2, version="rand", n_iter=5, eot_iter=3)
    out = attack(model, x, y, seed=0)
    assert np.abs(out.x_adv.astype(np.float64) - x).max() <= 0.2
    assert set(np.unique(out.extras["broken_by"])) <= {MISCLASSIFIED, ROBUST, 0, 1}
    assert np.mean(predictions(tiny_model, out.x_adv) == y) < 0.5


def test_a_dlr_member_is_skipped_below_its_classes(samples):
    x, y = samples
    inputs = keras.Input(PROTOTYPE_SHAPE)
    keras.utils.set_random_seed(1)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    labels = predictions(model, x)  # all correct, so every sample is attacked
    out = AutoAttack(eps=0.3, **FAST)(model, x, labels, seed=0)
    assert 1 not in out.extras["broken_by"]  # apgd-t needs 4 classes: not run


@pytest.mark.parametrize("params, message", [
    ({"version": "extended"}, "version must be one of standard, plus, rand, got 'extended'"),
    ({"norm": "l0"}, "norm must be one of linf, l2, l1, got 'l0'"),
    ({"eot_iter": 3}, "eot_iter applies to no member of the standard version (apgd-ce, "
     "apgd-t, fab-t, square); drop it"),
    ({"n_queries": 0}, "n_queries must be >= 1, got 0"),
    ({"eot_iter": 2.0}, "eot_iter must be an integer, got 2.0"),
    ({"eps": float("nan")}, "eps must be a number, got NaN"),
])
def test_bad_parameters(params, message):
    with pytest.raises(ParameterError, match="^" + re.escape(message) + "$"):
        AutoAttack(**params)


def test_the_start_shows_each_members_resolved_settings():
    """Trial 3: the start line showed n_iter=None n_target_classes=None n_queries=None
    eot_iter=None. It now shows the values the members run with (params(), the run key's,
    keeps the None) and one line per member follows it."""
    attack = AutoAttack(eps=10.0, norm="l1")
    assert attack.params() == {"eps": 10.0, "norm": "l1", "version": "standard",
                               "n_iter": None, "n_target_classes": None, "n_queries": None,
                               "eot_iter": None}
    assert attack.shown_params() == {"eps": 10.0, "norm": "l1", "version": "standard",
                                     "n_iter": 100, "n_target_classes": "apgd-t:5,fab-t:9",
                                     "n_queries": 5000, "eot_iter": 1}
    assert attack.setting_lines() == [
        "  member 1/4 apgd-ce: norm=l1 eps=10 n_iter=100 n_restarts=5 rho=0.75 eot_iter=1 "
        "use_largereps=True",
        "  member 2/4 apgd-t: norm=l1 eps=10 n_iter=100 n_restarts=1 rho=0.75 eot_iter=1 "
        "use_largereps=True n_target_classes=5",
        "  member 3/4 fab-t: norm=l1 eps=10 n_restarts=1 n_iter=100 alpha_max=0.1 eta=1.05 "
        "beta=0.9 final_search=0 n_target_classes=9",
        "  member 4/4 square: norm=l1 eps=10 n_queries=5000 p_init=0.8 n_restarts=1 "
        "loss=margin rescale_schedule=False"]
    rand = AutoAttack(version="rand", n_iter=20)
    assert {k: rand.shown_params()[k] for k in ("n_iter", "n_target_classes", "eot_iter")} == {
        "n_iter": 20, "n_target_classes": "unused", "eot_iter": 20}
    # The start lines of a run; its run key is the one main gave before (it hashes
    # params(), None and all), so existing artifacts are still found.
    from advbench.run.runner import AttackRun, run_key
    from advbench.stages import attack_lines

    run = AttackRun(model_path="m.h5", dataset="mnist", limit=8, batch_size=8)
    assert attack_lines(attack, run, 8, None) == [
        "autoattack: norm=l1 eps=10 version=standard n_iter=100 n_target_classes=apgd-t:5,"
        "fab-t:9 n_queries=5000 eot_iter=1; untargeted; seed 0; 8 samples (class-balanced) of "
        "mnist test (start 0, batch size 8)", *attack.setting_lines()]
    assert run_key(run, attack, "h", np.arange(8)) == (
        "63fb34bac9d6a9641920f1ae212be0dc1e5ee0f95bf197c18a91f7154d8da995")


def test_the_authors_warnings(tiny_model, samples):
    """Trial 3: fra31/auto-attack's checks (checks.py: a randomized model under a version
    other than rand, plus outside L-inf/L2, the classes its members need) were not made;
    advbench adds rand on a deterministic model."""
    x, _ = samples
    assert AutoAttack(eps=0.3, **FAST).model_warnings(tiny_model, x) == []
    assert AutoAttack(eps=0.3, version="rand").model_warnings(tiny_model, x) == [
        "autoattack: the model's outputs on the same images are the same on 5 passes "
        "(deterministic): --version rand only multiplies the cost by averaging identical "
        "gradients; use --version standard"]
    noisy = behind(tiny_model, input_noise())
    assert AutoAttack(eps=0.3, **FAST).model_warnings(noisy, x) == [
        "autoattack: the model's outputs on the same images differ between 5 passes (a "
        "randomized defense?): the standard version attacks one draw of its randomness at a "
        "time; use --version rand (gradients averaged over --eot-iter draws)"]
    assert AutoAttack(eps=0.3, version="rand").model_warnings(noisy, x) == []
    plus = AutoAttack(eps=10.0, norm="l1", version="plus", **FAST)
    assert plus.model_warnings(tiny_model, x) == [
        "autoattack: the plus version is meant for linf and l2, not l1 (the authors warn "
        "likewise)"]
    inputs = keras.Input(PROTOTYPE_SHAPE)
    three = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    assert AutoAttack(eps=0.3).model_warnings(three, x) == [
        "autoattack: apgd-t needs at least 4 classes, the model has 3: it is not run",
        "autoattack: fab-t asks for 9 target classes, the model has 2 besides the label"]


def test_a_run_prints_and_stores_the_warnings(trained_tiny_cnn, fake_data_dir, tmp_path):
    import io
    import json

    import h5py
    from rich.console import Console

    from advbench.core.progress import Progress
    from advbench.run.runner import AttackRun, attack_split

    path, model, meta = trained_tiny_cnn
    run = AttackRun(model_path=str(path), dataset="mnist", limit=4, batch_size=4,
                    data_dir=str(fake_data_dir))
    out = io.StringIO()
    progress = Progress(console=Console(file=out, width=400), interval=1e9)
    attack = AutoAttack(eps=0.1, version="rand", n_iter=1, eot_iter=1)
    output = attack_split(run, attack, model, meta, tmp_path / "aa.h5", progress=progress)
    line = ("autoattack: the model's outputs on the same images are the same on 5 passes "
            "(deterministic): --version rand only multiplies the cost by averaging identical "
            "gradients; use --version standard")
    assert f"warning: {line}" in out.getvalue().splitlines()
    with h5py.File(output) as f:
        assert json.loads(f.attrs["warnings"]) == [line]


def test_evaluate_tables_leave_out_the_derived_none_settings():
    """Trial 3: evaluate's attack column showed `n_iter=None n_target_classes=None ...` for an
    AutoAttack artifact. None stands for the version's default: the tables leave it out (the
    stored parameters keep it)."""
    from advbench.score.report import params_text

    params = AutoAttack(eps=0.3).params()
    assert params_text(params) == "eps=0.3 norm=linf version=standard"
    assert params_text(params, ", ") == "eps=0.3, norm=linf, version=standard"
    assert params_text(None) == ""
