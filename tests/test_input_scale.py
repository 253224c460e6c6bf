"""A user's model read right by default: the input range from its own first Rescaling /
Normalization layers, the first-batch sanity warning, and picking the class-score output of a
model with several outputs."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from advbench.core.errors import ArtifactError, ParameterError
from advbench.models import foreign
from advbench.models.adapt import Preprocessing, adapt, read_input_scale, select_output
from advbench.run.loading import first_batch_warning

SHAPE = (8, 8, 3)
CLASSES = 3


def head(x, softmax=True):
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    return keras.layers.Dense(CLASSES, activation="softmax" if softmax else None,
                              name="scores")(keras.layers.Flatten()(x))


def functional(*front, softmax=True):
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    x = inputs
    for layer in front:
        x = layer(x)
    return keras.Model(inputs, head(x, softmax), name="m")


def images(n=6, seed=1):
    return np.random.default_rng(seed).uniform(0, 1, (n, *SHAPE)).astype(np.float32)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# -- what is read --------------------------------------------------------------------------
@pytest.mark.parametrize("front, expected, read_from", [
    ([keras.layers.Rescaling(1 / 255, name="r")], (0.0, 255.0),
     "Rescaling 'r' (scale 0.00392157, offset 0)"),
    ([keras.layers.Rescaling(1 / 127.5, offset=-1, name="r")], (0.0, 255.0),
     "Rescaling 'r' (scale 0.00784314, offset -1)"),
    # augmentation and dropout are the identity at inference: passed over
    ([keras.layers.RandomFlip(name="flip"), keras.layers.Dropout(0.1),
      keras.layers.Rescaling(1 / 255, name="r")], (0.0, 255.0),
     "Rescaling 'r' (scale 0.00392157, offset 0)"),
    # two Rescalings compose: 0-255 -> [0, 1] -> [-1, 1]
    ([keras.layers.Rescaling(1 / 255, name="a"), keras.layers.Rescaling(2, offset=-1, name="b")],
     (0.0, 255.0), "Rescaling 'a' (scale 0.00392157, offset 0) then Rescaling 'b' (scale 2, "
                   "offset -1)"),
    # [0, 1] -> [-1, 1]: the model takes [0, 1]
    ([keras.layers.Rescaling(2, offset=-1, name="r")], (0.0, 1.0),
     "Rescaling 'r' (scale 2, offset -1)"),
    # a Normalization after the Rescaling works on rescaled values: the range is the Rescaling's
    ([keras.layers.Rescaling(1 / 255, name="r"),
      keras.layers.Normalization(mean=[0.5] * 3, variance=[0.1] * 3)], (0.0, 255.0),
     "Rescaling 'r' (scale 0.00392157, offset 0)"),
    ([keras.layers.Normalization(mean=[125.3, 122.9, 113.9], variance=[3900.0] * 3, name="n")],
     (0.0, 255.0), "Normalization 'n' (mean up to 125.3)"),
    ([keras.layers.Normalization(mean=[0.485, 0.456, 0.406], variance=[0.05] * 3, name="n")],
     (0.0, 1.0), "Normalization 'n' (mean up to 0.485)"),
])
def test_first_layers_give_the_input_range(front, expected, read_from):
    scale, unread = read_input_scale(functional(*front))
    assert unread is None
    assert scale is not None and scale.input_range == expected and scale.layers == read_from


def test_nested_models_and_sequential_are_looked_into():
    inner = keras.Sequential([keras.layers.Rescaling(1 / 127.5, offset=-1, name="r")],
                             name="preprocessing")
    scale, _ = read_input_scale(functional(inner))
    assert scale.input_range == (0.0, 255.0)
    seq = keras.Sequential([keras.Input(SHAPE), keras.layers.Rescaling(1 / 255, name="r"),
                            keras.layers.Flatten(), keras.layers.Dense(CLASSES)])
    assert read_input_scale(seq)[0].input_range == (0.0, 255.0)


def test_keras_applications_include_preprocessing():
    model = keras.applications.MobileNetV3Small(include_preprocessing=True, weights=None,
                                                input_shape=(32, 32, 3), classes=10)
    scale, _ = read_input_scale(model)
    assert scale.input_range == (0.0, 255.0)
    assert re.fullmatch(r"Rescaling 'rescaling(_\d+)?' \(scale 0.00784314, offset -1\)", scale.layers)


@pytest.mark.parametrize("front, unread", [
    ([], None),
    # not at the start: nothing inferred
    ([keras.layers.Conv2D(3, 1), keras.layers.Rescaling(1 / 255)], None),
    ([keras.layers.Rescaling(1 / 255, offset=0.5, name="r")],
     "its first layers, Rescaling 'r' (scale 0.00392157, offset 0.5), map pixels to another "
     "range than [0, 1] or [-1, 1], which advbench does not read: pass --input-range for what "
     "it expects"),
    ([keras.layers.Rescaling([1 / 255, 1 / 255, 1 / 255], name="r")],
     "its first layer 'r' is a per-channel Rescaling, which advbench does not read: pass "
     "--input-range (and --mean, --std) for what it expects"),
])
def test_nothing_is_inferred_elsewhere(front, unread):
    assert read_input_scale(functional(*front)) == (None, unread)


def test_a_branch_at_the_input_stops_the_reading():
    inputs = keras.Input(SHAPE)
    a = keras.layers.Rescaling(1 / 255)(inputs)
    b = keras.layers.Conv2D(3, 1)(inputs)
    model = keras.Model(inputs, head(keras.layers.Add()([a, b])))
    assert read_input_scale(model) == (None, None)


# -- what is fed -----------------------------------------------------------------------------
def test_a_rescaling_model_is_fed_0_255_without_flags(tmp_path):
    model = functional(keras.layers.Rescaling(1 / 255, name="r"))
    path = tmp_path / "m.keras"
    model.save(path)
    adapted, meta = foreign.open_foreign(path, SHAPE, CLASSES)
    x = images()
    np.testing.assert_allclose(softmax(np.asarray(adapted(x))), model(x * 255), rtol=1e-4,
                               atol=1e-6)
    assert ("m.keras: its first layers, Rescaling 'r' (scale 0.00392157, offset 0), take pixels "
            "in 0..255: advbench feeds that range (attacks and eps stay in [0, 1]; "
            "--input-range overrides)") in meta["notes"]
    assert meta["preprocessing"]["input_range"] == [0.0, 255.0]
    assert meta["input_scale"] == {"source": "model", "read": {
        "input_range": [0.0, 255.0], "read_from": "Rescaling 'r' (scale 0.00392157, offset 0)"}}
    assert foreign.model_provenance(meta)["input_scale"]["source"] == "model"
    # The same reading as the flags: the same model (artifacts stay white-box).
    _, flagged = foreign.open_foreign(path, SHAPE, CLASSES,
                                      preprocessing=Preprocessing((0.0, 255.0)))
    assert flagged["content_hash"] == meta["content_hash"]
    assert flagged["input_scale"]["source"] == "flags"
    assert not any(n.startswith("Warning") for n in flagged["notes"])


def test_flags_that_disagree_win_with_a_warning():
    model = functional(keras.layers.Rescaling(1 / 255, name="r"))
    adapted = adapt(model, SHAPE, CLASSES, preprocessing=Preprocessing(), name="m")
    np.testing.assert_allclose(softmax(np.asarray(adapted.model(images()))), model(images()),
                               rtol=1e-4, atol=1e-6)
    assert adapted.notes[0] == (
        "Warning: m's first layers, Rescaling 'r' (scale 0.00392157, offset 0), take pixels in "
        "0..255, but the flags say --input-range 0:1: advbench follows the flags; drop them "
        "to feed 0..255")
    normalised = adapt(model, SHAPE, CLASSES, name="m", preprocessing=Preprocessing(
        (0.0, 255.0), mean=(0.5,), std=(0.25,)))
    assert normalised.notes[0] == (
        "Warning: m's first layers, Rescaling 'r' (scale 0.00392157, offset 0), take pixels in "
        "0..255, but the flags say --input-range 0:255 --mean [0.5] --std [0.25]: advbench "
        "follows the flags; drop them to feed 0..255")


def test_a_model_without_scale_layers_is_fed_0_1():
    adapted = adapt(functional(softmax=False), SHAPE, CLASSES, name="m")
    assert adapted.preprocessing == Preprocessing()
    assert adapted.input_scale == {"source": "default", "read": None}
    assert adapted.notes == []


# -- the first-batch sanity check ---------------------------------------------------------
NAMES = ("cat", "dog", "bird", "fish")


def test_collapsed_predictions_warn_naming_the_causes():
    labels = np.arange(40) % 4
    warning = first_batch_warning(np.full(40, 2), labels, NAMES, "m.keras", (0.0, 1.0))
    assert warning == (
        "Warning: m.keras gives class 2 ('bird') to 40 of the first 40 test images and is "
        "right on 25% of them (chance: 25%); if it scores better in Keras, it is read wrong: "
        "check the input scale (advbench feeds 0..1; --input-range), the channel order (RGB "
        "vs BGR), --mean/--std, and which output holds the class scores (--model-output, "
        "--outputs)")


def test_chance_accuracy_warns_and_a_working_model_does_not():
    labels = np.arange(40) % 4
    at_chance = (labels + np.arange(40) // 4 % 4 * 0 + 1) % 4  # always wrong, spread out
    assert first_batch_warning(at_chance, labels, NAMES, "m", (0.0, 255.0)).startswith(
        "Warning: m gives class 0 ('cat') to 10 of the first 40 test images and is right on "
        "0% of them (chance: 25%)")
    good = labels.copy()
    good[:8] = (good[:8] + 1) % 4  # 80% right
    assert first_batch_warning(good, labels, NAMES, "m", (0.0, 1.0)) is None
    # Data of one class: one predicted class is no sign of a misread model.
    assert first_batch_warning(np.zeros(40, int), np.zeros(40, int), NAMES, "m",
                               (0.0, 1.0)) is None
    assert first_batch_warning(np.full(5, 2), None, NAMES, "m", (0.0, 1.0)) is None  # too few


# -- several outputs -------------------------------------------------------------------------
def two_outputs():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(SHAPE)
    x = keras.layers.Flatten()(inputs)
    aux = keras.layers.Dense(1, name="aux")(x)
    scores = keras.layers.Dense(CLASSES, activation="softmax", name="class_scores")(x)
    return keras.Model(inputs, [aux, scores], name="two")


def test_several_outputs_are_refused_naming_them():
    with pytest.raises(ArtifactError, match=re.escape(
            "m.keras has 2 outputs (aux, class_scores); pick the class scores with "
            "--model-output NAME|INDEX")):
        adapt(two_outputs(), SHAPE, CLASSES, name="m.keras")


@pytest.mark.parametrize("choice", ["class_scores", "1"])
def test_the_class_output_is_picked_by_name_or_index(choice):
    model = two_outputs()
    adapted = adapt(model, SHAPE, CLASSES, name="m", model_output=choice)
    np.testing.assert_allclose(softmax(np.asarray(adapted.model(images()))),
                               model(images())[1], rtol=1e-4, atol=1e-6)
    assert adapted.outputs == "softmax removed"


@pytest.mark.parametrize("model, choice, message", [
    (two_outputs, "scores", "--model-output scores: m has no such output; its outputs are "
                            "0: aux, 1: class_scores"),
    (two_outputs, "2", "--model-output 2: m has no such output; its outputs are 0: aux, "
                       "1: class_scores"),
    (lambda: functional(softmax=False), "aux", "--model-output aux: m has no such output; its "
                                               "outputs are 0: scores"),
])
def test_bad_output_choices(model, choice, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        select_output(model(), choice, "m")


# -- the command line, no flag at all ------------------------------------------------------
@pytest.fixture(scope="module")
def rescaling_file(tmp_path_factory):
    """A user's model whose first layer is Rescaling(1/255), trained by plain Keras on 0-255
    digits, and the digits as uint8 (.npz)."""
    from conftest import write_digits_npz

    root = tmp_path_factory.mktemp("rescaling")
    write_digits_npz(root / "digits.npz", 300, 60)
    raw = np.load(root / "digits.npz")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              keras.layers.Rescaling(1 / 255, name="rescale"),
                              keras.layers.Conv2D(8, 5, strides=2, activation="relu"),
                              keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(), "sparse_categorical_crossentropy")
    model.fit(raw["x_train"][..., None].astype("float32"), raw["y_train"], epochs=3, verbose=0)
    model.save(root / "mine.keras")
    predicted = model.predict(raw["x_test"][..., None].astype("float32"), verbose=0).argmax(1)
    return root, float(np.mean(predicted == raw["y_test"]))


def test_clean_accuracy_without_flags_equals_keras(rescaling_file):
    import json

    from click.testing import CliRunner

    from advbench.cli import main

    root, keras_accuracy = rescaling_file
    args = ["evaluate", str(root / "mine.keras"), "--data", str(root / "digits.npz"), "--json"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["clean"]["accuracy"] == keras_accuracy
    assert report["model"]["provenance"]["input_scale"]["source"] == "model"
    assert ("mine.keras: its first layers, Rescaling 'rescale' (scale 0.00392157, offset 0), "
            "take pixels in 0..255") in result.stderr
    # Flags that disagree: followed, and the warning is said even with -q.
    flagged = CliRunner().invoke(main, [*args, "--input-range", "0:1", "-q"])
    assert flagged.exit_code == 0, flagged.output
    assert flagged.stderr.startswith(
        "Warning: mine.keras's first layers, Rescaling 'rescale' (scale 0.00392157, offset "
        "0), take pixels in 0..255, but the flags say --input-range 0:1: advbench follows the "
        "flags; drop them to feed 0..255\n")
    assert json.loads(flagged.stdout)["clean"]["accuracy"] < keras_accuracy


def test_own_model_docs_say_which_layers_are_read():
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "own-model.md")
                    .read_text().split())
    assert "needs none of them" not in text
    for phrase in ("`Rescaling(1/255)`", "`Rescaling(1/127.5, offset=-1)`", "offset -1",
                   "`Normalization` first", "`Random*`", "nested", "They always win"):
        assert phrase in text, phrase
