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

    dtype = tf.int32 if kind == "int32 input" else tf.float32

    class Scores(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(weights)

        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], dtype)])
        def serve(self, x):
            y = tf.matmul(tf.reshape(tf.cast(x, tf.float32), [-1, 784]), self.w)
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
    ("int32 input", "{path}: the SavedModel's endpoint takes int32 images; advbench feeds "
                    "float images (and takes gradients): export it with a float32 input"),
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


# -- a forged or damaged checkpoint is not resumed ---------------------------------------------
def _checkpoint(n=6):
    return {"x_adv": np.zeros((n, 28, 28, 1), np.float32), "y": np.arange(n) % 10,
            "indices": np.arange(n) * 3, "completed": np.arange(n) < 3, "wall_time_s": 0.0}


@pytest.mark.parametrize("spoil, message", [
    (lambda a: a.pop("x_adv"), "{path} lacks x_adv; the file is damaged or edited: pass "
                               "--overwrite to start the run again"),
    (lambda a: a["y"].__setitem__(5, 9), "{path} differs from this run in y (labels) at 1 "
                                         "samples; the file is damaged or edited: pass "
                                         "--overwrite to start the run again"),
    (lambda a: a["indices"].__setitem__(0, 1), "{path} differs from this run in indices "
                                               "(sample indices) at 1 samples; the file is "
                                               "damaged or edited: pass --overwrite to start "
                                               "the run again"),
])
def test_a_checkpoint_with_other_labels_indices_or_arrays_is_not_resumed(tmp_path, spoil,
                                                                         message):
    from advbench.core.errors import ArtifactError
    from advbench.run.shards import check_checkpoint

    stored = {k: np.array(v) for k, v in _checkpoint().items() if k != "wall_time_s"}
    check_checkpoint(tmp_path / "run.h5", stored, _checkpoint())  # as written: resumed
    spoil(stored)
    with pytest.raises(ArtifactError, match=re.escape(message.format(path=tmp_path / "run.h5"))):
        check_checkpoint(tmp_path / "run.h5", stored, _checkpoint())


# -- a certification's results must follow from its noise counts -------------------------------
def _certification(path, n_images=6, n=50, n0=10, alpha=0.001, sigma=0.25):
    from advbench.run.artifacts import CERTIFICATION_SCHEMA, write_arrays
    from advbench.score.certify import certify_counts

    rng = np.random.default_rng(0)
    y = np.arange(n_images) % 10
    counts0 = np.zeros((n_images, 10), np.int64)
    counts = np.zeros((n_images, 10), np.int64)
    for i, c in enumerate(y):
        top = rng.integers(n // 2, n + 1)
        counts0[i, c], counts0[i, (c + 1) % 10] = n0 - 1, 1
        counts[i, c], counts[i, (c + 3) % 10] = top, n - top
    pred, p_lower, radius = certify_counts(counts0, counts, n, alpha, sigma)
    arrays = {"y": y, "indices": np.arange(n_images), "completed": np.ones(n_images, bool),
              "pred": pred, "pa_lower": p_lower, "radius": radius, "correct": pred == y,
              "count_top": counts[np.arange(n_images), y], "counts0": counts0, "counts": counts}
    attrs = {"num_samples": n_images, "sigma": sigma, "n0": n0, "n": n, "alpha": alpha,
             "mode": "certify", "complete": True, "dataset": "mnist", "split": "test",
             "model_path": "cnn.h5", "model_hash": "c" * 64}
    write_arrays(path, CERTIFICATION_SCHEMA, attrs, arrays)
    return path


@pytest.mark.parametrize("field, edit, message", [
    ("correct", lambda a: a.__setitem__(slice(None), True), "correct does not follow from the "
                                                            "noise counts"),
    ("radius", lambda a: a.__setitem__(0, 1e9), "radius does not follow from the noise counts"),
    ("pa_lower", lambda a: a.__setitem__(0, 0.999), "pa_lower does not follow from the noise "
                                                    "counts"),
    ("count_top", lambda a: a.__setitem__(0, 10 ** 9), "count_top does not follow from the "
                                                       "noise counts"),
    ("pred", lambda a: a.__setitem__(0, (a[0] + 1) % 10), "pred does not follow from the noise "
                                                          "counts"),
    ("counts", lambda a: a.__setitem__((0, 0), a[0, 0] + 1), "counts does not hold 50 draws per "
                                                             "certified image"),
])
def test_an_edited_certification_is_refused_naming_the_field(tmp_path, field, edit, message):
    import h5py

    from advbench.core.errors import ArtifactError
    from advbench.score.certify import read_certification

    path = _certification(tmp_path / "cert.h5")
    read_certification(path)  # as written: read
    with h5py.File(path, "r+") as f:
        value = f[field][()]
        edit(value)
        del f[field]
        f[field] = value
    with pytest.raises(ArtifactError, match=re.escape(
            f"{path}: {message}; the file is damaged or edited: certify again")):
        read_certification(path)


def test_an_edited_sigma_is_refused(tmp_path):
    import h5py

    from advbench.core.errors import ArtifactError
    from advbench.score.certify import read_certification

    path = _certification(tmp_path / "cert.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["sigma"] = 1e6
    with pytest.raises(ArtifactError, match=re.escape(
            f"{path}: radius does not follow from the noise counts; the file is damaged or "
            "edited: certify again")):
        read_certification(path)


def test_a_certification_of_another_model_is_refused_before_any_work(tmp_path):
    from advbench.core.errors import ArtifactError
    from advbench.run.metrics import DISTANCE_VARIANTS
    from advbench.score import evaluate

    path = _certification(tmp_path / "cert.h5")
    meta = {"dataset": "mnist", "content_hash": "d" * 64}
    with pytest.raises(ArtifactError, match=re.escape(
            f"{path} certifies model cnn.h5, not gda.h5 (their hashes differ); a certificate "
            "holds only for the model it was made on: evaluate it with that model, or certify "
            "this one")):
        # The checks evaluate() makes before it scores anything (a gate must not pass on
        # another model's certified accuracy).
        evaluate._scoring_checks(meta, "gda.h5", DISTANCE_VARIANTS[0], [path])
    evaluate._scoring_checks({**meta, "content_hash": "c" * 64}, "cnn.h5",
                             DISTANCE_VARIANTS[0], [path])


# -- an artifact's arrays live in the artifact -------------------------------------------------
@pytest.mark.parametrize("storage", ["external storage", "virtual dataset"])
def test_an_array_kept_in_another_file_is_never_read(tmp_path, storage):
    import h5py

    from advbench.core.errors import ArtifactError
    from advbench.run.artifacts import CURVE_SCHEMA, read_arrays, write_arrays

    secret = tmp_path / "secret.bin"
    np.arange(4, dtype=np.int64).tofile(secret)
    out = tmp_path / "c.h5"
    write_arrays(out, CURVE_SCHEMA, {"num_samples": 4}, {"y": np.zeros(4, np.int64)})
    with h5py.File(out, "r+") as f:
        del f["y"]
        if storage == "external storage":
            f.create_dataset("y", shape=(4,), dtype="int64", external=[(str(secret), 0, 32)])
        else:
            with h5py.File(tmp_path / "other.h5", "w") as other:
                other["y"] = np.arange(4, dtype=np.int64)
            layout = h5py.VirtualLayout(shape=(4,), dtype="int64")
            layout[:] = h5py.VirtualSource(str(tmp_path / "other.h5"), "y", shape=(4,))
            f.create_virtual_dataset("y", layout)
    with pytest.raises(ArtifactError, match=re.escape(
            f"{out}: y keeps its data in another file (HDF5 {storage}), which advbench never "
            "writes; refusing it")):
        read_arrays(out, CURVE_SCHEMA)
