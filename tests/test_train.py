import inspect

import numpy as np
import pytest

from advbench.core.errors import ParameterError
from advbench.defenses import DEFENSES, make_defense
from advbench.models.zoo import predict_logits
from advbench.run.artifacts import load_model, save_model
from advbench.run.train import TrainConfig, epoch_order, train

# Every defense and mode, with settings small enough for a one-epoch smoke run.
DEFENSE_VARIANTS = [
    ("none", {}),
    ("gda", {"copies": 2}),
    ("gda", {"copies": 1, "clip": True}),
    ("gda-cohen", {}),
    ("label-smoothing", {}),
    ("feature-squeezing", {}),
    ("fgsm-at", {"mode": "static"}),
    ("fgsm-at", {"mode": "online"}),
    ("vat", {"mode": "static"}),
    ("vat", {"mode": "loss"}),
]


def test_variants_cover_the_registry():
    assert {name for name, _ in DEFENSE_VARIANTS} == set(DEFENSES)


def _variant_id(variant):
    name, overrides = variant
    return f"{name}-{'-'.join(map(str, overrides.values())) or 'default'}"


# The default suite trains each defense variant once, cycling through the architectures and
# activations; the slow suite runs the full defense x activation x architecture matrix.
FAST_MATRIX = [
    pytest.param(arch, act, *variant, id=f"{_variant_id(variant)}-{act}-{arch}")
    for i, variant in enumerate(DEFENSE_VARIANTS)
    for arch, act in [[("cnn", "relu"), ("resnet", "brelu"), ("cnn", "brelu"),
                       ("resnet", "relu")][i % 4]]
]
FULL_MATRIX = [
    pytest.param(arch, act, *variant, id=f"{_variant_id(variant)}-{act}-{arch}",
                 marks=pytest.mark.slow)
    for variant in DEFENSE_VARIANTS for arch in ("cnn", "resnet") for act in ("relu", "brelu")
]


@pytest.mark.parametrize("architecture, activation, defense, overrides",
                         FAST_MATRIX + FULL_MATRIX)
def test_every_defense_trains_and_round_trips(fake_data_dir, tmp_path, architecture,
                                              activation, defense, overrides):
    config = TrainConfig(architecture=architecture, activation=activation, epochs=1,
                         limit=60, batch_size=32, data_dir=str(fake_data_dir))
    spec = make_defense(defense, "mnist", **overrides)
    model, meta = train(config, spec)
    assert meta["defense"] == defense and meta["defense_params"] == spec.params()
    assert meta["epochs_run"] == (2 if spec.static_augmentation() else 1)
    assert 0.0 <= meta["clean_test_accuracy"] <= 1.0
    path = tmp_path / "m.h5"
    save_model(path, model, meta)
    loaded, loaded_meta = load_model(path)
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(predict_logits(model, x), predict_logits(loaded, x))
    assert loaded_meta["architecture"] == architecture
    assert loaded_meta["activation"] == activation


def test_same_seed_same_weights(fake_data_dir):
    config = TrainConfig(epochs=1, limit=60, batch_size=32, data_dir=str(fake_data_dir))
    gda = make_defense("gda", "mnist", copies=1)
    first, _ = train(config, gda)
    second, _ = train(config, gda)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    third, _ = train(TrainConfig(epochs=1, limit=60, batch_size=32, seed=1,
                                 data_dir=str(fake_data_dir)), gda)
    assert not np.array_equal(first.get_weights()[0], third.get_weights()[0])


def test_training_learns_the_synthetic_digits(trained_tiny_cnn):
    _, _, meta = trained_tiny_cnn
    assert meta["clean_test_accuracy"] > 0.5  # chance is 0.1
    assert [h["epoch"] for h in meta["history"]] == [1, 2]


def test_early_stopping_keeps_the_best_weights(fake_data_dir):
    # A learning rate this large diverges: validation accuracy stops improving at once.
    config = TrainConfig(epochs=6, patience=1, limit=60, batch_size=32, learning_rate=5.0,
                         data_dir=str(fake_data_dir))
    _, meta = train(config, make_defense("none", "mnist"))
    assert meta["epochs_run"] < 6


def test_epoch_order_sees_every_image_once_clean_and_copies_times_noisy():
    index, noisy = epoch_order(5, 3, np.random.default_rng(0))
    assert sorted(index.tolist()) == sorted(list(range(5)) * 4)
    for i in range(5):
        assert (noisy[index == i] > 0).sum() == 3


def test_epoch_order_keys_name_the_same_copy_every_epoch():
    rng = np.random.default_rng(0)
    first, second = epoch_order(4, 2, rng), epoch_order(4, 2, rng)
    for index, noisy in (first, second):
        assert noisy.dtype == np.int32
        assert sorted(noisy[noisy > 0].tolist()) == list(range(5, 13))  # 1 + c * n + i
        np.testing.assert_array_equal(index[noisy > 0], (noisy[noisy > 0] - 1) % 4)
    assert not np.array_equal(first[0], second[0])  # shuffled differently


def test_gda_noise_once_is_the_same_for_a_copy_in_every_batch():
    import tensorflow as tf

    gda = make_defense("gda", "mnist", sigma=0.5, noise="once")
    x = tf.fill([4, 3, 3, 1], 0.5)
    keys = tf.constant([0, 7, 9, 7], tf.int32)
    out = gda.perturb_batch(x, keys, tf.constant([3, 1], tf.int32)).numpy()
    np.testing.assert_array_equal(out[0], 0.5)  # the clean row
    np.testing.assert_array_equal(out[1], out[3])  # one key, one draw
    assert not np.array_equal(out[1], out[2])
    # Another step (other batch seed), another position in the batch: the same noise.
    again = gda.perturb_batch(tf.fill([2, 3, 3, 1], 0.5), tf.constant([9, 0], tf.int32),
                              tf.constant([3, 57], tf.int32)).numpy()
    np.testing.assert_array_equal(again[0], out[2])
    # ... but another training seed draws other noise; "fresh" redraws with the step.
    other = gda.perturb_batch(x, keys, tf.constant([4, 1], tf.int32)).numpy()
    assert not np.array_equal(other[1], out[1])
    fresh = make_defense("gda", "mnist", sigma=0.5)
    assert not np.array_equal(
        fresh.perturb_batch(x, keys, tf.constant([3, 1], tf.int32)).numpy()[1],
        fresh.perturb_batch(x, keys, tf.constant([3, 2], tf.int32)).numpy()[1])
    assert out[1].std() > 0.2 and (out < 0).any()  # unclipped by default, as the authors


def test_gda_noise_once_trains_end_to_end(fake_data_dir):
    config = TrainConfig(epochs=1, limit=60, batch_size=32, data_dir=str(fake_data_dir))
    model, meta = train(config, make_defense("gda", "mnist", copies=2, noise="once"))
    assert meta["defense_params"] == {"sigma": 0.3, "copies": 2, "clip": False,
                                      "noise": "once"}
    assert meta["samples_processed"] == 3 * meta["train_samples"]
    assert np.isfinite(meta["history"][0]["loss"])


def test_fgsm_at_fresh_learns_the_union_from_the_initial_weights(fake_data_dir, monkeypatch):
    # The authors' code: the adversarials of a trained model, learnt with the clean set by a
    # fresh model. The second phase must start from the untrained weights.
    from advbench.run import train as train_module

    config = TrainConfig(epochs=1, limit=60, batch_size=32, data_dir=str(fake_data_dir))
    starts = []
    original = train_module._Fitter.fit

    def fit(self, x, *args, phase, **kwargs):
        starts.append((phase, [w.copy() for w in self.model.get_weights()],
                       int(self.optimizer.iterations.numpy())))
        return original(self, x, *args, phase=phase, **kwargs)

    monkeypatch.setattr(train_module._Fitter, "fit", fit)
    _, fresh_meta = train(config, make_defense("fgsm-at", "mnist", mode="fresh"))
    (phase1, initial, steps1), (phase2, restart, steps2) = starts
    assert (phase1, phase2) == ("", "augmented: ") and steps1 == steps2 == 0
    for a, b in zip(initial, restart):
        np.testing.assert_array_equal(a, b)
    assert fresh_meta["defense_params"]["mode"] == "fresh"
    starts.clear()
    train(config, make_defense("fgsm-at", "mnist", mode="static"))
    (_, initial, _), (_, continued, steps) = starts
    assert steps > 0 and not all(np.array_equal(a, b) for a, b in zip(initial, continued))


def test_gda_noise_is_only_on_noisy_copies():
    import tensorflow as tf

    gda = make_defense("gda", "mnist", sigma=0.5)
    x = tf.fill([4, 3, 3, 1], 0.5)
    out = gda.perturb_batch(x, tf.constant([False, True, False, True]),
                            tf.constant([0, 1], tf.int32)).numpy()
    np.testing.assert_array_equal(out[[0, 2]], 0.5)
    assert out[[1, 3]].std() > 0.2 and (out < 0).any()  # unclipped by default, as the paper


def test_label_smoothing_targets():
    import tensorflow as tf

    targets = make_defense("label-smoothing", "mnist").target_distribution(
        tf.constant([2]), 10).numpy()
    assert targets[0, 2] == pytest.approx(0.9) and targets[0, 0] == pytest.approx(0.1 / 9)


def test_paper_defaults_per_dataset():
    assert make_defense("gda", "mnist").sigma == 0.3
    assert make_defense("gda", "cifar10").sigma == 0.05
    assert make_defense("feature-squeezing", "cifar10").bit_depth == 3
    assert make_defense("fgsm-at", "cifar10").eps == 0.05
    assert make_defense("vat", "mnist").eps == 2.1


@pytest.mark.parametrize("name, overrides, message", [
    ("gdx", {}, "unknown defense 'gdx'; choose one of: feature-squeezing, fgsm-at, gda, "
     "gda-cohen, label-smoothing, none, vat"),
    ("gda", {"sigma": -0.1}, "gda sigma must be >= 0.0, got -0.1"),
    ("gda-cohen", {"sigma": -1}, "gda-cohen sigma must be >= 0.0, got -1.0"),
    ("gda", {"copies": -1}, "gda copies must be >= 0, got -1"),
    ("gda", {"copies": 1.5}, "gda copies must be an integer, got 1.5"),
    ("label-smoothing", {"weight": 0.0}, "label-smoothing weight must be > 0.0, got 0.0"),
    ("label-smoothing", {"weight": 1.5}, "label-smoothing weight must be <= 1.0, got 1.5"),
    ("feature-squeezing", {"bit_depth": 0}, "feature-squeezing bit depth must be >= 1, got 0"),
    ("feature-squeezing", {"bit_depth": 17},
     "feature-squeezing bit depth must be <= 16, got 17"),
    ("fgsm-at", {"mode": "weekly"}, "fgsm-at mode must be one of static, online, fresh, got "
     "'weekly'"),
    ("gda", {"noise": "twice"}, "gda noise must be one of fresh, once, got 'twice'"),
    ("fgsm-at", {"eps": 0.0}, "fgsm-at eps must be > 0.0, got 0.0"),
    ("vat", {"mode": "online"}, "vat mode must be one of static, loss, got 'online'"),
    ("vat", {"xi": 0.0}, "vat xi must be > 0.0, got 0.0"),
    ("none", {"sigma": 0.3}, "option(s) sigma do not apply to defense 'none' (its options: "
     "none)"),
])
def test_bad_defense_parameters(name, overrides, message):
    """The exact line: the wording derives from the parameter's declaration (the defense's
    name, the parameter's, the bound)."""
    with pytest.raises(ParameterError) as raised:
        make_defense(name, "mnist", **overrides)
    assert str(raised.value) == message


@pytest.mark.parametrize("field, value, message", [
    ("epochs", 0, "epochs must be >= 1"),
    ("batch_size", 0, "batch-size must be >= 1"),
    ("brelu_t", 0.0, "brelu t must be > 0"),
    ("limit", 5, "limit must be >= 10"),
    ("dataset", "svhn", "unknown data set"),
])
def test_bad_training_config(field, value, message):
    config = TrainConfig(**{field: value})
    with pytest.raises(ParameterError, match=message):
        config.validate()


@pytest.mark.parametrize("name", sorted(DEFENSES))
def test_params_record_every_constructor_parameter(name):
    """params() is stored with the model and compared when reproduce reuses one: a parameter
    missing from it would let a model trained otherwise be reused."""
    cls = DEFENSES[name]
    defaults = {p: v.default for p, v in inspect.signature(cls).parameters.items()
                if v.kind is inspect.Parameter.KEYWORD_ONLY}
    assert cls().params() == defaults
