"""Training the user's own architecture (train --model FILE) on the user's own data."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from advbench import data
from advbench.core.errors import ParameterError
from advbench.defenses import make_defense
from advbench.models.adapt import Preprocessing
from advbench.models.zoo import predict_labels
from advbench.run.artifacts import load_model, save_model
from advbench.run.train import TrainConfig, prepare_architecture, train
from conftest import write_digits_npz


@pytest.fixture
def digits_npz(tmp_path):
    return data.source_name(str(write_digits_npz(tmp_path / "digits.npz", 300, 60)))


def architecture(tmp_path, suffix=".keras", softmax=True, input_shape=(28, 28, 1)):
    """The user's architecture, as a plain Keras script would save it: 0-255 inputs, ReLUs,
    a final softmax."""
    keras.utils.set_random_seed(42)
    model = keras.Sequential([
        keras.Input(input_shape),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(16, name="hidden"),
        keras.layers.ReLU(name="relu"),
        keras.layers.Dense(10, activation="softmax" if softmax else None, name="out"),
    ])
    path = tmp_path / f"arch{suffix}"
    model.save(path)
    return path, model


def test_train_own_architecture_with_gda_and_brelu(tmp_path, digits_npz):
    path, original = architecture(tmp_path)
    config = TrainConfig(dataset=digits_npz, activation="brelu", brelu_t=1.0, epochs=3,
                         batch_size=32, seed=0)
    defense = make_defense("gda", digits_npz, copies=1)
    model, source = prepare_architecture(path, config, defense)
    assert source["brelu_changes"] == [
        "conv: activation relu -> linear + BRELU(t=1) (conv_brelu)",
        "relu: ReLU relu -> BRELU(t=1)",
    ]
    assert source["outputs"] == "softmax removed" and not source["fine_tune"]
    # Re-initialised: not the file's weights.
    assert not np.array_equal(model.get_layer("conv").kernel.numpy(),
                              original.get_layer("conv").kernel.numpy())
    trained, meta = train(config, defense, model=model, source=source)
    assert meta["architecture"] == "own" and meta["zoo_name"] == "arch-brelu-gda"
    assert meta["dataset"] == digits_npz and meta["data_hash"] == data.fingerprint(digits_npz)
    assert meta["class_names"] == [str(i) for i in range(10)]
    assert meta["clean_test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    # The artifact round-trips with its preprocessing and BRELUs inside.
    artifact = tmp_path / "own.h5"
    meta["content_hash"] = save_model(artifact, trained, meta)
    loaded, stored = load_model(artifact)
    x, y, _ = data.load(digits_npz, "test")
    np.testing.assert_array_equal(predict_labels(loaded, x), predict_labels(trained, x))
    assert "conv_brelu" in [layer.name for layer in loaded.layers]
    assert stored["source"]["brelu_changes"] == source["brelu_changes"]


def test_train_own_architecture_expecting_0_255(tmp_path, digits_npz):
    path, _ = architecture(tmp_path)
    config = TrainConfig(dataset=digits_npz, epochs=2, batch_size=32, seed=0)
    defense = make_defense("none", digits_npz)
    model, source = prepare_architecture(path, config, defense,
                                         preprocessing=Preprocessing((0.0, 255.0)))
    trained, meta = train(config, defense, model=model, source=source)
    assert meta["clean_test_accuracy"] > 0.3
    meta["content_hash"] = save_model(tmp_path / "own.h5", trained, meta)
    loaded, stored = load_model(tmp_path / "own.h5")
    assert stored["source"]["preprocessing"]["input_range"] == [0.0, 255.0]
    assert loaded.get_layer("input_range").get_config()["scale"] == 255.0


def test_fine_tune_keeps_the_weights_and_same_seed_same_model(tmp_path, digits_npz):
    path, original = architecture(tmp_path, suffix=".h5")
    config = TrainConfig(dataset=digits_npz, epochs=1, batch_size=32, seed=3)
    none = make_defense("none", digits_npz)
    tuned, _ = prepare_architecture(path, config, none, fine_tune=True)
    np.testing.assert_array_equal(tuned.get_layer("conv").kernel.numpy(),
                                  original.get_layer("conv").kernel.numpy())
    a, _ = prepare_architecture(path, config, none)
    b, _ = prepare_architecture(path, config, none)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_feature_squeezing_goes_in_front(tmp_path, digits_npz):
    path, _ = architecture(tmp_path)
    config = TrainConfig(dataset=digits_npz, epochs=1, batch_size=32)
    model, _ = prepare_architecture(path, config,
                                    make_defense("feature-squeezing", digits_npz, bit_depth=1))
    assert [layer.name for layer in model.layers][:2] == ["image", "feature_squeezing"]


def test_a_savedmodel_cannot_be_trained(tmp_path, digits_npz):
    _, model = architecture(tmp_path)
    model.export(str(tmp_path / "sm"), verbose=False)
    config = TrainConfig(dataset=digits_npz)
    with pytest.raises(ParameterError, match=re.escape(
            f"train --model takes a .keras or legacy .h5 architecture; {tmp_path / 'sm'} is a "
            "TensorFlow SavedModel directory, which advbench cannot train")):
        prepare_architecture(tmp_path / "sm", config, make_defense("none", digits_npz))


def test_architecture_must_fit_the_data(tmp_path, digits_npz):
    path, _ = architecture(tmp_path, input_shape=(16, 16, 1))
    config = TrainConfig(dataset=digits_npz)
    with pytest.raises(Exception, match=re.escape(
            "arch.keras takes images of shape (16, 16, 1) but the data's are (28, 28, 1)")):
        prepare_architecture(path, config, make_defense("none", digits_npz))
