"""`train --act brelu` says what it turned into BRELU and what it left; `export` keeps the
user's input contract (a model holding Rescaling(1/255) keeps taking 0-255) or says loudly
why it cannot."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from advbench.cli import main
from advbench.models.adapt import adapt, convert_relu, describe_left, other_activations
from advbench.models.export import with_original_input
from advbench.models.layers import FeatureSqueezing

SHAPE = (8, 8, 3)


def mixed():
    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inputs)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    x = keras.layers.Activation("hard_swish", name="hs")(x)
    x = keras.layers.LeakyReLU(name="leaky")(x)
    x = keras.layers.Conv2D(4, 1, activation="tanh", name="c2")(x)
    x = keras.layers.ReLU(name="plain")(x)
    x = keras.layers.Dense(3, activation="softmax", name="scores")(keras.layers.Flatten()(x))
    return keras.Model(inputs, x)


def test_brelu_lists_what_it_left():
    model = mixed()
    left = other_activations(model)
    assert left == {"ReLU(max_value=6)": ["relu6"], "hard_silu": ["hs"], "LeakyReLU": ["leaky"],
                    "tanh": ["c2"]}
    _, changes = convert_relu(model)
    assert len(changes) == 2  # c1's activation and the plain ReLU layer
    assert describe_left("m.keras", left, len(changes)) == (
        "Warning: m.keras: --act brelu turned 2 ReLUs into BRELU and left 4 other activations "
        "as they are: 1 ReLU(max_value=6) (relu6); 1 hard_silu (hs); 1 LeakyReLU (leaky); "
        "1 tanh (c2); BRELU bounds plain ReLUs only")
    assert describe_left("m.keras", {}, 2) is None


def test_keras_applications_mobilenet_v3_is_counted():
    model = keras.applications.MobileNetV3Small(include_preprocessing=True, weights=None,
                                                input_shape=(32, 32, 3), classes=10)
    left = other_activations(model)
    assert {k: len(v) for k, v in left.items()} == {"hard_silu": 19, "ReLU(max_value=6)": 9}
    assert len(convert_relu(model)[1]) == 14


def rescaling_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input(SHAPE), keras.layers.Rescaling(1 / 255, name="r"),
                             keras.layers.Conv2D(4, 3, activation="relu"),
                             keras.layers.Flatten(), keras.layers.Dense(3)])


def test_export_keeps_the_models_0_255_input():
    model = rescaling_model()
    adapted = adapt(model, SHAPE, 3, name="m")
    exported, said = with_original_input(adapted.model)
    x = np.random.default_rng(0).uniform(0, 1, (4, *SHAPE)).astype(np.float32)
    np.testing.assert_allclose(exported(x * 255), adapted.model(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(exported(x * 255), model(x * 255), rtol=1e-5, atol=1e-5)
    assert said == ("the exported model takes 0..255 pixels, as your model did (advbench's input "
                    "range layer left out), and gives logits")
    assert "input_range" not in [layer.name for layer in exported.layers]


def test_export_says_loudly_when_it_cannot():
    adapted = adapt(rescaling_model(), SHAPE, 3, name="m",
                    front=[FeatureSqueezing(bit_depth=4, name="feature_squeezing")])
    exported, said = with_original_input(adapted.model)
    assert exported is adapted.model
    assert said == ("Warning: the exported model takes [0, 1] images (advbench's convention), "
                    "not the 0..255 pixels your model took, because feature_squeezing needs "
                    "[0, 1] first: feed it x / 255")
    plain = adapt(keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(),
                                    keras.layers.Dense(3)]), SHAPE, 3)
    assert with_original_input(plain.model) == (plain.model, None)


def test_export_on_the_command_line(tmp_path):
    model = rescaling_model()
    model.save(tmp_path / "mine.keras")
    x = np.random.default_rng(0).integers(0, 255, (12, *SHAPE), dtype=np.uint8)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(12) % 3)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "mine.keras"), "--data",
                                       str(tmp_path / "d.npz"), "-o", str(tmp_path / "out.keras")])
    assert result.exit_code == 0, result.output
    assert ("the exported model takes 0..255 pixels, as your model did (advbench's input range "
            "layer left out), and gives logits") in result.stderr
    out = keras.saving.load_model(tmp_path / "out.keras")
    np.testing.assert_allclose(out(x.astype("float32")), model(x.astype("float32")),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flag", ["--help"])
def test_train_help_does_not_claim_everywhere(flag):
    text = CliRunner().invoke(main, ["train", flag]).output
    assert "Activation everywhere" not in text
    assert "leaves other activations (ReLU6," in " ".join(text.split())
