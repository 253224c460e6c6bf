"""Hostile files, round three (#20): names that are not UTF-8, models whose outputs are not
class scores, forged checkpoints and shards. Each refusal is one line, asserted exactly."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from advbench.core import files
from advbench.core.errors import DataError
from advbench.data import userdata

NOT_UTF8 = b"\xff\xfe".decode("utf-8", "surrogateescape")  # as Python lists such a name


def _folder(root, classes):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(
                root / name / f"{i}.png")
    return root


def test_a_class_folder_named_in_bytes_that_are_not_utf8_is_one_line(tmp_path):
    root = _folder(tmp_path / "pets", ("cat", NOT_UTF8))
    with pytest.raises(DataError, match=re.escape(
            f"{root.resolve()}: class folder name '\\udcff\\udcfe' is not valid UTF-8; rename "
            "the folder (class names are stored as text)")):
        userdata.open_data(root)


def test_an_npz_class_name_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 0, 1]),
             class_names=np.array(["cat", "dog\udcff"]))
    with pytest.raises(DataError, match=re.escape(
            f"{path.resolve()}: class name 'dog\\udcff' is not valid UTF-8; save class_names as "
            "valid Unicode text (class names are stored as text)")):
        userdata.open_data(path)


def test_the_lock_owner_of_a_command_line_that_is_not_utf8_is_written(tmp_path, monkeypatch):
    # sys.argv holds a non-UTF-8 -o as surrogate escapes: written back as the bytes they were.
    monkeypatch.setattr(sys, "argv", ["advbench", "attack", "-o", f"{NOT_UTF8}.h5"])
    out = tmp_path / "run.h5"
    with files.output_lock(out):
        owner = (tmp_path / ".run.h5.lock-owner").read_bytes()
    assert owner.endswith(b"(advbench attack -o \xff\xfe.h5)")


def test_a_path_that_is_not_utf8_is_stored_escaped_in_an_artifact(tmp_path):
    from advbench.run.artifacts import CURVE_SCHEMA, read_arrays, write_arrays

    out = tmp_path / "c.h5"
    write_arrays(out, CURVE_SCHEMA, {"model_path": f"/models/{NOT_UTF8}cnn.h5", "num_samples": 0},
                 {"eps": np.zeros(2, np.float32)})
    attrs, _ = read_arrays(out, CURVE_SCHEMA)
    assert attrs["model_path"] == "/models/\\xff\\xfecnn.h5"


# -- a SavedModel's `serve` returns what its author chose --------------------------------------
def _savedmodel(path, kind):
    import tensorflow as tf

    weights = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32) * 0.01

    class Scores(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(weights)

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32)])
        def serve(self, x):
            y = tf.matmul(tf.reshape(x, [-1, 784]), self.w)
            if kind == "one row":
                return y[:1]
            if kind == "int32":
                return tf.cast(y, tf.int32)
            return y * np.float32("nan")

    module = Scores()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.mark.parametrize("kind, message", [
    ("one row", "{path} gives class scores of shape (1, 10) for 40 images, not (40, 10); it "
                "must return one row of scores per image"),
    ("int32", "{path} gives class scores of dtype int32; advbench needs float scores (logits "
              "or probabilities) to take gradients of"),
    ("nan", "{path} gives NaN or infinite class scores on the first 40 test images; it is "
            "damaged or not a classifier of this data: check it in Keras (and --input-range)"),
])
def test_a_savedmodel_whose_scores_are_not_class_scores_is_one_line(tmp_path, kind, message):
    from advbench import data
    from advbench.core.errors import ArtifactError
    from advbench.run.loading import open_model
    from conftest import write_digits_npz

    npz = write_digits_npz(tmp_path / "digits.npz", 50, 40)
    path = _savedmodel(tmp_path / "served", kind)
    with pytest.raises(ArtifactError, match=re.escape(message.format(path=path))):
        open_model(str(path), dataset=data.source_name(str(npz)))
