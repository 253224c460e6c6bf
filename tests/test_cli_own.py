"""The CLI on the user's own models and data: .keras, legacy .h5 and SavedModel files with a
softmax and 0-255 inputs, .npz and image-folder data, through attack, evaluate, transfer,
train --model and export; bad models and data give one-line errors."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from advbench.cli import main
from conftest import synthetic_digits, write_digits_npz


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def own(tmp_path_factory):
    """A user's folder: data as .npz and as PNG class folders, and a plain Keras model trained
    on 0-255 pixels with a final softmax, saved in the three foreign formats."""
    from PIL import Image

    root = tmp_path_factory.mktemp("own")
    write_digits_npz(root / "digits.npz", 300, 40)
    raw = np.load(root / "digits.npz")
    x_train, y_train, x_test, y_test = (raw[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    for i, (image, label) in enumerate(zip(x_test, y_test)):
        folder = root / "pngs" / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((28, 28, 1)),
                              keras.layers.Conv2D(8, 5, strides=2, activation="relu",
                                                  name="conv"),
                              keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax", name="scores")])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x_train[..., None].astype("float32"), y_train, epochs=4, verbose=0)
    model.save(root / "mine.keras")
    model.save(root / "mine.h5")
    model.export(str(root / "mine_savedmodel"), verbose=False)
    return root


def test_attack_evaluate_transfer_on_a_keras_file_and_npz(own, tmp_path):
    model, npz = own / "mine.keras", own / "digits.npz"
    reading = ["--data", npz, "--input-range", "0:255"]
    attacked = run(["attack", model, "--attack", "fgsm", "--eps", "0.2", "--limit", "20",
                    *reading, "-o", tmp_path / "fgsm.h5"])
    assert attacked.exit_code == 0, attacked.output
    assert attacked.stdout == f"{tmp_path / 'fgsm.h5'}\n"
    assert "mine.keras: its final softmax ('scores') is removed: advbench attacks the logits" \
        in attacked.stderr
    assert "digits.npz[x_test]: uint8 0-255, divided by 255" in attacked.stderr
    scored = run(["evaluate", model, tmp_path / "fgsm.h5", *reading, "--limit", "20",
                  "--json", "-q"])
    assert scored.exit_code == 0, scored.output
    summary = json.loads(scored.stdout)
    assert summary["artifacts"][0]["setting"] == "white-box"
    assert summary["clean"]["accuracy"] > 0.5
    assert summary["model"]["provenance"]["preprocessing"]["input_range"] == [0.0, 255.0]
    # Without the input range it is another model: black-box.
    other = run(["evaluate", model, tmp_path / "fgsm.h5", "--data", npz, "--limit", "20",
                 "--json", "-q", "--no-sensitivity"])
    assert json.loads(other.stdout)["artifacts"][0]["setting"] == "black-box"
    matrix = run(["transfer", "--source", model, "--target", own / "mine.h5", *reading,
                  "--limit", "20", "--runs-dir", tmp_path / "runs", "--json", "-q"])
    assert matrix.exit_code == 0, matrix.output
    assert json.loads(matrix.stdout)["setting"] == [["black-box"]]


@pytest.mark.parametrize("kind", ["mine.h5", "mine_savedmodel"])
def test_other_kinds_on_an_image_folder(own, tmp_path, kind):
    args = ["attack", own / kind, "--attack", "fgsm", "--data", own / "pngs", "--input-range",
            "0:255", "--limit", "10", "-o", tmp_path / "a.h5", "-q"]
    result = run(args)
    if kind == "mine_savedmodel":
        assert result.exit_code == 1
        assert result.output == (
            "Error: mine_savedmodel's outputs look like probabilities (non-negative, rows "
            "summing to 1) but it has no final softmax layer to remove; pass --outputs "
            "probabilities (advbench takes their log) or --outputs logits (they are logits)\n")
        result = run([*args, "--outputs", "probabilities"])
    assert result.exit_code == 0, result.output
    scored = run(["evaluate", own / kind, tmp_path / "a.h5", *args[4:10], "--json", "-q",
                  *(["--outputs", "probabilities"] if kind == "mine_savedmodel" else [])])
    assert scored.exit_code == 0, scored.output
    summary = json.loads(scored.stdout)
    assert summary["clean"]["class_names"] == [f"digit{i}" for i in range(10)]
    assert summary["artifacts"][0]["setting"] == "white-box"


def test_train_own_architecture_then_export(own, tmp_path):
    out = tmp_path / "trained.h5"
    trained = run(["train", "--model", own / "mine.keras", "--data", own / "digits.npz",
                   "--defense", "gda", "--gda-copies", "1", "--act", "brelu", "--epochs", "2",
                   "--batch-size", "32", "-o", out])
    assert trained.exit_code == 0, trained.output
    assert trained.stdout == f"{out}\n"
    assert "conv: activation relu -> linear + BRELU(t=1) (conv_brelu)" in trained.stderr
    assert "mine.keras: its final softmax ('scores') is removed" in trained.stderr
    listed = json.loads(run(["models", out, "--json"]).stdout)
    assert listed[0]["architecture"] == "own" and listed[0]["defense"] == "gda"
    exported = run(["export", out, "-o", tmp_path / "trained.keras"])
    assert exported.exit_code == 0, exported.output
    assert exported.stdout == f"{tmp_path / 'trained.keras'}\n"
    from advbench.run.artifacts import load_model

    ours, _ = load_model(out)
    x = synthetic_digits(8, 5)[0][..., None].astype("float32") / 255.0
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "trained.keras")(x),
                                  ours(x))
    attacked = run(["attack", out, "--attack", "fgsm", "--limit", "10", "-o", tmp_path / "a.h5",
                    "--data", own / "digits.npz", "-q"])
    assert attacked.exit_code == 0, attacked.output


def test_train_default_output_names_the_data_and_the_file(own, tmp_path):
    result = run(["train", "--model", own / "mine.h5", "--data", own / "digits.npz", "--epochs",
                  "1", "--limit", "50", "--models-dir", tmp_path, "--fine-tune", "-q",
                  "--input-range", "0:255"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{tmp_path / 'digits-mine-relu-none.h5'}\n"


@pytest.mark.parametrize("args, code, message", [
    (["attack", "{own}/mine.keras", "--attack", "fgsm", "--dataset", "mnist", "--data",
      "{own}/digits.npz"], 2, "Use just one of --dataset or --data"),
    (["attack", "{own}/mine.keras", "--attack", "fgsm"], 1,
     "{own}/mine.keras is a Keras 3 .keras file with no data set of its own; say which data it "
     "takes: --dataset mnist|cifar10 or --data FILE.npz|DIR"),
    (["attack", "{own}/mine.keras", "--attack", "fgsm", "--data", "{own}/digits.npz",
      "--input-range", "0-255"], 2,
     "Invalid value: --input-range '0-255' is not LOW:HIGH (e.g. 0:255)"),
    (["train", "--model", "cnn", "--fine-tune"], 2,
     "--fine-tune applies to --model FILE (your own architecture)"),
    (["train", "--model", "nothing.keras"], 2,
     "Invalid value for '--model': 'nothing.keras' is neither an architecture (cnn, resnet, "
     "cifar-cnn, mlp) nor an existing .keras/.h5 file"),
    (["attack", "{own}/mine.keras", "--attack", "fgsm", "--data", "{own}/missing.npz"], 1,
     "data {own}/missing.npz does not exist; pass an .npz file or a folder with one sub-folder "
     "of images per class"),
    (["export", "{own}/mine_savedmodel", "-o", "{own}/x.keras", "--data", "{own}/digits.npz",
      "--outputs", "logits"], 1,
     "a SavedModel cannot be written as a .keras file (Keras stores layers, not compiled "
     "graphs); it is already a standard format"),
])
def test_bad_input_is_one_line(own, args, code, message):
    result = run([a.format(own=own) for a in args])
    assert result.exit_code == code
    assert result.output.splitlines()[-1] == f"Error: {message.format(own=own)}"


def test_export_refuses_an_existing_file_before_loading_the_model(own, tmp_path):
    out = tmp_path / "x.keras"
    out.write_bytes(b"previous")
    # The refusal comes before the model loads (a missing model file is found even earlier,
    # by the pre-TensorFlow checks, so this uses a real one).
    result = run(["export", own / "mine.keras", "--data", own / "digits.npz", "-o", out, "-q"])
    assert result.exit_code == 1
    assert result.output == f"Error: {out} exists; choose another -o or pass --overwrite\n"
    result = run(["export", own / "mine.keras", "--data", own / "digits.npz", "-o", out,
                  "--overwrite", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n" and out.read_bytes()[:2] == b"PK"


def test_reading_options_refused_for_our_artifacts(trained_tiny_cnn, fake_data_dir):
    path, _, _ = trained_tiny_cnn
    result = run(["attack", path, "--attack", "fgsm", "--outputs", "logits", "--data-dir",
                  fake_data_dir])
    assert result.exit_code == 1
    assert result.output == (f"Error: --outputs applies to foreign model files; {path} is an "
                             "advbench artifact (it takes [0, 1] images and gives logits)\n")


def test_lambda_model_and_bad_npz_are_one_line(own, tmp_path):
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Lambda(lambda t: t * 2, name="double")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(x)))
    model.save(tmp_path / "lambda.keras")
    result = run(["attack", tmp_path / "lambda.keras", "--attack", "fgsm", "--data",
                  own / "digits.npz", "-q"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: {tmp_path / 'lambda.keras'}: layer 'double' is a Lambda layer, whose code is "
        "stored in the file and never run by advbench; replace it by a registered custom layer "
        "and pass --custom-objects MODULE\n")
    np.savez(tmp_path / "bad.npz", x=np.full((4, 28, 28), 3.0), y=np.arange(4) % 2)
    result = run(["attack", own / "mine.keras", "--attack", "fgsm", "--data",
                  tmp_path / "bad.npz"])
    assert result.exit_code == 1
    assert result.output == ("Error: bad.npz[x] holds floats from 3 to 3, outside [0, 1]; "
                             "divide by 255 (it looks like 0-255 pixels) or save uint8\n")


def test_models_lists_an_artifact_without_training_metadata(tmp_path, tiny_model):
    from advbench.run.artifacts import save_model

    save_model(tmp_path / "bare.h5", tiny_model, {})
    result = CliRunner().invoke(main, ["models", str(tmp_path / "bare.h5")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stderr.splitlines() if "bare.h5" in line)
    assert set("".join(row.split("│")[1:-2]).split()) == {"-"}  # every cell but the path


def test_data_info_lists_the_default_folder_and_the_layouts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["data", "info"], terminal_width=400)
    assert result.exit_code == 0
    text = " ".join(result.stderr.split())
    assert "data/mnist" in text and "four IDX files" in text and "your own" in text


def test_evaluate_on_a_test_only_folder_leaves_the_training_distance_out(own, tmp_path):
    """A PNG folder without train/ and test/ has no training images: evaluate scores the
    DeepFool artifact and says the distance is left out (it failed after a minute before)."""
    model, pngs = own / "mine.keras", own / "pngs"
    attacked = run(["attack", model, "--attack", "deepfool", "--data", pngs, "--limit", "10",
                    "-o", tmp_path / "df.h5", "-q"])
    assert attacked.exit_code == 0, attacked.output
    result = run(["evaluate", model, tmp_path / "df.h5", "--data", pngs, "--no-sensitivity",
                  "--json"])
    assert result.exit_code == 0, result.output
    assert ("training-set distance: left out, pngs holds no training split (save x_train, "
            "y_train, x_test, y_test, or a folder with train/ and test/, to measure it)"
            ) in result.stderr.splitlines()
    entry = json.loads(result.stdout)["artifacts"][0]
    assert entry["training_distance"] is None and entry["robustness"]["count"] > 0


def test_a_minimal_attack_shows_no_robust_accuracy(own, tmp_path, monkeypatch):
    """DeepFool moves misclassified samples too (from the prediction): a "robust %" beside
    PGD's would read as resistance, so its row and progress line give none."""
    monkeypatch.setenv("ADVBENCH_PROGRESS_SECONDS", "0")  # every progress line, in a log
    model, npz = own / "mine.keras", own / "digits.npz"
    attacked = run(["attack", model, "--attack", "deepfool", "--data", npz, "--limit", "10",
                    "-o", tmp_path / "df.h5"])
    assert attacked.exit_code == 0, attacked.output
    assert "robust acc" not in attacked.stderr and "% of correct" in attacked.stderr
    result = run(["evaluate", model, tmp_path / "df.h5", "--data", npz, "--no-sensitivity",
                  "--no-distance", "--format", "markdown"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stderr.splitlines() if line.startswith("| deepfool"))
    assert [cell.strip() for cell in row.split("|")][6] == "- (minimal)"  # robust %
