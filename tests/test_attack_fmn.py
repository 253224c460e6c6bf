"""Fast Minimum-Norm (fmn): the known minimal perturbation of affine models in L2, L-inf and
L1, the projections, bounds, every output adversarial or the input, targets, the batch start
with its binary search, bad parameters, and robustness / training distance from `evaluate`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from advbench.attacks import FMN_NORMS, make_attack  # noqa: E402
from advbench.attacks.fmn import FMN, fmn_project  # noqa: E402
from advbench.core.errors import ParameterError  # noqa: E402
from advbench.core.ops import DECISIVE_MARGIN, is_adversarial  # noqa: E402
from advbench.models.zoo import predict_logits  # noqa: E402

from conftest import prototype_images  # noqa: E402

# The dual norm q of each norm p: the nearest point of the hyperplane w.x + f = 0 lies at
# |f| / ||w||_q (Hoelder), in the open box.
DUAL = {"l2": 2, "linf": 1, "l1": np.inf}
ORDER = {"l2": 2, "linf": np.inf, "l1": 1}


def affine_model(seed: int = 3, classes: int = 2):
    """Flatten + Dense on 4x4 images, with the bias putting x = 0.5 near the boundary. Two
    classes: with more, FMN follows the margin to the currently best other class, whose
    hyperplane need not be the nearest."""
    rng = np.random.default_rng(seed)
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(classes)])
    weights = rng.normal(0.0, 1.0, (16, classes)).astype(np.float32)
    bias = (-0.5 * weights.sum(axis=0) + rng.normal(0.0, 0.3, classes)).astype(np.float32)
    model.layers[-1].set_weights([weights, bias])
    return model, weights, bias


def affine_samples(model, count: int = 12):
    x = (0.5 + np.random.default_rng(4).uniform(-0.03, 0.03, (count, 4, 4, 1))).astype(
        np.float32)
    return x, predict_logits(model, x).argmax(axis=1)


def closed_form(weights, bias, x, y, norm):
    """The smallest ``norm`` perturbation that reaches another class's hyperplane."""
    logits = x.reshape(len(x), -1).astype(np.float64) @ weights + bias
    out = np.full(len(x), np.inf)
    for i in range(len(x)):
        for k in range(weights.shape[1]):
            if k != y[i]:
                w = weights[:, k] - weights[:, y[i]]
                out[i] = min(out[i], (logits[i, y[i]] - logits[i, k]) / np.linalg.norm(
                    w, ord=DUAL[norm]))
    return out


@pytest.mark.parametrize("norm", ["l2", "linf", "l1"])
def test_affine_model_gives_the_closed_form_minimum(norm):
    model, weights, bias = affine_model()
    x, y = affine_samples(model)
    expected = closed_form(weights, bias, x, y, norm)
    # Away from the box: the minimal perturbation moves no feature out of [0, 1] (the L1 one
    # moves a single feature by the whole distance, from about 0.5).
    assert expected.max() < 0.4 and expected.min() > 0.001, expected
    out = FMN(norm=norm, steps=200)(model, x, y)
    size = np.linalg.norm((out.x_adv - x).reshape(len(x), -1).astype(np.float64),
                          ord=ORDER[norm], axis=1)
    assert np.all(predict_logits(model, out.x_adv).argmax(axis=1) != y)
    # Never below the minimum (float32 slack), and within 2% of it: past the boundary only by
    # the decisive margin (ops.is_adversarial) and the last steps' size.
    assert np.all(size >= expected * (1 - 1e-4)), size / expected
    assert np.all(size <= expected * 1.02), size / expected
    np.testing.assert_allclose(out.extras["norm"], size, rtol=1e-4)


def test_affine_model_l0_changes_one_feature_when_one_suffices():
    """Scaled up, one feature of the affine model crosses a boundary within the box: the L0
    minimum is 1."""
    model, weights, bias = affine_model()
    x, y = affine_samples(model)
    one = closed_form(weights, bias, x, y, "l1")  # the distance along the single best feature
    assert one.max() < 0.4
    out = FMN(norm="l0", steps=100)(model, x, y)
    changed = np.count_nonzero(np.abs(out.x_adv - x) > 1e-6, axis=(1, 2, 3))
    assert np.all(predict_logits(model, out.x_adv).argmax(axis=1) != y)
    np.testing.assert_array_equal(changed, 1)
    np.testing.assert_array_equal(out.extras["norm"], 1.0)


def brute_l1_projection(v: np.ndarray, radius: float) -> np.ndarray:
    """The Euclidean projection onto the L1 ball by bisection on the soft-threshold level."""
    if np.abs(v).sum() <= radius:
        return v
    low, high = 0.0, float(np.abs(v).max())
    for _ in range(200):
        level = (low + high) / 2
        if np.maximum(np.abs(v) - level, 0).sum() > radius:
            low = level
        else:
            high = level
    return np.sign(v) * np.maximum(np.abs(v) - high, 0)


def test_projections_hold_each_radius_per_sample():
    rng = np.random.default_rng(0)
    delta = rng.normal(0.0, 1.0, (6, 3, 3, 1)).astype(np.float32)
    radius = np.array([0.5, 1.0, 2.0, 100.0, np.inf, 0.0], np.float32)
    flat = delta.reshape(6, -1)
    l1 = fmn_project(tf.constant(delta), tf.constant(radius), "l1").numpy().reshape(6, -1)
    for i in range(6):
        np.testing.assert_allclose(l1[i], brute_l1_projection(flat[i], float(radius[i])),
                                   atol=1e-5)
    l2 = fmn_project(tf.constant(delta), tf.constant(radius), "l2").numpy().reshape(6, -1)
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1),
                               np.minimum(np.linalg.norm(flat, axis=1), radius), rtol=1e-5)
    linf = fmn_project(tf.constant(delta), tf.constant(radius), "linf").numpy().reshape(6, -1)
    np.testing.assert_allclose(linf, np.clip(flat, -radius[:, None], radius[:, None]))
    keep = np.array([1, 2, 3, 9, 9, 0], np.float32)
    l0 = fmn_project(tf.constant(delta), tf.constant(keep + 0.7), "l0").numpy().reshape(6, -1)
    for i in range(6):
        k = int(keep[i])
        largest = np.argsort(-np.abs(flat[i]), kind="stable")[:k]
        expected = np.zeros(9, np.float32)
        expected[largest] = flat[i, largest]
        np.testing.assert_array_equal(l0[i], expected)


@pytest.fixture(scope="module")
def prototypes():
    return prototype_images(24, seed=7)


@pytest.mark.parametrize("norm", FMN_NORMS)
def test_outputs_in_the_box_adversarial_or_the_input(norm, tiny_model, prototypes):
    x, _ = prototypes
    y = predict_logits(tiny_model, x).argmax(axis=1)
    out = FMN(norm=norm, steps=50)(tiny_model, x, y)
    assert out.x_adv.dtype == np.float32 and out.x_adv.shape == x.shape
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    logits = predict_logits(tiny_model, out.x_adv)
    fooled = is_adversarial(tf.constant(logits), tf.constant(y)).numpy()
    unchanged = np.all(out.x_adv == x, axis=(1, 2, 3))
    assert np.all(fooled | unchanged)
    # Foolbox 3.3.4's FMN fools 71% (L1) to 100% of these in 30 to 100 steps.
    assert fooled.mean() > 0.6, fooled.mean()
    np.testing.assert_array_equal(out.extras["norm"][unchanged], 0.0)


def test_already_adversarial_samples_are_returned_unchanged(tiny_model, prototypes):
    x, _ = prototypes
    logits = predict_logits(tiny_model, x)
    wrong = np.argsort(logits, axis=1)[:, 0]  # a class the model does not predict
    out = FMN(norm="l2", steps=10)(tiny_model, x, wrong)
    np.testing.assert_array_equal(out.x_adv, x)


def test_targeted_reaches_the_target(tiny_model, prototypes):
    x, _ = prototypes
    y = predict_logits(tiny_model, x).argmax(axis=1)
    target = (y + 1) % 4
    out = FMN(norm="l2", steps=50)(tiny_model, x, y, target=target)
    reached = predict_logits(tiny_model, out.x_adv).argmax(axis=1) == target
    unchanged = np.all(out.x_adv == x, axis=(1, 2, 3))
    assert np.all(reached | unchanged) and reached.mean() > 0.6


@pytest.mark.parametrize("norm", FMN_NORMS)
def test_batch_start_binary_search_then_fmn(norm, tiny_model, prototypes):
    """init="batch" starts from the nearest other-class image of the batch, moved to the
    boundary by the binary search: never larger than that image's distance, and a few steps
    from it reach about what FMN from x reaches."""
    x, _ = prototypes
    y = predict_logits(tiny_model, x).argmax(axis=1)
    searched = FMN(norm=norm, steps=1, init="batch", binary_search_steps=12)(tiny_model, x, y)
    flat = x.reshape(len(x), -1)
    order = {"l0": 0, "l1": 1, "l2": 2, "linf": np.inf}[norm]
    nearest = np.array([min(np.linalg.norm(flat[j] - flat[i], ord=order)
                            for j in range(len(x)) if y[j] != y[i]) for i in range(len(x))])
    size = searched.extras["norm"]
    assert np.all((size > 0) & (size <= nearest * (1 + 1e-5))), (size, nearest)
    fooled = predict_logits(tiny_model, searched.x_adv).argmax(axis=1) != y
    assert fooled.all()


def test_same_input_same_result(tiny_model, prototypes):
    x, _ = prototypes
    y = predict_logits(tiny_model, x).argmax(axis=1)
    attack = FMN(norm="l1", steps=15)
    np.testing.assert_array_equal(attack(tiny_model, x, y, seed=1).x_adv,
                                  attack(tiny_model, x, y, seed=2).x_adv)


def test_decisively_past_the_boundary(tiny_model, prototypes):
    x, _ = prototypes
    y = predict_logits(tiny_model, x).argmax(axis=1)
    out = FMN(norm="linf", steps=40)(tiny_model, x, y)
    one_by_one = np.concatenate([predict_logits(tiny_model, out.x_adv[i:i + 1])
                                 for i in range(len(x))])
    fooled = one_by_one.argmax(axis=1) != y
    top2 = np.sort(one_by_one, axis=1)[:, -2:]
    lead = (top2[:, 1] - top2[:, 0]) / (1.0 + np.abs(one_by_one).max(axis=1))
    assert fooled.any() and np.all(lead[fooled] > DECISIVE_MARGIN / 2)


@pytest.mark.parametrize("params, message", [
    ({"norm": "l3"}, "norm must be one of l0, l1, l2, linf, got 'l3'"),
    ({"steps": 0}, "steps must be >= 1, got 0"),
    ({"steps": 2.5}, "steps must be an integer, got 2.5"),
    ({"alpha_init": 0.0}, "alpha_init must be > 0.0, got 0.0"),
    ({"alpha_final": 2.0}, "alpha_final must be <= 1.0, got 2.0"),
    ({"alpha_final": 0.0}, "alpha_final must be > 0.0, got 0.0"),
    ({"gamma_init": 1.0}, "gamma_init must be < 1.0, got 1.0"),
    ({"gamma_init": 0.0}, "gamma_init must be > 0.0, got 0.0"),
    ({"gamma_final": 0.1}, "gamma_final must be <= 0.05, got 0.1"),
    ({"gamma_final": float("nan")}, "gamma_final must be a number, got NaN"),
    ({"init": "random"}, "init must be one of input, batch, got 'random'"),
    ({"binary_search_steps": 0}, "binary_search_steps must be >= 1, got 0"),
    ({"binary_search_steps": 65}, "binary_search_steps must be <= 64, got 65"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ParameterError) as raised:
        FMN(**params)
    assert str(raised.value) == message


def test_bad_targets_are_refused(tiny_model, prototypes):
    x, y = prototypes
    with pytest.raises(ParameterError) as raised:
        FMN(steps=1)(tiny_model, x, y, target=np.full(len(x), 4))
    assert str(raised.value) == "target classes must be >= 0 and < 4, got values from 4 to 4"


def test_registry_and_repr():
    attack = make_attack("fmn", norm="l0")
    assert attack.norm == "l0" and attack.minimal and attack.supports_targets
    assert repr(attack) == ("FMN(norm='l0', steps=100, alpha_init=1.0, alpha_final=None, "
                            "gamma_init=0.05, gamma_final=0.001, init='input', "
                            "binary_search_steps=10)")


@pytest.mark.parametrize("norm", FMN_NORMS)
def test_cli_fmn_artifact_scores_robustness_and_training_distance(
        norm, trained_tiny_cnn, fake_data_dir, tmp_path):
    """`attack --attack fmn --norm N` then `evaluate`: a minimal artifact, its empirical
    robustness in N and the training-set distance."""
    from advbench.run.artifacts import read_attack_artifact
    from advbench.cli import main

    model = str(trained_tiny_cnn[0])
    common = ["--limit", "8", "--data-dir", str(fake_data_dir)]
    out = tmp_path / f"fmn-{norm}.h5"
    # L0's bound grows by one feature per step at first: it needs more steps.
    steps = "40" if norm == "l0" else "10"
    crafted = CliRunner().invoke(main, ["attack", model, "--attack", "fmn", "--norm", norm,
                                        "--steps", steps, *common, "-o", str(out), "-q"])
    assert crafted.exit_code == 0, crafted.output
    attrs, arrays = read_attack_artifact(out)
    assert attrs["attack_norm"] == norm and attrs["attack_minimal"]
    assert attrs["start_from"] == "prediction"
    scored = CliRunner().invoke(main, ["evaluate", model, str(out), *common, "--no-sensitivity",
                                       "--json", "-q"])
    assert scored.exit_code == 0, scored.output
    entry = json.loads(scored.stdout)["artifacts"][0]
    assert entry["minimal"] and entry["robustness"]["norm"] == norm
    assert entry["robustness"]["count"] > 0
    assert entry["training_distance"]["count"] == entry["robustness"]["count"]


def test_cli_refuses_a_norm_fmn_does_not_take_for_pgd(trained_tiny_cnn, fake_data_dir):
    from advbench.cli import main

    result = CliRunner().invoke(main, ["attack", str(trained_tiny_cnn[0]), "--attack", "pgd",
                                       "--norm", "l0", "--data-dir", str(fake_data_dir)])
    assert result.exit_code == 2
    # pgd's own norms: fmn's L0 is not among them (said before TensorFlow, naming the attack).
    assert result.output.strip().splitlines()[-1] == \
        "Error: --norm of --attack pgd is one of linf, l2, got 'l0' (l0 is for fmn)"


def test_failure_hint_names_the_correct_samples_not_fooled():
    """Trial 3: FMN from x missed 20 of 99 correct MNIST samples in L1 (Foolbox 3.3.4's FMN
    the same 20) and said nothing; the run now ends with a line naming them and the remedy."""
    fooled = np.array([True, False, False, True])
    correct = np.array([True, True, False, True])
    assert FMN(norm="l1").failure_hint(fooled, {}, correct) == (
        "fmn: 1 of 3 correctly classified samples were not fooled (l1, 100 steps, --init "
        "input); FMN from x itself misses some samples (the reference's does too) and more "
        "--steps helps little: rerun with --init batch, which starts each sample from the "
        "nearest image of its batch classified otherwise")
    assert FMN(norm="l2", steps=7, init="batch").failure_hint(fooled, {}, correct) == (
        "fmn: 1 of 3 correctly classified samples were not fooled (l2, 7 steps, --init "
        "batch): raise --steps, or --batch-size where a batch holds no image of another class")
    # Only misclassified samples missed, or correctness unknown: nothing to say.
    assert FMN().failure_hint(fooled, {}, np.array([True, False, False, True])) == ""
    assert FMN().failure_hint(fooled, {}) == ""


def test_a_run_that_misses_samples_prints_the_hint(trained_tiny_cnn, fake_data_dir, tmp_path):
    import io

    import h5py
    from rich.console import Console

    from advbench.core.progress import Progress
    from advbench.run.runner import AttackRun, attack_split

    path, model, meta = trained_tiny_cnn
    run = AttackRun(model_path=str(path), dataset="mnist", limit=8, batch_size=8,
                    data_dir=str(fake_data_dir))
    out = io.StringIO()
    progress = Progress(console=Console(file=out, width=400), interval=1e9)
    # One step of size 1e-6 moves no sample across.
    attack = FMN(norm="l1", steps=1, alpha_init=1e-6)
    output = attack_split(run, attack, model, meta, tmp_path / "fmn.h5", progress=progress)
    with h5py.File(output) as f:
        correct = int((f["pred_clean"][:] == f["y"][:]).sum())
    assert correct > 0
    assert (f"fmn: {correct} of {correct} correctly classified samples were not fooled (l1, "
            "1 step, --init input); FMN from x itself misses some samples (the reference's "
            "does too) and more --steps helps little: rerun with --init batch, which starts "
            "each sample from the nearest image of its batch classified otherwise"
            ) in out.getvalue().splitlines()
