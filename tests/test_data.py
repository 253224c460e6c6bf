import gzip
import re

import numpy as np
import pytest

from advbench import data
from advbench.core.errors import DataError, ParameterError
from conftest import write_fake_mnist, write_idx


def test_load_mnist_from_gzipped_idx(fake_data_dir):
    x, y, idx = data.load("mnist", "test", data_dir=fake_data_dir)
    assert x.shape == (100, 28, 28, 1) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert y.dtype == np.int64 and set(np.unique(y)) == set(range(10))
    np.testing.assert_array_equal(idx, np.arange(100))


def test_plain_idx_and_folder_without_dataset_subfolder(tmp_path):
    write_fake_mnist(tmp_path, n_train=50, n_test=20, compress=False)
    x, y, _ = data.load("mnist", "test", data_dir=tmp_path)
    assert x.shape == (20, 28, 28, 1)


def test_keras_style_npz(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"x_{s}": rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
              for s, n in (("train", 30), ("test", 12))}
    arrays.update(y_train=np.arange(30) % 10, y_test=np.arange(12) % 10)
    np.savez(tmp_path / "mnist.npz", **arrays)
    x, y, _ = data.load("mnist", "test", data_dir=tmp_path)
    np.testing.assert_allclose(x[..., 0], arrays["x_test"] / 255.0, rtol=1e-6)


def test_train_and_validation_split_partition_the_training_set(fake_data_dir):
    _, _, train_idx = data.load("mnist", "train", data_dir=fake_data_dir)
    _, _, val_idx = data.load("mnist", "validation", data_dir=fake_data_dir)
    assert len(val_idx) == 40 and len(train_idx) == 360
    assert not set(train_idx) & set(val_idx)


def test_limit_is_deterministic_and_class_balanced(fake_data_dir):
    _, y1, i1 = data.load("mnist", "test", data_dir=fake_data_dir, limit=30, seed=3)
    _, y2, i2 = data.load("mnist", "test", data_dir=fake_data_dir, limit=30, seed=3)
    np.testing.assert_array_equal(i1, i2)
    assert np.bincount(y1, minlength=10).tolist() == [3] * 10
    _, _, i3 = data.load("mnist", "test", data_dir=fake_data_dir, limit=30, seed=4)
    assert not np.array_equal(i1, i3)


def test_start_skips_samples(fake_data_dir):
    _, _, all_idx = data.load("mnist", "test", data_dir=fake_data_dir)
    _, _, rest = data.load("mnist", "test", data_dir=fake_data_dir, start=90)
    np.testing.assert_array_equal(rest, all_idx[90:])
    with pytest.raises(ParameterError, match=rf"^no samples left in mnist test after --start "
                       rf"{len(all_idx)}: it has {len(all_idx)}; lower --start$"):
        data.load("mnist", "test", data_dir=fake_data_dir, start=len(all_idx))
    # Trial 4: with --limit, --start counts within the chosen samples; the message says so.
    with pytest.raises(ParameterError, match=re.escape(
            f"no samples left in mnist test after --start 12: it has 10 (--start counts within "
            f"the 10 samples --limit chose of its {len(all_idx)}); lower --start")):
        data.load("mnist", "test", data_dir=fake_data_dir, limit=10, start=12)


def test_cifar_binary_layout(tmp_path):
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}.bin", 4) for i in range(1, 6)] + [("test_batch.bin", 6)]:
        labels = (np.arange(n) % 10).astype(np.uint8)
        pixels = rng.integers(0, 255, (n, 3, 32, 32), dtype=np.uint8)
        records = np.concatenate([labels[:, None], pixels.reshape(n, -1)], axis=1)
        records.tofile(folder / name)
        if name == "test_batch.bin":
            expected = pixels.transpose(0, 2, 3, 1) / 255.0
    x, y, _ = data.load("cifar10", "test", data_dir=tmp_path)
    assert x.shape == (6, 32, 32, 3)
    np.testing.assert_allclose(x, expected, rtol=1e-6)
    xtr, _, _ = data.load("cifar10", "train", data_dir=tmp_path)
    assert len(xtr) == 18  # 90% of 20


def test_truncated_idx_is_a_one_line_error(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz is truncated or corrupt"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_wrong_magic_is_an_error(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(10, np.uint8), 0x00000803)
    with pytest.raises(DataError, match="not an IDX file of the expected kind"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_corrupt_gzip_is_an_error(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read .*t10k-images"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_missing_files_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="no mnist files in"):
        data.load("mnist", "test", data_dir=tmp_path / "empty")


def test_truncated_cifar_is_an_error(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(b"\x01" * 100)
    with pytest.raises(DataError, match="truncated or corrupt"):
        data.load("cifar10", "test", data_dir=tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "svhn"}, "unknown data set 'svhn'"),
    ({"split": "dev"}, "unknown split 'dev'"),
    ({"limit": 0}, "limit must be >= 1"),
    ({"start": -1}, "start must be >= 0"),
])
def test_bad_parameters(fake_data_dir, kwargs, message):
    args = {"name": "mnist", "split": "test", **kwargs}
    name, split = args.pop("name"), args.pop("split")
    with pytest.raises(ParameterError, match=message):
        data.load(name, split, data_dir=fake_data_dir, **args)


def test_describe_reports_what_is_found(fake_data_dir):
    rows = {r["dataset"]: r for r in data.describe(fake_data_dir)}
    assert rows["mnist"]["found"] and rows["mnist"]["layout"] == "idx"
    assert not rows["cifar10"]["found"]


def test_fetch_writes_canonical_files_from_keras(monkeypatch, tmp_path):
    from conftest import synthetic_digits

    x, y = synthetic_digits(60, 0)
    counts = data.MNIST_TRAIN_LABEL_COUNTS
    monkeypatch.setattr(data, "_keras_download", lambda name: {
        "train": (x, y), "test": (x[:10], y[:10])})
    # The synthetic labels do not have MNIST's class counts: the check must catch that.
    with pytest.raises(DataError, match="label counts"):
        data.fetch("mnist", tmp_path)
    assert (tmp_path / "mnist" / "train-images-idx3-ubyte.gz").exists()
    monkeypatch.setattr(data, "MNIST_TRAIN_LABEL_COUNTS",
                        tuple(int(c) for c in np.bincount(y, minlength=10)))
    assert data.fetch("mnist", tmp_path) == tmp_path / "mnist"
    xt, _, _ = data.load("mnist", "test", data_dir=tmp_path)
    np.testing.assert_allclose(xt[..., 0], x[:10] / 255.0, rtol=1e-6)
    assert counts == (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)


@pytest.mark.slow
def test_real_mnist_if_present():
    import pathlib

    shared = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (shared / "mnist").exists():
        pytest.skip("../shared/data/mnist not present")
    x, y, _ = data.load("mnist", "train", data_dir=shared)
    _, yv, _ = data.load("mnist", "validation", data_dir=shared)
    counts = np.bincount(np.concatenate([y, yv]), minlength=10)
    assert tuple(counts) == data.MNIST_TRAIN_LABEL_COUNTS
