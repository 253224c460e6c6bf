"""Contracts over the data-set registry (``advbench.data.DATASETS``): every data set loads
through a synthetic copy of its canonical files (no real data needed), with its declared
shape, classes and splits, the pixels and labels written read back exactly; and every data set
has its budgets (``attacks.budgets``) and the per-data-set defaults of the defenses that have
some. A data set added to the registry without a fixture writer here fails the first test."""

import numpy as np
import pytest

from advbench import data
from advbench.attacks import budgets
from advbench.defenses import DEFENSE_SPECS
from conftest import write_idx

N_TRAIN, N_TEST = 50, 20


def write_mnist(folder, splits):
    """The four IDX files of MNIST's canonical layout (gzipped)."""
    folder.mkdir(parents=True)
    names = {"train": "train", "test": "t10k"}
    for split, (x, y) in splits.items():
        write_idx(folder / f"{names[split]}-images-idx3-ubyte", x[..., 0], 0x00000803)
        write_idx(folder / f"{names[split]}-labels-idx1-ubyte", y, 0x00000801)


def write_cifar10(folder, splits):
    """CIFAR-10's binary layout: five training batches and a test batch of records
    (label byte, then the planar 3x32x32 pixels)."""
    folder = folder / data.CIFAR_BIN_DIR
    folder.mkdir(parents=True)
    x, y = splits["train"]
    parts = np.array_split(np.arange(len(y)), 5)
    files = [(f"data_batch_{i + 1}.bin", x[p], y[p]) for i, p in enumerate(parts)]
    files.append(("test_batch.bin", *splits["test"]))
    for name, images, labels in files:
        planar = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)
        np.concatenate([labels[:, None], planar], axis=1).astype(np.uint8).tofile(folder / name)


#: How a synthetic copy of each registered data set's files is written.
WRITERS = {"mnist": write_mnist, "cifar10": write_cifar10}


def synthetic(info, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *info.input_shape), dtype=np.uint8)
    y = (np.arange(n) % info.num_classes).astype(np.uint8)
    return x, y


def test_every_data_set_has_a_fixture_writer():
    assert sorted(WRITERS) == sorted(data.DATASETS)


@pytest.mark.parametrize("name", data.DATASETS)
def test_every_data_set_loads_through_a_synthetic_fixture(name, tmp_path):
    info = data.DATASETS[name]
    assert info.name == name and len(info.class_names) == info.num_classes
    splits = {"train": synthetic(info, N_TRAIN, 1), "test": synthetic(info, N_TEST, 2)}
    WRITERS[name](tmp_path / name, splits)
    assert data.locate(name, tmp_path) is not None
    seen = []
    for split in data.SPLITS:
        x, y, indices = data.load(name, split, data_dir=tmp_path)
        raw_x, raw_y = splits["test" if split == "test" else "train"]
        assert x.dtype == np.float32 and x.shape[1:] == info.input_shape
        assert y.dtype == np.int64 and indices.dtype == np.int64
        np.testing.assert_array_equal(x, raw_x[indices].astype(np.float32) / 255)
        np.testing.assert_array_equal(y, raw_y[indices])
        if split != "test":
            seen.append(indices)
    # train and validation split the original training set.
    assert sorted(np.concatenate(seen).tolist()) == list(range(N_TRAIN))
    x, y, _ = data.load(name, "test", data_dir=tmp_path, limit=info.num_classes)
    assert sorted(y.tolist()) == list(range(info.num_classes))  # class-balanced
    assert len(data.fingerprint(name, tmp_path)) == 64


@pytest.mark.parametrize("name", data.DATASETS)
def test_every_data_set_has_its_budgets_and_defense_defaults(name):
    assert budgets.SHAPES[name] == data.DATASETS[name].input_shape
    assert set(budgets.BUDGETS[name]) >= {"linf", "l2"}
    missing = [defense for defense, spec in DEFENSE_SPECS.items()
               if spec.dataset_defaults and name not in spec.dataset_defaults]
    assert missing == []
