"""The user's own data: .npz files and image folders, read as the built-in sets are."""

import re

import numpy as np
import pytest

from advbench import data
from advbench.core.errors import DataError, ParameterError
from advbench.data import userdata
from conftest import synthetic_digits


def write_npz(path, n_train=60, n_test=30, **overrides):
    x_train, y_train = synthetic_digits(n_train, 1, shape=(12, 12))
    x_test, y_test = synthetic_digits(n_test, 2, shape=(12, 12))
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def write_folder(root, n_per_class=4, classes=("cat", "dog", "eel"), mode="L", size=(10, 8)):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(n_per_class):
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            pixels[..., 0, 0] = label * 80  # a pixel that tells the classes apart
            Image.fromarray(pixels, mode).save(root / name / f"{i}.png")
    return root


def test_npz_loads_like_a_builtin_set(tmp_path):
    path = write_npz(tmp_path / "digits.npz")
    name = data.source_name(str(path))
    assert name == str(path.resolve())
    info = data.dataset_info(name)
    assert info.input_shape == (12, 12, 1) and info.num_classes == 10
    assert info.train_size == 60 and info.test_size == 30
    x, y, idx = data.load(name, "test")
    raw = np.load(path)
    np.testing.assert_allclose(x[..., 0], raw["x_test"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, raw["y_test"])
    assert x.dtype == np.float32 and y.dtype == np.int64
    _, _, fit = data.load(name, "train")
    _, _, val = data.load(name, "validation")
    assert len(fit) == 54 and len(val) == 6 and not set(fit) & set(val)
    _, yl, _ = data.load(name, "test", limit=20, seed=3)
    assert np.bincount(yl, minlength=10).tolist() == [2] * 10
    _, _, rest = data.load(name, "test", start=25)
    np.testing.assert_array_equal(rest, np.arange(25, 30))
    assert any("uint8 0-255, divided by 255" in n for n in data.notes(name))


def test_float_data_in_unit_range_is_not_divided_again(tmp_path):
    x_train, y_train = synthetic_digits(40, 1, shape=(12, 12))
    floats = x_train.astype(np.float32) / 255.0
    path = write_npz(tmp_path / "f.npz", x_train=floats, y_train=y_train,
                     x_test=floats[:20], y_test=y_train[:20])
    x, _, _ = data.load(str(path), "test")
    np.testing.assert_array_equal(x[..., 0], floats[:20])
    assert any("float in [0, 1], used as is" in n for n in data.notes(str(path)))


def test_float_keras_style_mnist_npz_is_not_divided_again(tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (30, 28, 28)).astype(np.float32)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=np.arange(30) % 10, x_test=x[:10],
             y_test=np.arange(10))
    loaded, _, _ = data.load("mnist", "test", data_dir=tmp_path)
    np.testing.assert_array_equal(loaded[..., 0], x[:10])
    assert data.notes("mnist", tmp_path) == [
        f"mnist: npz files in {tmp_path / 'mnist.npz'}, float32 used as is (must be in [0, 1])"]


def test_float_keras_style_mnist_npz_out_of_range_is_refused(tmp_path):
    x = np.full((30, 28, 28), 200.0, np.float32)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=np.arange(30) % 10, x_test=x[:10],
             y_test=np.arange(10))
    with pytest.raises(DataError, match=re.escape(
            "mnist test images holds float32 pixels that are neither uint8 0-255 nor floats in "
            "[0, 1]; save them as one of those")):
        data.load("mnist", "test", data_dir=tmp_path)


def test_single_split_npz_is_a_test_split(tmp_path):
    x, y = synthetic_digits(20, 1, shape=(12, 12))
    np.savez(tmp_path / "one.npz", x=x, y=y)
    name = str(tmp_path / "one.npz")
    assert len(data.load(name, "test")[0]) == 20
    with pytest.raises(DataError, match=re.escape(
            f"{tmp_path / 'one.npz'} holds only a test split (x, y); save x_train, y_train, "
            "x_test, y_test (or a folder with train/ and test/) to use its train images")):
        data.load(name, "train")


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "hw"])
def test_layouts_are_detected_and_stated(tmp_path, layout):
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (8, 6, 5, 3), dtype=np.uint8)
    stored = {"nhwc": nhwc, "nchw": nhwc.transpose(0, 3, 1, 2), "hw": nhwc[..., 0]}[layout]
    np.savez(tmp_path / "d.npz", x=stored, y=np.arange(8) % 2)
    own = userdata.open_data(tmp_path / "d.npz")
    expected = nhwc if layout != "hw" else nhwc[..., :1]
    np.testing.assert_array_equal(own.splits["test"][0], expected)
    said = " ".join(own.notes)
    assert ("read as NCHW, transposed to NHWC" in said) == (layout == "nchw")
    assert ("(N, H, W) read as one-channel images" in said) == (layout == "hw")


def test_ambiguous_layout_is_read_as_channels_last_and_said(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 3, 5, 3), np.uint8), y=Y)
    assert "d.npz[x]: uint8 0-255, divided by 255; shape (4, 3, 5, 3) read as NHWC (channels " \
        "last)" in userdata.open_data(tmp_path / "d.npz").notes


def test_labels_of_shape_n_1_are_flattened(tmp_path):
    x, y = synthetic_digits(10, 1, shape=(6, 6))
    np.savez(tmp_path / "d.npz", x=x, y=y.reshape(-1, 1))
    own = userdata.open_data(tmp_path / "d.npz")
    np.testing.assert_array_equal(own.splits["test"][1], y)
    assert "d.npz[y]: labels of shape (10, 1) flattened to (10,)" in own.notes


def test_class_names_are_kept(tmp_path):
    x, y = synthetic_digits(10, 1, shape=(6, 6))
    names = np.array([f"c{i}" for i in range(10)])
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=names)
    assert data.dataset_info(str(tmp_path / "d.npz")).class_names == tuple(names)


def test_fingerprint_tells_data_apart(tmp_path):
    a = write_npz(tmp_path / "a.npz")
    b = write_npz(tmp_path / "b.npz")
    x_test, y_test = synthetic_digits(30, 2, shape=(12, 12))
    x_test[0, 0, 0] ^= 1
    c = write_npz(tmp_path / "c.npz", x_test=x_test)
    assert data.fingerprint(str(a)) == data.fingerprint(str(b)) != data.fingerprint(str(c))


# -- bad .npz files: one line naming the file and the fix --------------------------------------
def _npz_error(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        userdata.open_data(path)
    return str(info.value).replace(str(path), "FILE")


X = np.zeros((4, 6, 6), np.uint8)
Y = np.array([0, 1, 0, 1])


@pytest.mark.parametrize("arrays, message", [
    ({"images": X}, "FILE has arrays ['images']; it needs x_train, y_train, x_test, y_test (or "
     "x, y for a test split alone)"),
    ({"x": X.astype(np.float32) + 3.0, "y": Y}, "bad.npz[x] holds floats from 3 to 3, outside "
     "[0, 1]; divide by 255 (it looks like 0-255 pixels) or save uint8"),
    ({"x": X.astype(np.float32) - 1.0, "y": Y}, "bad.npz[x] holds floats from -1 to -1, outside "
     "[0, 1]; rescale the images to [0, 1]"),
    ({"x": np.full((4, 6, 6), np.nan, np.float32), "y": Y},
     "bad.npz[x] contains NaN or infinity; remove or fix those images"),
    ({"x": X.astype(np.int64) + 300, "y": Y}, "bad.npz[x] holds integers from 300 to 300; "
     "integer images must be 0-255 (save uint8), or save floats in [0, 1]"),
    ({"x": np.zeros((4, 6), np.uint8), "y": Y}, "bad.npz[x] has shape (4, 6); images must be "
     "(N, H, W), (N, H, W, C) or (N, C, H, W) with N >= 1"),
    ({"x": np.zeros((4, 6, 6, 9), np.uint8), "y": Y}, "bad.npz[x] has shape (4, 6, 6, 9): no "
     "axis of 1 to 4 channels; save images as (N, H, W, C) or (N, C, H, W)"),
    ({"x": X.astype(bool), "y": Y}, "bad.npz[x] has dtype bool; save images as uint8 (0-255) "
     "or float (0-1)"),
    ({"x": X, "y": np.eye(2)[Y]}, "bad.npz[y] has shape (4, 2); labels must be (N,) integers, "
     "they look one-hot: save y.argmax(axis=1)"),
    ({"x": X, "y": Y.astype(float)}, "bad.npz[y] has dtype float64; labels must be integers "
     "0..K-1 (save y.astype('int64'))"),
    ({"x": X, "y": Y[:3]}, "bad.npz[y] has 3 labels for 4 images; give one label per image"),
    ({"x": X, "y": Y - 1}, r"bad.npz[y] has a negative label (-1); labels must be 0..K-1"),
    ({"x": X, "y": np.zeros(4, int)}, "FILE: fewer than two classes in the labels; a "
     "classifier needs at least two"),
    ({"x": X, "y": Y, "class_names": np.array(["only"])}, "FILE: label 1 is out of range for 1 "
     "class names; labels must be 0..0"),
    ({"x_train": X, "y_train": Y, "x_test": np.zeros((4, 7, 7), np.uint8), "y_test": Y},
     "FILE: train images are (6, 6, 1) but test images are (7, 7, 1); give both splits one "
     "image size"),
])
def test_bad_npz_is_a_one_line_error(tmp_path, arrays, message):
    assert _npz_error(tmp_path, **arrays) == message


def test_object_arrays_are_never_unpickled(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([X[0], X[1][:3]], dtype=object), y=Y[:2])
    with pytest.raises(DataError, match=re.escape(
            f"{path} holds an object (pickled) array, which advbench never loads; save numeric "
            "arrays (np.savez with uint8 or float images and integer labels)")):
        userdata.open_data(path)


def test_not_an_npz_nor_a_folder(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DataError, match=re.escape(f"{path} is neither an .npz file nor a folder")):
        userdata.open_data(path)
    with pytest.raises(DataError, match=re.escape(
            f"data {tmp_path / 'none.npz'} does not exist; pass an .npz file or a folder")):
        data.load(str(tmp_path / "none.npz"))


def test_unknown_name_suggests_a_path():
    with pytest.raises(ParameterError, match=re.escape(
            "unknown data set 'svhn'; choose one of: cifar10, mnist, or pass your own as a path "
            "(an .npz file or a folder of class folders)")):
        data.dataset_info("svhn")


# -- image folders -------------------------------------------------------------------------------
def test_image_folder_is_a_test_split_with_class_names(tmp_path):
    root = write_folder(tmp_path / "pets")
    name = data.source_name(str(root))
    info = data.dataset_info(name)
    assert info.class_names == ("cat", "dog", "eel") and info.input_shape == (8, 10, 1)
    x, y, _ = data.load(name, "test")
    assert x.shape == (12, 8, 10, 1) and sorted(np.bincount(y)) == [4, 4, 4]
    np.testing.assert_allclose(x[y == 2, 0, 0, 0], 160 / 255.0)
    assert "grayscale images decoded by Pillow" in data.notes(name)[0]


def test_image_folder_with_train_and_test_rgb(tmp_path):
    write_folder(tmp_path / "pets" / "train", n_per_class=5, mode="RGB")
    write_folder(tmp_path / "pets" / "test", n_per_class=2, mode="RGB")
    own = userdata.open_data(tmp_path / "pets")
    assert own.splits["train"][0].shape == (15, 8, 10, 3)
    assert own.splits["test"][0].shape == (6, 8, 10, 3)
    _, _, val = data.load(str(tmp_path / "pets"), "validation")
    assert len(val) == 2


def test_images_in_sub_folders_of_a_class_folder_count_for_that_class(tmp_path):
    """As Keras' image_dataset_from_directory: recursively, in its order, and said."""
    import shutil

    keras = pytest.importorskip("keras")
    root = write_folder(tmp_path / "pets")
    (root / "dog" / "puppies" / "small").mkdir(parents=True)
    shutil.move(root / "dog" / "1.png", root / "dog" / "puppies" / "1.png")
    shutil.move(root / "dog" / "3.png", root / "dog" / "puppies" / "small" / "3.png")
    shutil.copy(root / "eel" / "0.png", root / "eel" / "zz.PNG")
    (root / "eel" / "notes.txt").write_text("not an image")
    own = userdata.open_data(root)
    x, y = own.splits["test"]
    assert np.bincount(y).tolist() == [4, 4, 5]
    assert own.notes[1] == (f"{root}: 2 images in sub-folders of class folders counted with "
                             "their class folder's class (as Keras' "
                             "image_dataset_from_directory does)")
    reference = keras.utils.image_dataset_from_directory(
        root, labels="inferred", color_mode="grayscale", image_size=(8, 10), shuffle=False,
        batch_size=None, interpolation="nearest")
    pixels, labels = zip(*[(np.asarray(a), int(b)) for a, b in reference])
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(x, np.stack(pixels).astype(np.uint8))


def _empty_class(root):
    (root / "fox").mkdir()
    return (f"{root / 'fox'} is an empty class folder (no png/jpg/jpeg images); add images or "
            "remove the folder")


def _unreadable_image(root):
    (root / "dog" / "9.png").write_bytes(b"not a png")
    return (f"{root / 'dog' / '9.png'} is not a readable image (UnidentifiedImageError); fix or "
            "remove it")


def _other_size(root):
    from PIL import Image

    Image.new("L", (5, 5)).save(root / "eel" / "big.png")
    return (f"{root / 'eel' / 'big.png'} is 5x5 but {root / 'cat' / '0.png'} is 10x8; resize all "
            "images to one size")


@pytest.mark.parametrize("spoil", [_empty_class, _unreadable_image, _other_size])
def test_bad_image_folder_is_a_one_line_error(tmp_path, spoil):
    root = write_folder(tmp_path / "pets")
    message = spoil(root)
    with pytest.raises(DataError, match=re.escape(message)):
        userdata.open_data(root)


def test_folder_without_class_folders(tmp_path):
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataError, match=re.escape(
            f"{tmp_path / 'flat'} has no class sub-folders; put each class's images in")):
        userdata.open_data(tmp_path / "flat")


def test_default_data_dir_is_searched(tmp_path, monkeypatch):
    from conftest import write_fake_mnist

    monkeypatch.chdir(tmp_path)
    write_fake_mnist(tmp_path / "data" / "mnist", n_train=20, n_test=10)
    assert data.locate("mnist") == ("idx", data.Path("data") / "mnist")
    assert "data/mnist" in data.describe()[1]["searched"]
    assert len(data.load("mnist", "test")[0]) == 10
