"""Your own data: an ``.npz`` file of arrays, or a folder of images with one sub-folder per
class. ``data.load`` reads them through ``open_data`` exactly as it reads MNIST and CIFAR-10
(same splits, ``limit``, ``start``, class balancing and seeds).

``.npz`` (read with ``allow_pickle=False``: nothing is ever unpickled)
    ``x_train``, ``y_train``, ``x_test``, ``y_test``; or ``x``, ``y`` alone, a single test
    split. Optional ``class_names`` (a string array). Images: uint8 0-255 (or another integer
    type within 0..255), or float in [0, 1]; (N, H, W), (N, H, W, C) or (N, C, H, W) with
    1 to 4 channels. Labels: integers 0..K-1, shape (N,) (or (N, 1), flattened).
Image folder
    ``DIR/<class>/*.png|jpg|...`` (a single test split) or ``DIR/train/<class>/...`` and
    ``DIR/test/<class>/...``. Classes are the sub-folder names in sorted order (Python's
    ``sorted``: by code point, so ``Cat`` before ``bird`` and ``10`` before ``2``; the order
    of Keras' ``image_dataset_from_directory``): label 0 is the first name. The mapping is
    said in the notes (``class_mapping``). Images are
    decoded by Pillow, all of one size; grayscale when every image is, RGB otherwise.

Every accepted file gets a fingerprint (a SHA-256 of the arrays, ``fingerprint``) that
artifacts record, so that scoring on other data than an artifact was crafted on is caught.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import zipfile
from pathlib import Path

import numpy as np

from advbench.core.errors import DataError
from advbench.core.limits import MAX_CLASSES, check_count, check_size, check_zip_members
from advbench.core.types import PathLike

#: File name endings Pillow decodes that count as images in a class folder.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Pillow modes read as 8-bit grayscale or colour (others, e.g. 16-bit, are refused).
_GRAY_MODES = ("1", "L", "LA")
_COLOUR_MODES = ("P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV")
_NPZ_SPLITS = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}


@dataclasses.dataclass(frozen=True)
class UserData:
    """A user's data set, checked: images NHWC (uint8 0-255 or float32 in [0, 1]) and int64
    labels per split ("train" and "test", or "test" alone)."""

    path: Path
    kind: str  # "npz" or "folder"
    splits: dict[str, tuple[np.ndarray, np.ndarray]]
    class_names: tuple[str, ...]
    notes: tuple[str, ...]  # what was detected and assumed, one sentence each
    fingerprint: str

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(next(iter(self.splits.values()))[0].shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def is_user_data(ref: PathLike) -> bool:
    """Whether a data set reference names a file or folder rather than a built-in set."""
    text = str(ref)
    return text.endswith(".npz") or os.sep in text or Path(text).exists()


_CACHE: dict[tuple, UserData] = {}


def open_data(ref: PathLike) -> UserData:
    """The checked data of an ``.npz`` file or image folder (read once per process while the
    file is unchanged). Raises DataError, one line naming the file and the fix."""
    path = Path(ref).expanduser().resolve()
    if not path.exists():
        raise DataError(f"data {ref} does not exist; pass an .npz file or a folder with one "
                        "sub-folder of images per class")
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _CACHE:
        if path.is_dir():
            _CACHE[key] = _read_folder(path)
        elif zipfile.is_zipfile(path):
            _CACHE[key] = _read_npz(path)
        else:
            raise DataError(f"{path} is neither an .npz file nor a folder; pass an .npz of "
                            "x_train/y_train/x_test/y_test (or x/y) or a folder of class "
                            "sub-folders of images")
    return _CACHE[key]


def fingerprint(splits: dict[str, tuple[np.ndarray, np.ndarray]],
                class_names: tuple[str, ...] = ()) -> str:
    """SHA-256 of the arrays (dtype, shape and bytes of every split's images and labels)."""
    digest = hashlib.sha256()
    for split in sorted(splits):
        for array in splits[split]:
            array = np.ascontiguousarray(array)
            digest.update(f"{split}|{array.dtype.str}|{array.shape}|".encode())
            digest.update(array.tobytes())
    digest.update("|".join(class_names).encode())
    return digest.hexdigest()


# -- arrays -----------------------------------------------------------------------------------
def check_images(x: np.ndarray, where: str) -> tuple[np.ndarray, list[str]]:
    """Images as NHWC uint8 (0-255) or float32 ([0, 1]), with what was assumed.

    ``where`` names the file and array in messages. Raises DataError for non-numeric or
    empty arrays, NaN or infinity, values out of range and shapes that are not images.
    """
    notes = []
    if x.dtype == bool or x.dtype.kind not in "uif":
        raise DataError(f"{where} has dtype {x.dtype}; save images as uint8 (0-255) or float "
                        "(0-1)")
    if x.ndim not in (3, 4) or len(x) == 0 or min(x.shape[1:3]) < 1:
        raise DataError(f"{where} has shape {x.shape}; images must be (N, H, W), (N, H, W, C) "
                        "or (N, C, H, W) with N >= 1")
    if x.dtype.kind in "ui":
        low, high = int(x.min()), int(x.max())
        if low < 0 or high > 255:
            raise DataError(f"{where} holds integers from {low} to {high}; integer images must "
                            "be 0-255 (save uint8), or save floats in [0, 1]")
        if x.dtype != np.uint8:
            notes.append(f"{where}: {x.dtype} values within 0..255 read as 8-bit pixels")
            x = x.astype(np.uint8)
        notes.append(f"{where}: uint8 0-255, divided by 255")
    else:
        if not np.isfinite(x).all():
            raise DataError(f"{where} contains NaN or infinity; remove or fix those images")
        lowest, highest = float(x.min()), float(x.max())
        if lowest < 0.0 or highest > 1.0:
            hint = ("divide by 255 (it looks like 0-255 pixels) or save uint8"
                    if lowest >= 0.0 and highest <= 255.0 else "rescale the images to [0, 1]")
            raise DataError(f"{where} holds floats from {lowest:g} to {highest:g}, outside "
                            f"[0, 1]; {hint}")
        notes.append(f"{where}: float in [0, 1], used as is")
        x = x.astype(np.float32, copy=False)
    if x.ndim == 3:
        notes.append(f"{where}: (N, H, W) read as one-channel images")
        return x[..., None], _joined(notes)
    channels_last, channels_first = x.shape[3] <= 4, x.shape[1] <= 4
    if channels_last:
        if channels_first:
            notes.append(f"{where}: shape {x.shape} read as NHWC (channels last)")
        return x, _joined(notes)
    if channels_first:
        notes.append(f"{where}: shape {x.shape} read as NCHW, transposed to NHWC")
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1)), _joined(notes)
    raise DataError(f"{where} has shape {x.shape}: no axis of 1 to 4 channels; save images as "
                    "(N, H, W, C) or (N, C, H, W)")


def _joined(notes: list[str]) -> list[str]:
    """An array's notes as one sentence: "FILE[x]: uint8 0-255, divided by 255; (N, H, W)
    read as one-channel images"."""
    if not notes:
        return []
    where = notes[0].split(": ", 1)[0]
    return [f"{where}: " + "; ".join(note.split(": ", 1)[1] for note in notes)]


def check_labels(y: np.ndarray, count: int, where: str) -> tuple[np.ndarray, list[str]]:
    """Labels as int64 (N,). Raises DataError for non-integers, one-hot rows, negative
    values and a length other than ``count``."""
    notes = []
    if y.ndim == 2 and y.shape[1] == 1:
        notes.append(f"{where}: labels of shape {y.shape} flattened to ({len(y)},)")
        y = y[:, 0]
    if y.ndim != 1:
        fix = ("they look one-hot: save y.argmax(axis=1)" if y.ndim == 2
               else "save one integer class per image")
        raise DataError(f"{where} has shape {y.shape}; labels must be (N,) integers, {fix}")
    if y.dtype == bool or y.dtype.kind not in "ui":
        raise DataError(f"{where} has dtype {y.dtype}; labels must be integers 0..K-1 "
                        "(save y.astype('int64'))")
    if len(y) != count:
        raise DataError(f"{where} has {len(y)} labels for {count} images; give one label per "
                        "image")
    if len(y) and int(y.min()) < 0:
        raise DataError(f"{where} has a negative label ({int(y.min())}); labels must be "
                        "0..K-1")
    return y.astype(np.int64), notes


def _check_classes(path: Path, splits: dict, class_names: tuple[str, ...] | None,
                   notes: list[str]) -> tuple[str, ...]:
    """The class names (given, or "0".."K-1"), checked against every split's labels; the
    largest label is bounded (``limits.MAX_CLASSES``) before any name is made."""
    for split, (_, y) in splits.items():
        check_count(path, f"the largest {split} label", int(y.max()), MAX_CLASSES - 1,
                    f"a label may be (at most {MAX_CLASSES:,} classes)", error=DataError,
                    fix="labels must be 0..K-1")
    top = max(int(y.max()) for _, y in splits.values())
    if class_names is None:
        class_names = tuple(str(i) for i in range(top + 1))
    elif top >= len(class_names):
        raise DataError(f"{path}: label {top} is out of range for {len(class_names)} class "
                        f"names; labels must be 0..{len(class_names) - 1}")
    fit = (splits["train"] if "train" in splits else splits["test"])[1]
    if len(class_names) < 2 or len(np.unique(fit)) < 2:
        raise DataError(f"{path}: fewer than two classes in the labels; a classifier needs "
                        "at least two")
    shapes = {split: x.shape[1:] for split, (x, _) in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{path}: train images are {shapes['train']} but test images are "
                        f"{shapes['test']}; give both splits one image size")
    notes.append(f"{path}: {len(class_names)} classes, images {shapes[next(iter(shapes))]}, "
                 + ", ".join(f"{len(y)} {split}" for split, (_, y) in splits.items()))
    return class_names


# -- .npz -------------------------------------------------------------------------------------
def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each array of an .npz as (shape, dtype), read from its .npy header alone, after the
    zip directory's sizes: nothing is inflated or allocated past the headers. DataError (one
    line) for an array over ``budget.MEMORY_BUDGET`` or larger than its member holds."""
    headers = {}
    total = 0
    with zipfile.ZipFile(path) as archive:
        check_zip_members(path, archive, {}, error=DataError)
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            key = info.filename[:-4]
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                        else np.lib.format.read_array_header_2_0)
                shape, _, dtype = read(member)
                header_bytes = member.tell()
            if dtype.hasobject:
                continue  # np.load refuses it (allow_pickle=False), with its own message
            nbytes = math.prod(shape) * dtype.itemsize
            check_size(path, f"array {key} (shape {shape}, {dtype})", nbytes, error=DataError,
                       fix="the file is edited or corrupt, or save a smaller data set")
            if info.file_size < header_bytes + nbytes:
                raise DataError(f"{path}: array {key} declares shape {shape} ({nbytes} bytes) "
                                f"but holds {info.file_size - header_bytes}; it is truncated "
                                "or edited: save it again with np.savez")
            if key in ("x", "x_train", "x_test"):  # the stages make float32 pixels of them
                check_size(path, f"array {key} (shape {shape}) as float32 pixels",
                           math.prod(shape) * 4, error=DataError, verb="takes",
                           fix="save a smaller data set (fewer images)")
            total += nbytes
            headers[key] = (tuple(shape), dtype)
    check_size(path, "its arrays", total, error=DataError, verb="declare",
               fix="save a smaller data set (fewer images)")
    return headers


def _read_npz(path: Path) -> UserData:
    try:
        _npz_headers(path)
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if all(k in names for pair in _NPZ_SPLITS.values() for k in pair):
                keys = _NPZ_SPLITS
            elif {"x", "y"} <= names:
                keys = {"test": ("x", "y")}
            else:
                raise DataError(f"{path} has arrays {sorted(names)}; it needs x_train, "
                                "y_train, x_test, y_test (or x, y for a test split alone)")
            raw = {split: (npz[xk], npz[yk]) for split, (xk, yk) in keys.items()}
            class_names = npz["class_names"] if "class_names" in names else None
    except DataError:
        raise
    except ValueError as e:
        if "allow_pickle" in str(e) or "pickle" in str(e):
            raise DataError(f"{path} holds an object (pickled) array, which advbench never "
                            "loads; save numeric arrays (np.savez with uint8 or float images "
                            "and integer labels)") from None
        raise DataError(f"cannot read {path}: {e}; save it with np.savez") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise DataError(f"cannot read {path} ({e.__class__.__name__}); it is truncated or not "
                        "an .npz: save it again with np.savez") from None
    notes: list[str] = []
    splits = {}
    for split, (x, y) in raw.items():
        xk, yk = keys[split]
        x, x_notes = check_images(x, f"{path.name}[{xk}]")
        y, y_notes = check_labels(y, len(x), f"{path.name}[{yk}]")
        splits[split] = (x, y)
        notes += x_notes + y_notes
    if class_names is not None:
        if class_names.dtype.kind not in "US" or class_names.ndim != 1:
            raise DataError(f"{path}[class_names] must be a 1-D string array, got "
                            f"{class_names.dtype} {class_names.shape}")
        class_names = tuple(str(c) for c in class_names.astype(str))
        for name in class_names:
            _check_name(path, "class name", name, "save class_names as valid Unicode text")
    if len(splits) == 1:
        notes.append(f"{path.name}: arrays x, y used as the test split")
    class_names = _check_classes(path, splits, class_names, notes)
    return UserData(path, "npz", splits, class_names, tuple(notes),
                    fingerprint(splits, class_names))


# -- image folders ----------------------------------------------------------------------------
def _class_images(folder: Path) -> list[Path]:
    """The images of a class folder, its sub-folders' included, in the order of Keras'
    ``image_dataset_from_directory`` (``os.walk`` without following links, folders sorted by
    path, then file names sorted in each)."""
    walk = sorted(os.walk(folder, followlinks=False), key=lambda entry: entry[0])
    return [Path(top) / name for top, _, names in walk for name in sorted(names)
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and (Path(top) / name).is_file()]


def _read_folder(root: Path) -> UserData:
    if (root / "train").is_dir() and (root / "test").is_dir():
        split_dirs = {"train": root / "train", "test": root / "test"}
    else:
        split_dirs = {"test": root}
    files: dict[str, list[tuple[Path, int]]] = {}
    class_names: tuple[str, ...] | None = None
    nested = 0
    for split, folder in split_dirs.items():
        classes = tuple(sorted(d.name for d in folder.iterdir()
                               if d.is_dir() and not d.name.startswith(".")))
        if not classes:
            raise DataError(f"{folder} has no class sub-folders; put each class's images in "
                            f"{folder / '<class name>'}/ (PNG or JPEG)")
        if class_names is not None and classes != class_names:
            raise DataError(f"{root}: train classes {list(class_names)} differ from test "
                            f"classes {list(classes)}; give both splits the same sub-folders")
        for name in classes:
            _check_name(folder, "class folder name", name, "rename the folder")
        class_names = classes
        files[split] = []
        for label, name in enumerate(classes):
            images = _class_images(folder / name)
            nested += sum(p.parent != folder / name for p in images)
            if not images:
                raise DataError(f"{folder / name} is an empty class folder (no "
                                f"{'/'.join(s[1:] for s in IMAGE_SUFFIXES[:3])} images); add "
                                "images or remove the folder")
            files[split] += [(p, label) for p in images]
    # Sizes and modes from each image's header (Pillow opens lazily), compared and bounded
    # before any image is decoded: a 9000x9000 image among small ones is refused unread.
    size = first = None
    gray = True
    for items in files.values():
        for p, _ in items:
            img_size, img_mode = _header(p)
            if size is None:
                size, first = img_size, p
            elif img_size != size:
                raise DataError(f"{p} is {img_size[0]}x{img_size[1]} but {first} is "
                                f"{size[0]}x{size[1]}; resize all images to one size")
            gray = gray and img_mode in _GRAY_MODES
    assert size is not None
    mode = "L" if gray else "RGB"
    count = sum(len(items) for items in files.values())
    # Bounded as the float32 pixels the stages make of them (data.to_unit_range): 1 MB of
    # compressible PNGs can declare gigabytes.
    shape = (size[1], size[0]) + (() if gray else (3,))
    check_size(root, f"{count} images of {size[0]}x{size[1]} {mode} (as float32 pixels)",
               count * math.prod(shape) * 4, error=DataError,
               fix="use fewer or smaller images", verb="take")
    splits = {}
    for split, items in files.items():
        x = np.empty((len(items),) + shape, np.uint8)  # filled in place: no second copy
        for i, (p, _) in enumerate(items):
            x[i] = np.asarray(_decode(p).convert(mode), dtype=np.uint8)
        splits[split] = (x[..., None] if gray else x,
                         np.asarray([label for _, label in items], np.int64))
    notes = [f"{root}: {'grayscale' if gray else 'RGB'} images decoded by Pillow, uint8 "
             "0-255 divided by 255; classes are the sub-folder names in sorted order: "
             + class_mapping(class_names or ())]
    if nested:
        notes.append(f"{root}: {nested} images in sub-folders of class folders counted with "
                     "their class folder's class (as Keras' image_dataset_from_directory does)")
    class_names = _check_classes(root, splits, class_names, notes)
    return UserData(root, "folder", splits, class_names, tuple(notes),
                    fingerprint(splits, class_names))


def _check_name(where: Path, what: str, name: str, fix: str) -> None:
    """DataError unless a class name is text that artifacts, tables and JSON can hold: a
    folder name in bytes that are not UTF-8 (Python's surrogate escapes) cannot be."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"{where}: {what} {name!r} is not valid UTF-8; {fix} (class names "
                        "are stored as text)") from None


def class_mapping(class_names: tuple[str, ...], shown: int = 30) -> str:
    """``"0 'bird', 1 'cat', ..."``: the class index of each folder name, the first
    ``shown`` of them and then how many more."""
    text = ", ".join(f"{i} {name!r}" for i, name in enumerate(class_names[:shown]))
    more = len(class_names) - shown
    return text + (f", ... ({more} more, {len(class_names)} in all)" if more > 0 else "")


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) and Pillow mode of an image, read from its header (nothing decoded)."""
    return _open(path, decode=False)


def _decode(path: Path):
    return _open(path, decode=True)


def _open(path: Path, decode: bool):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if decode:
                img.load()
            size, mode = img.size, img.mode
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError,
            ValueError) as e:
        raise DataError(f"{path} is not a readable image ({e.__class__.__name__}); fix or "
                        "remove it") from None
    if mode not in _GRAY_MODES + _COLOUR_MODES:
        raise DataError(f"{path} has Pillow mode {mode!r} (e.g. 16-bit); save it as an "
                        "8-bit grayscale or RGB image")
    return img if decode else (size, mode)
