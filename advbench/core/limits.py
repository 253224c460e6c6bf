"""Memory budgets, checked on sizes read from headers and configurations before anything is
inflated, built or decoded.

A file advbench did not write can declare any size: an HDF5 array of 10^9 images, a zip
member that inflates to gigabytes, a Dense layer of millions of units, a label of 10^9. Every
reader checks what the file declares against these bounds first (``check_size``,
``check_count``), so that a small file cannot make the process allocate gigabytes and be
killed without a message; the refusal is one line naming the file, the field and the limit.
"""

from __future__ import annotations

import contextlib
import random
import zipfile
from typing import Iterator, Type

import numpy as np

from advbench.core.errors import AdvbenchError

GiB = 2 ** 30
MiB = 2 ** 20
#: The most bytes one array, one model's weights or one split of a data set may take in
#: memory. No artifact advbench writes comes near it (10,000 CIFAR-10 images in float32 are
#: 123 MB; the largest zoo model 2 MB).
MEMORY_BUDGET = 4 * GiB
#: The most bytes of a model's JSON configuration (a Keras config.json or an artifact's
#: model_config); keras.applications' largest, NASNetLarge, is about 1 MB.
MAX_CONFIG_BYTES = 64 * MiB
#: The most classes a data set may have (ImageNet-21k has 21,841).
MAX_CLASSES = 100_000


def size_text(nbytes: float) -> str:
    """Bytes in words: "3 GiB", "64 MiB", "512 bytes"."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{int(nbytes)} bytes"


def check_size(where: object, field: str, nbytes: int, limit: int = MEMORY_BUDGET, *,
               error: Type[AdvbenchError] = AdvbenchError,
               fix: str = "the file was edited or is corrupt", verb: str = "declares") -> None:
    """``error`` (one line: the file, the field, the size and the limit) when ``nbytes`` >
    ``limit``; ``where`` names the file."""
    if nbytes > limit:
        raise error(f"{where}: {field} {verb} {size_text(nbytes)}, more than the "
                    f"{size_text(limit)} advbench allows; {fix}")


def check_count(where: object, field: str, count: int, limit: int, what: str, *,
                error: Type[AdvbenchError] = AdvbenchError,
                fix: str = "the file was edited or is corrupt") -> None:
    """``error`` (one line) when a declared ``count`` exceeds ``limit`` (``what``: the limit
    in words, e.g. "images of the mnist test split")."""
    if count > limit:
        raise error(f"{where}: {field} is {count:,}, more than the {limit:,} {what}; {fix}")


def check_zip_members(path: object, archive: zipfile.ZipFile, limits: dict[str, int], *,
                      default: int = MEMORY_BUDGET,
                      error: Type[AdvbenchError] = AdvbenchError) -> None:
    """Refuse a zip (a .keras or .npz file) whose members declare more than ``limits[name]``
    (``default`` for the others) or ``default`` in all once inflated.

    A member may lie about its size: read it with ``read_zip_member``, whose reads are
    bounded (``ZipFile.read`` inflates up to 2 GiB at a time before comparing)."""
    total = 0
    for info in archive.infolist():
        check_size(path, f"zip member {info.filename}", info.file_size,
                   limits.get(info.filename, default), error=error,
                   fix="it is a compression bomb or corrupt: refusing it")
        total += info.file_size
    check_size(path, "its zip members", total, default, error=error,
               fix="it is a compression bomb or corrupt: refusing it")


def read_zip_member(path: object, archive: zipfile.ZipFile, name: str, limit: int, *,
                    error: Type[AdvbenchError] = AdvbenchError) -> bytes:
    """The bytes of member ``name``, inflating no more than its declared size (at most
    ``limit``): a member declaring more is refused (one line), one lying about its size is a
    CRC error (``zipfile.BadZipFile``) once its declared size is read."""
    info = archive.getinfo(name)
    check_size(path, f"zip member {name}", info.file_size, limit, error=error,
               fix="it is a compression bomb or corrupt: refusing it")
    with archive.open(info) as member:
        data = member.read(info.file_size + 1)  # a liar fails its CRC at the declared size
    return data


class PendingVariables:
    """The variables created inside ``deferred_variables``, not yet allocated."""

    def __init__(self) -> None:
        self.variables: list = []

    def initialize(self) -> None:
        """Allocate them (with their initializers); after this they are ordinary variables."""
        for variable in self.variables:
            variable._deferred_initialize()
        self.variables = []


@contextlib.contextmanager
def deferred_variables(*, restore_random: bool = False) -> Iterator[PendingVariables]:
    """Build Keras models whose variables have shapes but no memory until
    ``pending.initialize()``: what the config declares can be checked before anything the
    size of a layer is allocated. Variables never initialized are dropped on exit (Keras
    would otherwise allocate them at the next stateless scope of the process).
    ``restore_random``: leave Python's and NumPy's global generators as they were (for a
    build made only to be checked: Keras draws initializer seeds from them, and a check must
    not change the weights a seeded run draws next)."""
    import keras
    from keras.src.backend.common import global_state

    key = "uninitialized_variables"
    before = global_state.get_global_attribute(key)
    global_state.set_global_attribute(key, [])
    pending = PendingVariables()
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        with keras.StatelessScope(initialize_variables=False):
            try:
                yield pending
            finally:
                pending.variables = list(global_state.get_global_attribute(key) or [])
    finally:
        global_state.set_global_attribute(key, before)
        if restore_random:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
