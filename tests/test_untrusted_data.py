"""Hostile data files: labels out of range, IDX headers whose dimensions overflow, gzip
bombs, and the shared array check every source goes through (issue 14)."""

import gzip
import resource

import numpy as np
import pytest

from advbench import data
from advbench.errors import DataError
from conftest import deflate_bomb, write_fake_mnist, write_idx


@pytest.fixture(autouse=True)
def _no_cache():
    data._CACHE.clear()
    yield
    data._CACHE.clear()


def test_labels_out_of_range_in_mnist_idx(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    labels = np.arange(20, dtype=np.uint8) % 10
    labels[3] = 200
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels, 0x00000801)
    with pytest.raises(DataError, match=r"labels in \S+/train-labels-idx1-ubyte.gz include 200, "
                       r"outside 0..9; the file is corrupt or of another data set$"):
        data.load("mnist", "train", data_dir=tmp_path)


def test_idx_header_dimensions_that_overflow(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    header = (0x00000803).to_bytes(4, "big") + (2 ** 32 - 1).to_bytes(4, "big") * 3
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(header + bytes(100)))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz declares dimensions "
                       r"\(4294967295, 4294967295, 4294967295\) \(\d+ bytes\), more than the data "
                       r"set holds \(7840000 bytes\)"):
        data.load("mnist", "test", data_dir=tmp_path)


def test_gzip_bomb_is_read_no_further_than_its_header_declares(tmp_path):
    write_fake_mnist(tmp_path, n_train=20, n_test=10)
    header = (0x00000803).to_bytes(4, "big") + b"".join(
        d.to_bytes(4, "big") for d in (10, 28, 28))
    # A second gzip member after the header inflates to 2 GiB of zeros.
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header) + deflate_bomb(2 << 30, gzip_format=True))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz holds more data than its "
                       r"header declares \(\(10, 28, 28\), 7840 bytes\); it is corrupt"):
        data.load("mnist", "test", data_dir=tmp_path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


def test_cifar_labels_out_of_range(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = np.zeros((3, data.CIFAR_RECORD), np.uint8)
        records[:, 0] = [1, 12, 3]
        records.tofile(folder / name)
    with pytest.raises(DataError, match=r"labels in \S+/test_batch.bin include 12, outside 0..9"):
        data.load("cifar10", "test", data_dir=tmp_path)


def test_cifar_file_larger_than_a_batch_is_refused_before_reading(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        (folder / name).write_bytes(b"")
    with open(folder / "test_batch.bin", "wb") as f:  # sparse: no disk used
        f.truncate(data.CIFAR_RECORD * 20001)
    with pytest.raises(DataError, match=r"test_batch.bin is truncated or corrupt \(61463073 bytes "
                       r"is not a multiple of 3073 up to 10000 records\)"):
        data.load("cifar10", "test", data_dir=tmp_path)


GOOD_X = np.zeros((3, 28, 28, 1), np.uint8)
GOOD_Y = np.array([0, 1, 9])


@pytest.mark.parametrize("x, y, message", [
    (GOOD_X.astype(np.int32), GOOD_Y, r"images in src are int32 of shape \(3, 28, 28, 1\); "
     r"expected uint8 or float \(N, H, W, C\)"),
    (GOOD_X[..., 0], GOOD_Y, r"images in src are uint8 of shape \(3, 28, 28\)"),
    (np.zeros((3, 32, 32, 3), np.uint8), GOOD_Y, r"images in src have shape \(32, 32, 3\), "
     r"expected \(28, 28, 1\)"),
    (GOOD_X, GOOD_Y[:, None], r"labels in src are int64 of shape \(3, 1\); expected integers "
     r"of shape \(N,\)"),
    (GOOD_X, GOOD_Y.astype(np.float32), r"labels in src are float32 of shape \(3,\)"),
    (GOOD_X, GOOD_Y[:2], "src has 3 images but 2 labels"),
    (GOOD_X, np.array([0, -1, 2]), "labels in src include -1, outside 0..9"),
    (GOOD_X, np.array([0, 10, 2]), "labels in src include 10, outside 0..9"),
])
def test_check_split_arrays(x, y, message):
    with pytest.raises(DataError, match=message):
        data.check_split_arrays(x, y, where="src", num_classes=10, image_shape=(28, 28, 1))


def test_check_split_arrays_accepts_a_good_split():
    data.check_split_arrays(GOOD_X, GOOD_Y.astype(np.uint8), where="src", num_classes=10,
                            image_shape=(28, 28, 1))
