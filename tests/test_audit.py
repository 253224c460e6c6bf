"""`advbench audit`: the gradient-masking checks on tiny models, each tripped by a model built
to trip it, the record, and the CLI (table, JSON, -o, --fail-on, every error line)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from advbench.cli import EXIT_AUDIT_FAILED, main
from advbench.score import AUDIT_CHECKS, AUDIT_DEFAULTS, AUDIT_SETTING_CHECKS
from tests.conftest import PROTOTYPE_CLASSES, PROTOTYPE_SHAPE, prototype_images

# Small budgets: the tiny models break (or resist) in a few steps.
FAST = dict(pgd_steps=10, n_iter=20, convergence_factor=2, square_queries=300, curve_points=3,
            noise_draws=3)
EPS = 0.3


def noise_layer():
    """A layer adding Gaussian noise at inference too (Keras' GaussianNoise and Dropout
    are off outside training, and a functional model's call overrides training=True)."""
    import keras
    import tensorflow as tf

    class InferenceNoise(keras.layers.Layer):
        def call(self, v):
            return v + tf.random.normal(tf.shape(v), stddev=0.3)

    return InferenceNoise()


def tiny(*, seed: int = 0, squeeze: bool = False, softmax: bool = False,
         random: bool = False):
    """The conftest's tiny conv net, trained on the prototype classes, with the one change
    that trips a check: a 1-bit squeeze of the input whose gradient is zero (no straight-
    through estimator), a final softmax, or noise added at inference."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(PROTOTYPE_SHAPE)
    h = inputs
    if squeeze:
        # tf.round has no gradient: the input gradient is exactly zero (masked, not robust).
        h = keras.layers.Lambda(lambda v: tf.round(v))(h)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.Flatten()(h)
    if random:
        h = noise_layer()(h)
    outputs = keras.layers.Dense(PROTOTYPE_CLASSES)(h)
    model = keras.Model(inputs, outputs)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = prototype_images(1024, seed=1)
    model.fit(x, y, batch_size=64, epochs=5, verbose=0)
    if softmax:
        model = keras.Model(inputs, keras.layers.Softmax()(model.outputs[0]))
    return model


class Models(dict):
    """The tiny models by kind, each trained on first use."""

    def __missing__(self, kind):
        self[kind] = tiny(**({kind: True} if kind != "plain" else {}))
        return self[kind]


@pytest.fixture(scope="module")
def models():
    return Models()


@pytest.fixture(scope="module")
def surrogate():
    model = tiny(seed=3)
    return lambda: (model, {"source": "test"})


@pytest.fixture(scope="module")
def samples():
    return prototype_images(64, seed=7)


@pytest.fixture(scope="module")
def audited(models, surrogate, samples):
    """Full audits of the plain and the squeeze model (the softmax and noise models are
    audited in full by the slow test below)."""
    from advbench.score.audit import AuditSettings, audit

    x, y = samples
    return {kind: audit(models[kind], x, y, eps=EPS, settings=AuditSettings(**FAST),
                        surrogate=surrogate, batch_size=32)
            for kind in ("plain", "squeeze")}


def verdicts(result) -> dict[str, str]:
    return {row["name"]: row["verdict"] for row in result.summary["checks"]}


@pytest.mark.slow
def test_the_plain_model_passes_every_check(audited):
    assert verdicts(audited["plain"]) == {name: "pass" for name in AUDIT_CHECKS}
    assert audited["plain"].summary["verdict"] == "pass"


@pytest.mark.slow
def test_a_zero_gradient_squeeze_trips_the_masking_checks(audited):
    """The squeeze (round without straight-through) fails check 1 (every gradient is zero),
    3 (transfer from the surrogate beats the blind white-box attacks), 4 (the unbounded
    attack cannot follow a gradient), 6 (Square fools what the gradient attacks cannot) and
    7 (random noise beats the attacks); 2, 5 and 8 pass, as every gradient attack is equally
    blind."""
    found = verdicts(audited["squeeze"])
    failed = {name for name, verdict in found.items() if verdict == "fail"}
    assert failed == {"logits-and-gradients", "white-box-vs-transfer", "unbounded-attack",
                      "gradient-free-vs-gradient", "attack-vs-random-noise"}, \
        audited["squeeze"].summary["checks"]
    row = audited["squeeze"].summary["checks"][0]
    assert row["evidence"]["zero_gradients"] == 1.0
    assert "100.0% of input gradients are zero or not finite" in row["detail"]


def test_a_zero_gradient_squeeze_fails_checks_1_and_6(models, samples):
    """The fast subset of the test above: zero gradients, and Square's lead."""
    from advbench.score.audit import AuditSettings, audit

    x, y = samples
    result = audit(models["squeeze"], x, y, eps=EPS, settings=AuditSettings(**FAST),
                   checks=["logits-and-gradients", "gradient-free-vs-gradient"])
    assert verdicts(result) == {"logits-and-gradients": "fail",
                                "gradient-free-vs-gradient": "fail"}
    assert result.summary["checks"][1]["evidence"]["square_lead"] > 0.5


def check_1(model, samples):
    from advbench.score.audit import AuditSettings, audit

    x, y = samples
    return audit(model, x, y, eps=EPS, checks=["logits-and-gradients"],
                 settings=AuditSettings(**FAST)).summary["checks"][0]


def test_a_softmax_output_fails_check_1(models, samples):
    row = check_1(models["softmax"], samples)
    assert row["verdict"] == "fail" and row["evidence"]["probabilities"] is True
    assert row["detail"].startswith("outputs look like probabilities")


def test_noise_at_inference_fails_determinism(models, samples):
    row = check_1(models["random"], samples)
    assert row["verdict"] == "fail" and row["evidence"]["deterministic"] is False
    assert "outputs are random" in row["detail"]


@pytest.mark.slow
def test_full_audits_of_the_softmax_and_noise_models(models, surrogate, samples):
    """The softmax model fails check 1 only (the tiny model's probabilities still carry a
    usable gradient); the noise model fails check 1 and the attack checks its randomness
    misleads: APGD-CE weaker than FGSM (2), the unbounded attack short of 100% (4) and
    restarts still lowering accuracy (8), the signs that call for EOT."""
    from advbench.score.audit import AuditSettings, audit

    x, y = samples
    results = {kind: verdicts(audit(models[kind], x, y, eps=EPS, settings=AuditSettings(
        **FAST), surrogate=surrogate, batch_size=32)) for kind in ("softmax", "random")}
    assert {n for n, v in results["softmax"].items() if v != "pass"} == {"logits-and-gradients"}
    assert results["random"]["logits-and-gradients"] == "fail"
    assert {"iterative-vs-single-step", "unbounded-attack", "attack-convergence"} & {
        n for n, v in results["random"].items() if v == "fail"}


def test_verdicts_follow_the_thresholds():
    from advbench.score.audit import grade, worst

    assert [grade(v, 0.02) for v in (0.0, 0.01, 0.0101, 0.02, 0.0201, float("nan"))] == \
        ["pass", "pass", "warn", "warn", "fail", "fail"]
    assert worst(["pass", "fail", "warn"]) == "fail" and worst([]) == "pass"


def test_settings_defaults_are_the_documented_ones():
    import dataclasses

    from advbench.score.audit import AuditSettings

    assert dataclasses.asdict(AuditSettings()) == AUDIT_DEFAULTS


def test_checks_subset_runs_only_those(models, samples):
    from advbench.score.audit import AuditSettings, audit

    x, y = samples
    result = audit(models["plain"], x, y, eps=EPS, checks=["iterative-vs-single-step"],
                   settings=AuditSettings(**FAST))
    assert [row["number"] for row in result.summary["checks"]] == [2]
    assert set(result.summary["attacks"]) == {"fgsm@0.1", "fgsm@0.2", "fgsm@0.3", "pgd@0.3",
                                              "apgd-ce"}


def test_l2_audit_runs(models, samples):
    from advbench.score.audit import AuditSettings, audit

    x, y = samples
    result = audit(models["plain"], x, y, eps=1.5, norm="l2",
                   checks=["unbounded-attack", "attack-vs-random-noise"], batch_size=64,
                   settings=AuditSettings(**FAST))
    assert result.summary["checks"][0]["evidence"]["eps"] == pytest.approx(8.0)
    assert verdicts(result) == {"unbounded-attack": "pass", "attack-vs-random-noise": "pass"}


def test_parse_checks_takes_names_and_numbers():
    from advbench.score.audit import parse_checks

    assert parse_checks("6, logits-and-gradients,2,6") == (
        "logits-and-gradients", "iterative-vs-single-step", "gradient-free-vs-gradient")


@pytest.mark.parametrize("kwargs, message", [
    (dict(eps=0.0), "eps must be > 0.0, got 0.0"),
    (dict(eps=1.5), "eps must be <= 1.0, got 1.5"),
    (dict(norm="l1"), "norm must be one of linf, l2, got 'l1'"),
    (dict(checks=["speed"]), "unknown check(s) speed; choose from: logits-and-gradients"),
    (dict(checks=[]), "unknown check(s) (none given); choose from"),
    (dict(settings_tolerance=1.5), "tolerance must be <= 1.0, got 1.5"),
    (dict(settings_convergence_factor=1), "convergence-factor must be >= 2, got 1"),
    (dict(settings_unbounded_eps=0.0), "unbounded-eps must be > 0.0, got 0.0"),
    (dict(settings_surrogate_architecture="vgg"),
     "surrogate-architecture must be one of cnn, resnet, cifar-cnn, mlp, got 'vgg'"),
    (dict(checks=["white-box-vs-transfer"]),
     "check white-box-vs-transfer needs a surrogate model; pass one (--surrogate) or "
     "training data to train one"),
])
def test_audit_refuses_bad_input(models, samples, kwargs, message):
    from advbench.score.audit import AuditSettings, audit
    from advbench.core.errors import ParameterError

    x, y = samples
    settings = {k[len("settings_"):]: v for k, v in kwargs.items() if k.startswith("settings_")}
    args = {"eps": EPS, **{k: v for k, v in kwargs.items() if not k.startswith("settings_")}}
    with pytest.raises(ParameterError, match="^" + __import__("re").escape(message)):
        audit(models["plain"], x, y, settings=AuditSettings(**{**FAST, **settings}), **args)


def test_audit_refuses_a_model_that_gets_nothing_right(samples):
    import keras

    from advbench.score.audit import audit
    from advbench.core.errors import ParameterError

    x, y = samples
    inputs = keras.Input(PROTOTYPE_SHAPE)
    dense = keras.layers.Dense(PROTOTYPE_CLASSES, kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant([0, 0, 0, 1]))
    model = keras.Model(inputs, dense(keras.layers.Flatten()(inputs)))
    keep = y != 3
    with pytest.raises(ParameterError, match=r"^the model classifies none of the \d+ audited "
                                             r"samples correctly, so no attack can be judged"):
        audit(model, x[keep], y[keep], eps=EPS)


def test_random_noise_has_the_norm_asked_for():
    from advbench.score.audit import random_noise

    rng = np.random.default_rng(0)
    x = np.full((5, 4, 4, 1), 0.5, np.float32)
    linf = random_noise(x, 0.25, "linf", rng) - x
    assert np.allclose(np.abs(linf), 0.25)
    l2 = random_noise(x, 0.3, "l2", rng) - x
    assert np.allclose(np.sqrt((l2.reshape(5, -1) ** 2).sum(axis=1)), 0.3, atol=1e-5)


# -- the CLI ---------------------------------------------------------------------------------
CLI_FAST = ["--pgd-steps", "5", "--n-iter", "10", "--square-queries", "50", "--curve-points",
            "2", "--noise-draws", "2", "--convergence-factor", "2", "--limit", "20",
            "--batch-size", "20"]


def fast(checks: str) -> list[str]:
    """CLI_FAST without the budget flags that none of ``checks`` (numbers) uses: audit
    refuses those."""
    chosen = {int(c) for c in checks.split(",")}
    pairs = zip(CLI_FAST[::2], CLI_FAST[1::2])
    return [part for flag, value in pairs
            for part in (flag, value)
            if flag.lstrip("-").replace("-", "_") not in AUDIT_SETTING_CHECKS
            or chosen & set(AUDIT_SETTING_CHECKS[flag.lstrip("-").replace("-", "_")])]


def run_cli(args, data_dir):
    return CliRunner().invoke(main, ["audit", *map(str, args), "--data-dir", str(data_dir)])


def test_cli_table_json_and_record(trained_tiny_cnn, fake_data_dir, tmp_path):
    from advbench.score.audit import read_audit

    path = trained_tiny_cnn[0]
    out = tmp_path / "audit.h5"
    result = run_cli([path, "--eps", "0.3", "--checks", "1,2,7", *fast("1,2,7"), "-o", out],
                     fake_data_dir)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"
    assert "audit of cnn at eps 0.3 (linf), 20 samples" in result.stderr
    for number, name in ((1, "logits-and-gradients"), (2, "iterative-vs-single-step"),
                         (7, "attack-vs-random-noise")):
        assert f"│ {number} │ {name}" in result.stderr
    attrs, arrays = read_audit(out)
    assert attrs["schema"] == "advbench.audit" and attrs["eps"] == 0.3
    assert [row["number"] for row in attrs["summary"]["checks"]] == [1, 2, 7]
    assert attrs["verdict"] == attrs["summary"]["verdict"]
    assert arrays["robust/pgd@0.3"].dtype == bool and arrays["indices"].shape == (20,)
    # The same audit again reuses the record; --json prints the same summary.
    again = run_cli([path, "--eps", "0.3", "--checks", "1,2,7", *fast("1,2,7"), "-o", out,
                     "--json", "--format", "markdown"], fake_data_dir)
    assert again.exit_code == 0, again.output
    assert "holds this audit already; reusing it" in again.stderr
    assert "| 1 | logits-and-gradients |" in again.stderr
    summary = json.loads(again.stdout)
    assert summary["checks"] == attrs["summary"]["checks"]
    assert summary["model"]["name"] == "cnn" and summary["dataset"] == "mnist"
    # Another audit into the same record is refused.
    other = run_cli([path, "--eps", "0.2", "--checks", "1", *fast("1"), "-o", out],
                    fake_data_dir)
    assert other.exit_code == 1
    assert other.output.strip().endswith(
        f"Error: {out} holds an audit with other parameters, model or samples; pass "
        "--overwrite to replace it or choose another -o")
    replaced = run_cli([path, "--eps", "0.2", "--checks", "1", *fast("1"), "-o", out,
                        "--overwrite", "-q"], fake_data_dir)
    assert replaced.exit_code == 0, replaced.output
    assert read_audit(out)[0]["eps"] == 0.2


def test_cli_fail_on_exits_4(trained_tiny_cnn, fake_data_dir):
    # An "unbounded" eps of 0.001 cannot fool every sample: check 4 fails.
    args = [trained_tiny_cnn[0], "--eps", "0.3", "--checks", "unbounded-attack",
            "--unbounded-eps", "0.001", *fast("4")]
    plain = run_cli(args, fake_data_dir)
    assert plain.exit_code == 0, plain.output
    assert "fail" in plain.stderr
    gated = run_cli([*args, "--fail-on", "warn", "--json"], fake_data_dir)
    assert gated.exit_code == EXIT_AUDIT_FAILED
    assert json.loads(gated.stdout)["verdict"] == "fail"
    assert gated.stderr.strip().endswith(
        "audit failed (--fail-on warn): 4 unbounded-attack (fail)")


@pytest.mark.slow
def test_cli_trains_a_surrogate_for_check_3(trained_tiny_cnn, fake_data_dir):
    result = run_cli([trained_tiny_cnn[0], "--eps", "0.3", "--checks", "3", *fast("3"),
                      "--surrogate-epochs", "1", "--surrogate-limit", "100", "--json"],
                     fake_data_dir)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)["checks"][0]
    assert row["name"] == "white-box-vs-transfer"
    assert row["evidence"]["surrogate"]["train_samples"] == 100


def test_cli_takes_a_surrogate_file(trained_tiny_cnn, dense_mnist_model, fake_data_dir):
    result = run_cli([trained_tiny_cnn[0], "--eps", "0.3", "--checks", "3", *fast("3"),
                      "--surrogate", dense_mnist_model[0], "--json", "-q"], fake_data_dir)
    assert result.exit_code == 0, result.output
    evidence = json.loads(result.stdout)["checks"][0]["evidence"]
    assert evidence["surrogate"]["source"] == str(dense_mnist_model[0])


@pytest.mark.parametrize("args, message", [
    (["--eps", "0"], "Error: eps must be > 0.0, got 0.0"),
    (["--eps", "2"], "Error: eps must be <= 1.0, got 2.0"),
    (["--eps", "0.3", "--checks", "1,speed"],
     "Error: Invalid value for '--checks': unknown check 'speed' in '1,speed'; give names or "
     "numbers 1-8: logits-and-gradients, iterative-vs-single-step"),
    (["--eps", "0.3", "--checks", "9"], "Error: Invalid value for '--checks': unknown check '9'"),
    (["--eps", "0.3", "--checks", "1", "--surrogate", "cnn"],
     "Error: --surrogate applies to check 3 (white-box-vs-transfer), which --checks leaves out"),
    (["--eps", "0.3", "--checks", "1,2", "--surrogate-epochs", "1"],
     "Error: --surrogate-epochs applies to check 3 (white-box-vs-transfer), which --checks "
     "leaves out"),
    (["--eps", "0.3", "--surrogate", "cnn", "--surrogate-limit", "100"],
     "Error: --surrogate-limit shapes the surrogate advbench trains; drop it with --surrogate"),
    (["--eps", "0.3", "--checks", "1", "--unbounded-eps", "2"],
     "Error: --unbounded-eps applies to check 4 (unbounded-attack), which --checks leaves out"),
    (["--eps", "0.3", "--checks", "1,3", "--square-queries", "10"],
     "Error: --square-queries (check 6) does not apply to the checks chosen by --checks (1, 3); "
     "drop it or add its checks"),
    (["--eps", "0.3", "--checks", "logits-and-gradients", "--noise-draws", "2", "--n-iter", "5"],
     "Error: --n-iter (checks 2, 3, 4, 6, 7, 8), --noise-draws (check 7) do not apply to the "
     "checks chosen by --checks (1); drop them or add their checks"),
    (["--eps", "0.3", "--tolerance", "2"], "Error: tolerance must be <= 1.0, got 2.0"),
    (["--eps", "0.3", "--square-lead", "-0.1"], "Error: square-lead must be >= 0.0, got -0.1"),
    (["--eps", "0.3", "--convergence-factor", "1"],
     "Error: convergence-factor must be >= 2, got 1"),
    (["--eps", "0.3", "--pgd-steps", "0"], "Error: pgd-steps must be >= 1, got 0"),
    (["--eps", "0.3", "--unbounded-eps", "-1"], "Error: unbounded-eps must be > 0.0, got -1.0"),
    (["--eps", "0.3", "--surrogate-limit", "5"], "Error: surrogate-limit must be >= 10, got 5"),
    (["--eps", "0.3", "--limit", "0"], "Error: limit must be >= 1, got 0"),
    (["--eps", "0.3", "--norm", "l1"], "Error: Invalid value for '--norm': 'l1' is not one of"),
    (["--eps", "0.3", "--fail-on", "pass"],
     "Error: Invalid value for '--fail-on': 'pass' is not one of 'warn', 'fail'."),
])
def test_cli_usage_errors_exit_2(trained_tiny_cnn, fake_data_dir, args, message):
    result = run_cli([trained_tiny_cnn[0], *args], fake_data_dir)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_surrogate_must_not_be_the_model(trained_tiny_cnn, fake_data_dir):
    path = trained_tiny_cnn[0]
    result = run_cli([path, "--eps", "0.3", "--checks", "3", "--surrogate", path, *fast("3")],
                     fake_data_dir)
    assert result.exit_code == 2
    assert result.output.strip().endswith(
        f"Error: --surrogate {path} is MODEL itself, so its attacks are white-box; give another "
        "model or leave --surrogate out to train one")


def test_cli_errors_exit_1(trained_tiny_cnn, fake_data_dir, tmp_path):
    not_audit = tmp_path / "notes.h5"
    not_audit.write_text("my notes")
    cases = [
        ([trained_tiny_cnn[0], "--eps", "0.3", "--checks", "1", "-o", not_audit],
         f"Error: {not_audit} exists and is not an audit record; choose another -o or pass "
         "--overwrite"),
        ([tmp_path / "missing.h5", "--eps", "0.3"],
         f"Error: model file {tmp_path / 'missing.h5'} does not exist; train one with "
         "`advbench train` or pass an existing path"),
    ]
    for args, message in cases:
        result = run_cli(args, fake_data_dir)
        assert result.exit_code == 1, result.output
        assert result.output.strip().splitlines()[-1] == message
        assert "Traceback" not in result.output
    assert not_audit.read_text() == "my notes"
    folder = run_cli([trained_tiny_cnn[0], "--eps", "0.3", "-o", tmp_path], fake_data_dir)
    assert folder.exit_code == 2
    assert f"Error: Invalid value for '-o' / '--output': File '{tmp_path}' is a directory." \
        in folder.output


def test_a_violation_at_a_bound_is_not_above_it():
    from advbench.score.audit import grade

    # 0.86 - 0.85 = 0.010000000000000009: one sample in 100 at a 0.02 tolerance is half of it.
    assert grade(0.86 - 0.85, 0.02) == "pass"
    assert grade(0.011, 0.02) == "warn"
    assert grade(0.02 + 1e-12, 0.02) == "warn"
    assert grade(0.021, 0.02) == "fail"
    assert grade(float("nan"), 0.02) == "fail"


def test_cli_eps_defaults_to_the_data_sets_budget_and_is_printed(trained_tiny_cnn,
                                                                 fake_data_dir):
    """Issue 19: audit's --eps takes the data set's budget (budgets.BUDGETS, as attack does)
    and the run's first line names every parameter and where the default came from."""
    result = run_cli([trained_tiny_cnn[0], "--checks", "1", *fast("1")], fake_data_dir)
    assert result.exit_code == 0, result.output
    assert "audit of cnn at eps 0.3 (linf), 20 samples" in result.stderr
    assert ("audit: eps=0.3 norm=linf checks=1 tolerance=0.02 square_lead=0.05 "
            "min_unbounded_success=0.99 max_bad_gradients=0.1 pgd_steps=40 n_iter=100 "
            "convergence_factor=4 square_queries=5000 curve_points=5 unbounded_eps=None "
            "noise_draws=10 surrogate_epochs=2 surrogate_limit=5000 surrogate_architecture=cnn "
            "(eps: mnist's default); seed 0; 20 samples (class-balanced) of mnist test "
            "(start 0, batch size 20)") in result.stderr.splitlines()
    l2 = run_cli([trained_tiny_cnn[0], "--norm", "l2", "--checks", "1", *fast("1"), "--json"],
                 fake_data_dir)
    assert l2.exit_code == 0, l2.output
    assert json.loads(l2.stdout)["eps"] == 1.5
    assert "audit: eps=1.5 norm=l2 checks=1 " in l2.stderr


def test_cli_own_data_of_another_size_needs_eps(tmp_path):
    """A usage error (exit 2) before TensorFlow: the data's header gives the image size."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", x=rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8),
             y=np.arange(4) % 2)
    (tmp_path / "none.keras").touch()
    result = CliRunner().invoke(main, ["audit", str(tmp_path / "none.keras"), "--data",
                                       str(tmp_path / "big.npz")])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: --data {tmp_path / 'big.npz'} holds 16x16x3 images, the shape of no built-in "
        "data set (mnist 28x28x1, cifar10 32x32x3), so audit's --eps has no default; give it, "
        "e.g. --eps 8/255")
