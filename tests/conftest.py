"""Shared fixtures: a tiny synthetic MNIST in the canonical IDX layout, and tiny models.

The synthetic digits are learnable in a few steps (class c lights a block at a position that
depends on c), so tests can check "better than chance" without real data.
"""

from __future__ import annotations

import errno
import gzip
import zlib
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
__import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads


def synthetic_digits(n: int, seed: int, shape=(28, 28)) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (n, H, W) and labels (n,): class c is a bright 6x6 block at one of ten
    positions, on a noisy background."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n,) + shape).astype(np.float64)
    for i, c in enumerate(labels):
        row, col = 2 + (c // 5) * 12, 1 + (c % 5) * 5
        images[i, row:row + 6, col:col + 5] += 180
    return np.clip(images, 0, 255).astype(np.uint8), labels.astype(np.uint8)


def write_digits_npz(path, n_train: int, n_test: int):
    """The synthetic digits as a user's .npz (uint8 (N, 28, 28), train and test splits)."""
    x_train, y_train = synthetic_digits(n_train, 1)
    x_test, y_test = synthetic_digits(n_test, 2)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def write_idx(path, array: np.ndarray, magic: int, compress: bool = True) -> None:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.tobytes()
    if compress:
        path = str(path) + ".gz"
        payload = gzip.compress(payload)
    with open(path, "wb") as f:
        f.write(payload)


def write_fake_mnist(folder, n_train: int = 400, n_test: int = 100, compress: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        x, y = synthetic_digits(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte", x, 0x00000803, compress)
        write_idx(folder / f"{split}-labels-idx1-ubyte", y, 0x00000801, compress)
    return folder


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory):
    """A data folder holding a tiny synthetic MNIST under mnist/ (gzipped IDX)."""
    root = tmp_path_factory.mktemp("data")
    write_fake_mnist(root / "mnist")
    return root


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test reads the user's data or model folders by accident."""
    monkeypatch.delenv("ADVBENCH_DATA", raising=False)
    monkeypatch.delenv("ADVBENCH_MODELS", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))


@pytest.fixture(scope="session")
def trained_tiny_cnn(fake_data_dir, tmp_path_factory):
    """A paper CNN trained for one epoch on the synthetic digits, saved as an artifact."""
    from advbench.run.artifacts import save_model
    from advbench.defenses import make_defense
    from advbench.run.train import TrainConfig, train

    config = TrainConfig(epochs=2, data_dir=str(fake_data_dir), batch_size=32)
    model, meta = train(config, make_defense("none", "mnist"))
    path = tmp_path_factory.mktemp("models") / "mnist-cnn-relu-none.h5"
    meta["content_hash"] = save_model(path, model, meta)
    return path, model, meta


def save_dense_mnist(path, seed: int):
    """An untrained dense MNIST model saved at ``path``: (path, model, metadata)."""
    import keras

    from advbench.run.artifacts import save_model

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    model = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    meta = {"dataset": "mnist", "zoo_name": "dense"}
    meta["content_hash"] = save_model(path, model, meta)
    return path, model, meta


@pytest.fixture(scope="session")
def dense_mnist_model(tmp_path_factory):
    """An untrained dense MNIST model, saved: black-box for the tiny CNN's artifacts, and it
    misclassifies most samples."""
    return save_dense_mnist(tmp_path_factory.mktemp("dense") / "dense.h5", seed=5)


# Small 8x8 images for attack tests: noisy copies of one random prototype per class.
PROTOTYPE_SHAPE = (8, 8, 1)
PROTOTYPE_CLASSES = 4


def prototype_images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of one fixed random 8x8 prototype per class, in [0, 1]."""
    prototypes = np.random.default_rng(0).uniform(0.0, 1.0,
                                                  (PROTOTYPE_CLASSES,) + PROTOTYPE_SHAPE)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, PROTOTYPE_CLASSES, count)
    x = np.clip(prototypes[labels] + rng.normal(0.0, 0.25, (count,) + PROTOTYPE_SHAPE), 0, 1)
    return x.astype(np.float32), labels.astype(np.int64)


@pytest.fixture(scope="session")
def tiny_model():
    """A small conv net trained for a few seconds on the prototype classes (logits out)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(PROTOTYPE_SHAPE),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(PROTOTYPE_CLASSES),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = prototype_images(1024, seed=1)
    model.fit(x, y, batch_size=64, epochs=5, verbose=0)
    return model


def deflate_bomb(inflated_bytes: int, *, gzip_format: bool = False) -> bytes:
    """A zlib (or, with ``gzip_format``, gzip) stream of zeros that inflates to
    ``inflated_bytes``, built without ever holding them: after a full flush, compressing the
    same zeros again gives the same bytes, so one segment is repeated. The trailing checksum
    is the one of the first segments only: a reader must refuse long before reaching it."""
    segment = 4 << 20
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31 if gzip_format else 15)
    zeros = bytes(segment)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    count = max(inflated_bytes // segment - 1, 1)
    return first + repeated * count + compressor.flush()


@pytest.fixture
def fill_disk(monkeypatch):
    """Call it to make the disk full from then on: the one writer's low-level flush (fsync,
    where delayed allocation reports it) raises ENOSPC, as on a full file system."""
    def fill():
        from advbench.core import files

        def full(_):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        monkeypatch.setattr(files, "_fsync", full)
    return fill
def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """The fraction of x that the model classifies as y."""
    return float(np.mean(np.argmax(model(x, training=False).numpy(), axis=1) == y))


def perturbation_size(x: np.ndarray, x_adv: np.ndarray, norm: str) -> np.ndarray:
    """Per-sample L-inf, L2 or L1 norm of x_adv - x, in float64 (as budgets are checked)."""
    delta = (x_adv.astype(np.float64) - x).reshape(len(x), -1)
    if norm == "l1":
        return np.abs(delta).sum(axis=1)
    return np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)


def behind(model, layer):
    """``model`` applied after ``layer`` (a Keras layer on the prototype images)."""
    import keras

    inputs = keras.Input(PROTOTYPE_SHAPE)
    return keras.Model(inputs, model(layer(inputs)))


def quantiser():
    """A 5-level input quantiser with no gradient (stop_gradient): every input gradient
    through it is zero, so gradient attacks cannot move."""
    import keras
    import tensorflow as tf

    return keras.layers.Lambda(lambda t: tf.stop_gradient(tf.round(t * 4.0) / 4.0))


def input_noise():
    """Fresh Gaussian noise (std 0.05) on the input at every call: a randomised model."""
    import keras
    import tensorflow as tf

    return keras.layers.Lambda(lambda t: t + tf.random.normal(tf.shape(t), stddev=0.05))


# -- memory ------------------------------------------------------------------------------------
def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak_rss() -> int:
    """Resets the kernel's resident-memory high-water mark of this process (Linux >= 4.0:
    ``/proc/self/clear_refs``) and returns the resident memory now, in KiB. Without the reset
    an earlier test's peak (TensorFlow's, say) would hide any growth below it, and a memory
    test could not fail."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def peak_rss() -> int:
    """The resident-memory high-water mark since ``reset_peak_rss``, in KiB."""
    return _status_kib("VmHWM")
