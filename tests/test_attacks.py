"""Properties every attack of the registry must have, on a small trained CNN."""

import inspect

import numpy as np
import pytest

from advbench import data
from advbench.attacks import ATTACKS, make_attack
from advbench.core.errors import ParameterError
from advbench.models.zoo import predict_labels

# Settings per attack that keep the suite fast while staying strong enough to fool the model.
FAST = {
    "fgsm": {"eps": 0.3},
    "fgsm-min": {"eps_step": 0.05},
    "rand-fgsm": {"eps": 0.3, "alpha": 0.05},
    "pgd": {"eps": 0.3, "steps": 10, "step_size": 0.05},
    "vat": {"eps": 6.0},
    "jsma": {"theta": 1.0, "gamma": 0.2},
    "deepfool": {"max_iter": 50},
    "cw-l2": {"max_iter": 100, "binary_search_steps": 4, "initial_const": 1.0},
    "apgd-ce": {"eps": 0.3, "n_iter": 10},
    "apgd-dlr": {"eps": 0.3, "n_iter": 10},
    "apgd-t": {"eps": 0.3, "n_iter": 10, "n_target_classes": 2},
    "square": {"eps": 0.3, "n_queries": 100},
    "autoattack": {"eps": 0.3, "n_iter": 10, "n_target_classes": 2, "n_queries": 100},
    "fab": {"n_iter": 10},
    "fab-t": {"n_iter": 10, "n_target_classes": 2},
    "fmn": {"steps": 20},
}


@pytest.fixture(scope="module")
def samples(fake_data_dir):
    x, y, _ = data.load("mnist", "test", data_dir=fake_data_dir, limit=20)
    return x, y


def test_every_registered_attack_has_fast_settings():
    assert set(FAST) >= set(ATTACKS)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_outputs_are_images_in_bounds_and_accuracy_drops(name, trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    out = make_attack(name, **FAST[name])(model, x, y, seed=1)
    assert out.x_adv.shape == x.shape and out.x_adv.dtype == np.float32
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    for key, values in out.extras.items():
        assert np.asarray(values).shape == (len(x),), key
    clean = np.mean(predict_labels(model, x) == y)
    adversarial = np.mean(predict_labels(model, out.x_adv) == y)
    assert adversarial < clean, (clean, adversarial)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_same_seed_same_result(name, trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    attack = make_attack(name, **FAST[name])
    first = attack(model, x[:6], y[:6], seed=3).x_adv
    second = attack(model, x[:6], y[:6], seed=3).x_adv
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", sorted(n for n in ATTACKS if "eps" in ATTACKS[n].param_names))
def test_eps_zero_returns_the_input(name, trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    params = {**FAST[name], "eps": 0.0}
    if "alpha" in params:
        params["alpha"] = 0.0
    np.testing.assert_allclose(make_attack(name, **params)(model, x, y, seed=0).x_adv, x,
                               atol=1e-7)


def constructor_defaults(cls) -> dict:
    """The keyword-only constructor parameters and their defaults, read from the class's
    signature (the declared spec)."""
    return {name: p.default for name, p in inspect.signature(cls).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_provenance_and_run_key_record_every_constructor_parameter(name):
    """A parameter missing from params() would drop out of the run key (``runner.run_key``
    hashes params()) and let a stale artifact be reused; each one is stored under its own
    name with the constructor's value."""
    attack = make_attack(name)
    defaults = constructor_defaults(ATTACKS[name])
    assert attack.params() == defaults
    for param, value in defaults.items():
        assert f"{param}={value!r}" in repr(attack)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_norm_is_a_class_constant_or_a_parameter_never_both(name):
    cls = ATTACKS[name]
    assert ("norm" in vars(cls)) != ("norm" in cls.param_names)
    assert make_attack(name).norm in ("linf", "l2", "l0")


def test_unknown_attack_and_foreign_parameters():
    with pytest.raises(ParameterError, match="unknown attack 'fgsn'"):
        make_attack("fgsn")
    with pytest.raises(ParameterError, match="theta do not apply to attack 'fgsm'"):
        make_attack("fgsm", theta=0.1)


UNTARGETED = sorted(n for n, cls in ATTACKS.items() if not cls.supports_targets)


def test_some_attacks_are_untargeted():
    assert UNTARGETED


@pytest.mark.parametrize("name", UNTARGETED)
def test_untargeted_attacks_refuse_targets(name, trained_tiny_cnn, samples):
    _, model, _ = trained_tiny_cnn
    x, y = samples
    with pytest.raises(ParameterError) as raised:
        make_attack(name)(model, x, y, target=y)
    assert str(raised.value) == f"attack {name!r} is untargeted only; drop the target option"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_success_survives_any_batch_size(name, trained_tiny_cnn, samples):
    """The success the driver stores (one forward at the run's batch size) must not flip when
    evaluate recomputes it at batch 1: every adversarial point the attack returns lies past
    float noise from the boundary. DeepFool returned points with a top-2 logit gap of ~1e-6
    before it overshot the clipped perturbation; this fails on that version."""
    from advbench.core.ops import DECISIVE_MARGIN
    from advbench.models.zoo import predict_logits

    _, model, _ = trained_tiny_cnn
    x, y = samples
    x_adv = make_attack(name, **FAST[name])(model, x, y, seed=1).x_adv
    batched = predict_logits(model, x_adv).argmax(axis=1)
    one_by_one = np.concatenate([predict_logits(model, x_adv[i:i + 1]) for i in range(len(x))])
    np.testing.assert_array_equal(one_by_one.argmax(axis=1) != y, batched != y)
    if ATTACKS[name].minimal:
        # Minimal attacks stop right past the boundary: they must stop decisively past it.
        fooled = batched != y
        top2 = np.sort(one_by_one, axis=1)[:, -2:]
        scale = 1.0 + np.abs(one_by_one).max(axis=1)
        lead = (top2[:, 1] - top2[:, 0]) / scale
        assert np.all(lead[fooled] > DECISIVE_MARGIN / 2), np.sort(lead[fooled])[:5]


# Attacks that only follow input gradients and draw nothing at random: with no gradient they
# have no direction at all and must return every sample unchanged.
GRADIENT_ONLY = ("fgsm", "fgsm-min", "deepfool", "jsma", "cw-l2", "fab", "fab-t", "fmn")


def without_input_gradient(model):
    """``model`` behind a 5-level input quantiser with no gradient: TensorFlow's tape returns
    None for the input gradient (no path), not zeros."""
    import keras
    import tensorflow as tf

    inputs = keras.Input(model.input_shape[1:])
    quantised = keras.layers.Lambda(lambda t: tf.stop_gradient(tf.round(t * 4.0) / 4.0))(inputs)
    return keras.Model(inputs, model(quantised))


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_model_without_input_gradient_is_attacked_without_error(name, trained_tiny_cnn,
                                                                samples):
    """Every attack treats a missing gradient path as a zero gradient (as
    ``advbench.core.ops.loss_gradient`` does): no traceback, outputs in bounds, and the attacks
    that only follow gradients leave the images as they are (failures, which the audit
    reports as masking). DeepFool, JSMA and VAT raised TensorFlow errors here before."""
    import tensorflow as tf

    _, model, _ = trained_tiny_cnn
    masked = without_input_gradient(model)
    x, y = samples
    with tf.GradientTape() as tape:
        xt = tf.constant(x[:2])
        tape.watch(xt)
        assert tape.gradient(masked(xt), xt) is None
    out = make_attack(name, **FAST[name])(masked, x, y, seed=1)
    assert out.x_adv.shape == x.shape
    assert out.x_adv.min() >= 0.0 and out.x_adv.max() <= 1.0
    if name in GRADIENT_ONLY:
        np.testing.assert_array_equal(out.x_adv, x)


NO_GRADIENT_LAYERS = '''
import keras
import tensorflow as tf


class Quantise(keras.layers.Layer):
    """Rounds to 5 levels: no gradient path to the input."""

    def call(self, x):
        return tf.stop_gradient(tf.round(x * 4.0) / 4.0)
'''


@pytest.mark.parametrize("name", ["deepfool", "jsma", "cw-l2", "vat"])
def test_cli_attacks_a_model_without_input_gradient(name, fake_data_dir, tmp_path,
                                                    monkeypatch):
    import sys

    import keras
    from click.testing import CliRunner

    from advbench.cli import main

    module = f"no_gradient_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(NO_GRADIENT_LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        layers = __import__(module)
        keras.utils.set_random_seed(0)
        inputs = keras.Input((28, 28, 1))
        h = keras.layers.Flatten()(layers.Quantise()(inputs))
        keras.Model(inputs, keras.layers.Dense(10)(h)).save(tmp_path / "masked.keras")
        out = tmp_path / "adv.h5"
        settings = [f"--{flag}={value}" for flag, value in {
            "deepfool": {"max-iter": 3}, "jsma": {"gamma": 0.1}, "vat": {"eps": 1.0},
            "cw-l2": {"max-iter": 5, "search-steps": 2}}[name].items()]
        result = CliRunner().invoke(main, [
            "attack", str(tmp_path / "masked.keras"), "--attack", name, *settings,
            "--dataset", "mnist", "--data-dir", str(fake_data_dir), "--custom-objects",
            module, "--limit", "8", "-o", str(out), "-q"])
    finally:
        sys.modules.pop(module, None)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"


def test_the_minimal_attacks_named_without_tensorflow_are_the_minimal_classes():
    """Messages, help and the metric registry name MINIMAL_ATTACKS (TensorFlow-free); it must
    be the set of attack classes that are minimal."""
    from advbench.attacks import MINIMAL_ATTACKS

    assert set(MINIMAL_ATTACKS) == {name for name, cls in ATTACKS.items() if cls.minimal}
