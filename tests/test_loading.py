"""open_model: one way to open what a MODEL argument names, and the stages on foreign models
and user data (provenance, data identity, white-box vs black-box)."""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from advbench import data
from advbench.attacks import make_attack
from advbench.core.errors import ArtifactError, ParameterError
from advbench.data.samples import check_model_fits
from advbench.models.adapt import Preprocessing
from advbench.run.artifacts import read_arrays, save_model, ATTACK_SCHEMA
from advbench.run.loading import open_model
from advbench.run.runner import AttackRun, attack_split
from advbench.score.evaluate import evaluate
from advbench.score.transfer import transfer
from conftest import synthetic_digits, write_digits_npz


@pytest.fixture
def npz(tmp_path):
    return write_digits_npz(tmp_path / "digits.npz", 200, 40)


@pytest.fixture
def keras_file(tmp_path, npz):
    """A plain Keras model trained a little on 0-255 pixels, with a final softmax."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                              keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    raw = np.load(npz)
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(raw["x_train"][..., None].astype("float32"), raw["y_train"], epochs=3, verbose=0)
    path = tmp_path / "mine.keras"
    model.save(path)
    return path


def test_a_foreign_model_needs_its_data(keras_file):
    with pytest.raises(ParameterError, match=re.escape(
            f"{keras_file} is a Keras 3 .keras file with no data set of its own; say which data "
            "it takes: --dataset mnist|cifar10 or --data FILE.npz|DIR")):
        open_model(str(keras_file))


def test_reading_options_do_not_apply_to_our_artifacts(tmp_path, tiny_model):
    save_model(tmp_path / "ours.h5", tiny_model, {"dataset": "mnist"})
    with pytest.raises(ParameterError, match=re.escape(
            f"--outputs, --input-range/--mean/--std apply to foreign model files; "
            f"{tmp_path / 'ours.h5'} is an advbench artifact (it takes [0, 1] images and gives "
            "logits)")):
        open_model(str(tmp_path / "ours.h5"), outputs="logits",
                   preprocessing=Preprocessing((0.0, 255.0)))


def test_attack_and_evaluate_a_foreign_model_on_user_data(tmp_path, npz, keras_file):
    name = data.source_name(str(npz))
    pre = Preprocessing((0.0, 255.0))
    path, model, meta = open_model(str(keras_file), dataset=name, preprocessing=pre)
    assert meta["dataset"] == name and meta["data_hash"] == data.fingerprint(name)
    assert meta["outputs"] == "softmax removed"
    run = AttackRun(model_path=str(path), dataset=name, limit=20, batch_size=10)
    out = attack_split(run, make_attack("fgsm", eps=0.2), model, meta, tmp_path / "a.h5")
    attrs, _ = read_arrays(out, ATTACK_SCHEMA)
    assert attrs["data_hash"] == meta["data_hash"]
    assert attrs["class_names"] == [str(i) for i in range(10)]
    provenance = attrs["model_provenance"]
    assert provenance["kind"] == "keras" and provenance["outputs"] == "softmax removed"
    assert provenance["preprocessing"]["input_range"] == [0.0, 255.0]
    assert provenance["source_hash"] == meta["source_hash"]
    # The same file read the same way is the same model: white-box ...
    summary = evaluate(model, meta, path, [out], limit=20).summary
    assert summary["artifacts"][0]["setting"] == "white-box"
    assert summary["clean"]["accuracy"] > 0.5
    assert summary["model"]["provenance"]["kind"] == "keras"
    # Accuracy per class, named by the data's class names.
    clean, entry = summary["clean"], summary["artifacts"][0]
    x, y, _ = data.load(name, "test", limit=20)
    pred = np.asarray(model(x)).argmax(axis=1)
    assert clean["per_class_accuracy"][3] == float(np.mean(pred[y == 3] == 3))
    assert len(entry["per_class_accuracy"]) == 10
    from rich.console import Console

    from advbench.score.report import print_per_class

    console = Console(record=True, width=100)
    print_per_class(summary, console)
    text = console.export_text()
    assert "accuracy per class (%)" in text and "fgsm" in text
    rows = [line.split()[1] for line in text.splitlines() if line[:2] == "│ "]
    assert rows == [str(i) for i in range(10)]
    # ... and read another way it is another model: black-box.
    _, other, other_meta = open_model(str(keras_file), dataset=name,
                                      preprocessing=Preprocessing((0.0, 1.0)))
    assert evaluate(other, other_meta, path, [out], limit=20,
                    sensitivity=False).summary["artifacts"][0]["setting"] == "black-box"
    # Transfer between the two readings.
    matrix = transfer([(path, model, meta)], [(path, model, meta), (path, other, other_meta)],
                      make_attack("fgsm", eps=0.2), limit=20, runs_dir=tmp_path / "runs").summary
    assert matrix["setting"] == [["white-box", "black-box"]]
    assert matrix["dataset"] == name


def test_changed_data_under_the_same_path_is_caught(tmp_path, npz, keras_file):
    name = data.source_name(str(npz))
    path, model, meta = open_model(str(keras_file), dataset=name,
                                   preprocessing=Preprocessing((0.0, 255.0)))
    run = AttackRun(model_path=str(path), dataset=name, limit=10, batch_size=10)
    out = attack_split(run, make_attack("fgsm", eps=0.2), model, meta, tmp_path / "a.h5")
    x_train, y_train = synthetic_digits(200, 7, shape=(28, 28))
    raw = dict(np.load(npz))
    np.savez(npz, **{**raw, "x_train": x_train})
    _, model, meta = open_model(str(keras_file), dataset=name,
                                preprocessing=Preprocessing((0.0, 255.0)))
    with pytest.raises(ArtifactError, match=re.escape(
            f"{out} holds digits.npz images but --dataset/--data gave digits.npz for model "
            f"{path} (same name, other content: the data hash differs); pass the data the "
            "artifact was crafted on")):
        evaluate(model, meta, path, [out], limit=10)
    del meta["data_hash"]
    with pytest.raises(ArtifactError, match=re.escape(
            f"{out} was crafted on other data than digits.npz holds now (the data hash differs); "
            "restore that file or craft the artifact again")):
        evaluate(model, meta, path, [out], limit=10)


def test_model_trained_on_other_data(tmp_path, npz, keras_file, trained_tiny_cnn,
                                    fake_data_dir):
    name = data.source_name(str(npz))
    path, model, meta = open_model(str(keras_file), dataset=name,
                                   preprocessing=Preprocessing((0.0, 255.0)))
    run = AttackRun(model_path=str(path), dataset=name, limit=10, batch_size=10)
    out = attack_split(run, make_attack("fgsm", eps=0.2), model, meta, tmp_path / "a.h5")
    mnist_path, mnist_model, mnist_meta = trained_tiny_cnn
    with pytest.raises(ArtifactError, match=re.escape(
            f"{out} holds digits.npz images but model {mnist_path} was trained on mnist; give "
            "artifacts of its data")):
        evaluate(mnist_model, mnist_meta, mnist_path, [out], data_dir=fake_data_dir,
                 sensitivity=False)


@pytest.mark.parametrize("model_shape, message", [
    ((28, 28), "model m.h5 takes inputs of shape (28, 28) but mnist images are (28, 28, 1): its "
               "input has no channel axis; pass the model's own .keras/.h5 file (advbench adds "
               "the axis for Keras files) or rebuild it with keras.Input((28, 28, 1))"),
    ((32, 32, 3), "model m.h5 takes inputs of shape (32, 32, 3) but mnist images are (28, 28, "
                  "1); use the data it was trained on (cifar10)"),
])
def test_shape_mismatch_names_the_right_fix(model_shape, message):
    model = keras.Sequential([keras.Input(model_shape), keras.layers.Flatten(),
                              keras.layers.Dense(10)])
    with pytest.raises(ArtifactError, match=re.escape(message)):
        check_model_fits(model, {"dataset": "cifar10"}, "m.h5", np.zeros((1, 28, 28, 1)),
                         "mnist")
