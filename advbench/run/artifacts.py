"""HDF5 artifacts: every stage writes one, the next stage reads it.

Common to all kinds: root attrs ``schema`` (``advbench.model``, ``advbench.attack``,
``advbench.evaluation``), ``schema_version``, ``advbench_version``, ``created``. Files are
written to a temporary file beside the target and renamed into place, so a crash or Ctrl-C
never leaves a half-written artifact. The layouts are documented in docs/artifacts.md.

Models are stored as their Keras config (JSON) plus one dataset per weight. Loading rebuilds
the model from that config in Keras' safe mode and refuses any layer that is not a Keras
built-in or one of advbench's registered layers, so no code from a file ever runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import importlib
import json
import math
import os
import uuid
import zlib
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from advbench import __version__, data
from advbench.core.errors import AdvbenchError, ArtifactError
from advbench.core.files import check_writable, write_bytes
from advbench.core.limits import MEMORY_BUDGET, check_count, check_size, deferred_variables
from advbench.core.types import Model, PathLike

SCHEMA_VERSION = 1
MODEL_SCHEMA = "advbench.model"
ATTACK_SCHEMA = "advbench.attack"
EVALUATION_SCHEMA = "advbench.evaluation"
CURVE_SCHEMA = "advbench.curve"
AUDIT_SCHEMA = "advbench.audit"
CERTIFICATION_SCHEMA = "advbench.certification"
# Arrays every complete attack artifact holds.
ATTACK_ARRAYS = ("x_adv", "y", "indices", "completed")


# -- writing --------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike, what: str = "artifact") -> Iterator[h5py.File]:
    """Open an HDF5 file in memory for writing; on success its bytes are written to ``path``
    by the one atomic writer (``files.write_bytes``: a temporary file beside ``path``,
    fsynced and renamed into place), on any error (including KeyboardInterrupt) nothing is
    written and ``path`` is left as it was. OS errors (a full disk, a read-only folder)
    become one OutputError line.

    In memory because HDF5's C library, writing a file on a full disk, fails inside its
    flush and close and can crash the process (segmentation fault) or report the error with
    line breaks; a disk write of ours fails as a plain OSError. The file's size in memory is
    about its size on disk (arrays of 3+ dimensions are compressed as they are written)."""
    check_writable(path, what)  # before the arrays are built, as the file writer checks
    # backing_store=False: HDF5 never touches the disk; the image is read before closing.
    # The name only identifies the file to HDF5: unique, as two files open under one name
    # are refused ("unable to truncate a file which is already open").
    f = h5py.File(f"advbench-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False)
    try:
        yield f
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    write_bytes(path, image, what)


def stamp(f: h5py.File, schema: str) -> None:
    f.attrs["schema"] = schema
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["advbench_version"] = __version__
    f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def set_attrs(f: h5py.File, attrs: dict[str, Any]) -> None:
    """Store scalars and strings as attrs; dicts and lists as JSON strings (which escape
    everything). A path's bytes that are not UTF-8 (Python's surrogate escapes, which HDF5
    cannot encode) are stored as ``\\xff`` escapes."""
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)):
            f.attrs[key] = json.dumps(value)
        elif isinstance(value, str):
            f.attrs[key] = value.encode("utf-8", "surrogateescape").decode("utf-8",
                                                                           "backslashreplace")
        else:
            f.attrs[key] = value


# Attributes are scalars, strings or short lists; a larger one is refused unread.
MAX_ATTR_ELEMENTS = 4096


#: Attributes advbench writes as JSON objects or arrays, and the type they must read back as.
JSON_ATTRS: dict[str, type] = {"attack_params": dict, "model_provenance": dict,
                               "defense_params": dict, "class_names": list}


def read_attrs(f: h5py.File) -> dict[str, Any]:
    """The root attributes, strings decoded and JSON strings parsed; an attribute declaring
    more than MAX_ATTR_ELEMENTS values is an ArtifactError before it is read."""
    out = {}
    for key in f.attrs:
        shape = f.attrs.get_id(key).shape or ()
        if math.prod(shape) > MAX_ATTR_ELEMENTS:
            raise ArtifactError(f"{f.filename}: attribute {key} declares shape {shape}, more "
                                f"than the {MAX_ATTR_ELEMENTS} values advbench writes; the file "
                                "was edited or is corrupt")
        value = f.attrs[key]
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        kind = JSON_ATTRS.get(key)
        if kind is not None and value is not None and not isinstance(value, kind):
            # advbench writes these as JSON objects/arrays; anything else (a truncated
            # string, a number) was edited in and would surface as a traceback far away.
            raise ArtifactError(f"{f.filename}: attribute {key} is not a JSON "
                                f"{'object' if kind is dict else 'array'}; the file was edited "
                                "or is corrupt: run the stage that wrote it again")
        out[key] = value
    return out


# -- reading --------------------------------------------------------------------------------
@contextlib.contextmanager
def open_artifact(path: str | os.PathLike, schema: str) -> Iterator[h5py.File]:
    """Open an advbench artifact read-only, checking that it is of the expected kind."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; check the path")
    if path.is_dir():
        raise ArtifactError(f"{path} is a folder, not an artifact; give the .h5 file inside")
    if not _has_hdf5_signature(path):
        raise ArtifactError(f"{path} is not an HDF5 file, so not an advbench artifact; check "
                            "the path")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ArtifactError(f"{path} is not a readable HDF5 file ({e.__class__.__name__}); it "
                            "is truncated or corrupt: delete it and run the stage again") from None
    with f:
        found = f.attrs.get("schema")
        if isinstance(found, bytes):
            found = found.decode()
        if found != schema:
            what = f"a {found!r} artifact" if found else "not an advbench artifact"
            raise ArtifactError(f"{path} is {what}; expected a {schema!r} artifact")
        version = int(f.attrs.get("schema_version", -1))
        if version > SCHEMA_VERSION:
            raise ArtifactError(f"{path} has schema version {version}, newer than this advbench "
                                f"({SCHEMA_VERSION}); upgrade advbench")
        yield f


def _has_hdf5_signature(path: Path) -> bool:
    """Whether the file starts with the HDF5 signature (or has it after a user block, at
    offset 512, 1024, ...): files without it are something else, not a damaged artifact."""
    try:
        return bool(h5py.is_hdf5(path))
    except OSError:
        return False


def artifact_kind(path: str | os.PathLike) -> str | None:
    """The schema name of an advbench artifact, or None if it is not one."""
    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get("schema")
    except OSError:
        return None
    return found.decode() if isinstance(found, bytes) else found


# -- validation: what each schema allows, checked before any data is read -------------------
# No artifact advbench writes holds an array this large; a larger declared shape is refused
# before h5py allocates it (10^9 MNIST images would be 3 TB).
MAX_ARRAY_BYTES = MEMORY_BUDGET
# The HDF5 filters advbench writes; anything else (szip, lzf, plugins) is not ours.
ALLOWED_FILTERS = {h5py.h5z.FILTER_DEFLATE: "gzip", h5py.h5z.FILTER_SHUFFLE: "shuffle"}


@dataclasses.dataclass(frozen=True)
class Field:
    """One array of an artifact: allowed dtypes (numpy kinds, or one exact dtype), its rank,
    whether its first axis has one row per sample (``num_samples``), and its value range
    (checked after reading; None: unbounded)."""

    kinds: str = "fiub"
    dtype: str | None = None
    ndim: int | None = None
    per_sample: bool = True
    low: float | None = None
    high: float | None = None


@dataclasses.dataclass(frozen=True)
class Attr:
    """One root attribute: "int", "float", "bool" or "str"; ``low``: smallest value allowed."""

    kind: str
    required: bool = False
    low: float | None = None


_SAMPLE_ATTRS = {
    "num_samples": Attr("int", required=True, low=0), "limit": Attr("int", low=1),
    "start": Attr("int", low=0), "seed": Attr("int", low=0), "batch_size": Attr("int", low=1),
    "complete": Attr("bool"), "key": Attr("str"), "dataset": Attr("str"), "split": Attr("str"),
}
SCHEMA_FIELDS: dict[str, dict[str, Field]] = {
    ATTACK_SCHEMA: {
        "x_adv": Field(dtype="float32", ndim=4, low=0.0, high=1.0),
        "y": Field(kinds="iu", ndim=1, low=0), "indices": Field(kinds="iu", ndim=1, low=0),
        "completed": Field(kinds="b", ndim=1), "success": Field(kinds="b", ndim=1),
        "success_label": Field(kinds="b", ndim=1),
        "pred_clean": Field(kinds="iu", ndim=1, low=-1),
        "pred_adv": Field(kinds="iu", ndim=1, low=-1),
        "target": Field(kinds="iu", ndim=1, low=-1),
        "l0": Field(kinds="f", ndim=1, low=0.0), "l2": Field(kinds="f", ndim=1, low=0.0),
        "linf": Field(kinds="f", ndim=1, low=0.0),
    },
    CURVE_SCHEMA: {
        "eps": Field(kinds="f", ndim=1, per_sample=False, low=0.0),
        "y": Field(kinds="iu", ndim=1, low=0), "indices": Field(kinds="iu", ndim=1, low=0),
    },
    EVALUATION_SCHEMA: {},
    AUDIT_SCHEMA: {
        "y": Field(kinds="iu", ndim=1, low=0), "indices": Field(kinds="iu", ndim=1, low=0),
        "pred_clean": Field(kinds="iu", ndim=1, low=0),
    },
    CERTIFICATION_SCHEMA: {
        "y": Field(kinds="iu", ndim=1, low=0), "indices": Field(kinds="iu", ndim=1, low=0),
        "completed": Field(kinds="b", ndim=1), "correct": Field(kinds="b", ndim=1),
        "pred": Field(kinds="iu", ndim=1, low=-1),
        "pa_lower": Field(kinds="f", ndim=1, low=0.0, high=1.0),
        "radius": Field(kinds="f", ndim=1, low=0.0),
        "count_top": Field(kinds="iu", ndim=1, low=0),
        "counts0": Field(kinds="iu", ndim=2, low=0), "counts": Field(kinds="iu", ndim=2, low=0),
    },
}
SCHEMA_ATTRS: dict[str, dict[str, Attr]] = {
    ATTACK_SCHEMA: {**_SAMPLE_ATTRS, "targeted": Attr("bool"), "wall_time_s": Attr("float")},
    CURVE_SCHEMA: _SAMPLE_ATTRS,
    EVALUATION_SCHEMA: {"kind": Attr("str")},
    AUDIT_SCHEMA: {**_SAMPLE_ATTRS, "eps": Attr("float", required=True, low=0.0),
                   "norm": Attr("str", required=True), "verdict": Attr("str", required=True)},
    CERTIFICATION_SCHEMA: {**_SAMPLE_ATTRS, "sigma": Attr("float", required=True, low=0.0),
                           "n0": Attr("int", required=True, low=1),
                           "n": Attr("int", required=True, low=1),
                           "alpha": Attr("float", required=True, low=0.0),
                           "mode": Attr("str", required=True), "wall_time_s": Attr("float")},
}
# Arrays under extras/ (attack-specific per-sample values) follow this rule; an audit's
# robust/<attack> masks the next one.
_EXTRAS = Field()
_ROBUST = Field(kinds="b", ndim=1)


def _field_of(schema: str, name: str) -> Field | None:
    if name.startswith("extras/") and schema == ATTACK_SCHEMA:
        return _EXTRAS
    if name.startswith("robust/") and schema == AUDIT_SCHEMA:
        return _ROBUST
    return SCHEMA_FIELDS.get(schema, {}).get(name)


def check_attrs(path: PathLike, attrs: dict[str, Any], schema: str) -> None:
    """ArtifactError unless every attribute the schema knows has its type and range."""
    for name, rule in SCHEMA_ATTRS.get(schema, {}).items():
        if name not in attrs:
            if rule.required:
                raise ArtifactError(f"{path}: attribute {name} is missing; the file is not "
                                    "a complete advbench artifact: run the stage again")
            continue
        value = attrs[name]
        ok = {"int": isinstance(value, int) and not isinstance(value, bool),
              "float": isinstance(value, (int, float)) and not isinstance(value, bool),
              "bool": isinstance(value, bool) or value in (0, 1),
              "str": isinstance(value, str)}[rule.kind]
        if ok and rule.low is not None and value < rule.low:
            ok = False
        if not ok:
            wanted = {"int": "an integer", "float": "a number", "bool": "true or false",
                      "str": "a string"}[rule.kind]
            if rule.low is not None:
                wanted += f" >= {rule.low:g}"
            raise ArtifactError(f"{path}: attribute {name} is {value!r}, expected {wanted}; "
                                "the file was edited or is corrupt: run the stage again")


def check_dataset(path: PathLike, name: str, ds: h5py.Dataset, *, kinds: str = "fiub",
                  dtype: str | None = None, ndim: int | None = None,
                  max_bytes: int = MAX_ARRAY_BYTES) -> None:
    """Refuse, from its header alone, an array advbench could not have written or that would
    not fit: wrong dtype or rank, a declared size over ``max_bytes``, a filter we never use,
    or a compressed chunk that inflates past its declared size (a compression bomb: HDF5's
    gzip filter would grow its buffer without limit). Reads only the compressed chunks."""
    where = f"{path}: {name}"
    if dtype is not None and ds.dtype != np.dtype(dtype):
        raise ArtifactError(f"{where} is {ds.dtype}, expected {dtype}; the file was edited or "
                            "not written by advbench: run the stage again")
    if ds.dtype.kind not in kinds:
        raise ArtifactError(f"{where} has dtype {ds.dtype}, expected a "
                            f"{'/'.join(_KIND_NAMES[k] for k in kinds)} array")
    if ndim is not None and ds.ndim != ndim:
        raise ArtifactError(f"{where} has shape {ds.shape}, expected {ndim} dimensions")
    nbytes = math.prod(ds.shape) * ds.dtype.itemsize
    if nbytes > max_bytes:
        raise ArtifactError(f"{where} declares shape {ds.shape} ({nbytes / 2 ** 30:.3g} GiB), "
                            f"more than the {max_bytes / 2 ** 30:g} GiB advbench allows; the "
                            "file was edited or is corrupt")
    plist = ds.id.get_create_plist()
    if ds.is_virtual or plist.get_external_count():
        # Its bytes would be read from whatever file it names (a key, /dev/zero, a FIFO).
        raise ArtifactError(f"{where} keeps its data in another file (HDF5 "
                            f"{'virtual dataset' if ds.is_virtual else 'external storage'}), "
                            "which advbench never writes; refusing it")
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    for code in filters:
        if code not in ALLOWED_FILTERS:
            raise ArtifactError(f"{where} uses HDF5 filter {code}, which advbench never writes "
                                f"(only {', '.join(ALLOWED_FILTERS.values())}); refusing it")
    if h5py.h5z.FILTER_DEFLATE in filters and ds.chunks is not None:
        _check_chunks(where, ds, filters.index(h5py.h5z.FILTER_DEFLATE))


_KIND_NAMES = {"f": "float", "i": "integer", "u": "unsigned integer", "b": "boolean"}


def _check_chunks(where: str, ds: h5py.Dataset, deflate_index: int) -> None:
    """Inflate each gzip chunk with a bounded decompressor: at most its declared size + 1."""
    limit = math.prod(ds.chunks) * ds.dtype.itemsize
    dsid = ds.id
    for i in range(dsid.get_num_chunks()):
        offset = dsid.get_chunk_info(i).chunk_offset
        mask, raw = dsid.read_direct_chunk(offset)
        if mask & (1 << deflate_index):  # this chunk skipped the gzip filter
            size = len(raw)
        else:
            try:
                size = len(zlib.decompressobj().decompress(raw, limit + 1))
            except zlib.error:
                raise ArtifactError(f"{where} has a corrupt compressed chunk at {offset}; the "
                                    "file is damaged: run the stage again") from None
        if size > limit:
            raise ArtifactError(f"{where} has a chunk at {offset} that inflates past its "
                                f"declared {limit} bytes (a compression bomb?); refusing it")


def _data_info(name: Any) -> data.DatasetInfo | None:
    """The sizes and image shape of the data set an artifact names: a built-in set's, or a
    user's file or folder read (checked, and cached for the process) when it is still
    there; None when it is gone or unreadable (the stages that need its images say so)."""
    if not isinstance(name, str) or not name:
        return None
    if name in data.DATASETS:
        return data.DATASETS[name]
    try:
        return data.dataset_info(name)
    except AdvbenchError:
        return None


def check_arrays(path: PathLike, f: h5py.File, schema: str, attrs: dict[str, Any],
                 names: list[str] | None = None) -> None:
    """Check every array (those in ``names``, or all) against ``schema`` before reading:
    structure, dtypes, ranks, sizes, one row per sample (``num_samples``), and images of
    the data set's shape. ArtifactError naming the file and field otherwise."""
    check_attrs(path, attrs, schema)
    n = attrs.get("num_samples")
    info = _data_info(attrs.get("dataset"))
    split = attrs.get("split")
    if info is not None and n is not None and split in ("train", "test"):
        # Per-sample arrays are sized by the split before anything is read (1.3M samples
        # of a 10,000-image split fit under MEMORY_BUDGET array by array).
        size = info.train_size if split == "train" else info.test_size
        check_count(path, "attribute num_samples", n, size,
                    f"images of the {data.display_name(info.name)} {split} split",
                    error=ArtifactError,
                    fix="the file was edited or is corrupt: run the stage again")
    found: list[tuple[str, h5py.Dataset]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and (names is None or name in names):
            found.append((name, obj))
        elif isinstance(obj, h5py.Group) and name in SCHEMA_FIELDS.get(schema, {}):
            raise ArtifactError(f"{path}: {name} is a group, expected an array")

    f.visititems(visit)
    for name, ds in found:
        field = _field_of(schema, name) or Field(ndim=None, per_sample=False)
        check_dataset(path, name, ds, kinds=field.kinds, dtype=field.dtype, ndim=field.ndim)
        if field.per_sample and n is not None and (ds.ndim == 0 or ds.shape[0] != n):
            raise ArtifactError(f"{path}: {name} has {ds.shape[0] if ds.ndim else 0} rows but "
                                f"the artifact holds {n} samples; the file is damaged or "
                                "edited: run the stage again")
        if name == "x_adv" and info is not None and ds.shape[1:] != info.input_shape:
            raise ArtifactError(f"{path}: x_adv holds images of shape {ds.shape[1:]}, but "
                                f"{data.display_name(info.name)} images are {info.input_shape}")


def check_values(path: PathLike, schema: str, attrs: dict[str, Any],
                 arrays: dict[str, np.ndarray]) -> None:
    """Value ranges, once read: x_adv finite and in [0, 1], labels of the data set's
    classes, indices >= 0 (ArtifactError naming the field otherwise)."""
    info = data.DATASETS.get(attrs.get("dataset", ""))
    for name, value in arrays.items():
        field = _field_of(schema, name)
        if field is None or value.size == 0 or value.dtype.kind == "b":
            continue
        high = field.high
        if name in ("y", "pred_clean", "pred_adv", "target", "pred") and info is not None:
            high = info.num_classes - 1
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ArtifactError(f"{path}: {name} holds NaN or infinite values; the file is "
                                "damaged or edited: run the stage again")
        lo, hi = value.min(), value.max()
        if (field.low is not None and lo < field.low) or (high is not None and hi > high):
            span = f"[{field.low:g}, {high:g}]" if high is not None else f">= {field.low:g}"
            raise ArtifactError(f"{path}: {name} holds values from {lo:g} to {hi:g}, expected "
                                f"{span}; the file is damaged or edited: run the stage again")


# -- models ---------------------------------------------------------------------------------
def _model_hash(config_json: str, weights: list[np.ndarray]) -> str:
    h = hashlib.sha256(config_json.encode())
    for w in weights:
        h.update(np.ascontiguousarray(w).tobytes())
    return h.hexdigest()


def save_model(path: str | os.PathLike, model: Model, metadata: dict[str, Any]) -> str:
    """Write a model artifact atomically; returns its content hash."""
    import keras

    config_json = json.dumps(keras.saving.serialize_keras_object(model))
    weights = [np.asarray(w) for w in model.get_weights()]
    content_hash = _model_hash(config_json, weights)
    with atomic_h5(path) as f:
        stamp(f, MODEL_SCHEMA)
        set_attrs(f, metadata)
        f.attrs["content_hash"] = content_hash
        f.attrs["model_config"] = config_json
        group = f.create_group("weights")
        for i, w in enumerate(weights):
            group.create_dataset(f"{i:04d}", data=w)
    return content_hash


def _check_layers_safe(config: Any, path: Path) -> None:
    """Refuse any layer that would run code from the file (Lambda) or is not ours/Keras'."""
    if isinstance(config, dict):
        cls = config.get("class_name")
        module = config.get("module") or ""
        if cls in ("Lambda", "TFOpLambda") or (
            "class_name" in config and "config" in config and module
            and not (module.startswith("keras") or module.startswith("advbench"))
            and not str(config.get("registered_name", "")).startswith("advbench>")
        ):
            raise ArtifactError(f"{path} contains layer {cls!r} from {module!r}; advbench only "
                                "loads Keras built-in layers and its own, never code from a file")
        for value in config.values():
            _check_layers_safe(value, path)
    elif isinstance(config, list):
        for value in config:
            _check_layers_safe(value, path)


def read_model_metadata(path: str | os.PathLike) -> dict[str, Any]:
    with open_artifact(path, MODEL_SCHEMA) as f:
        meta = read_attrs(f)
    meta.pop("model_config", None)
    return meta


def load_model(path: str | os.PathLike) -> tuple[Model, dict[str, Any]]:
    """(model, metadata) from a model artifact, rebuilt in safe mode.

    The file is untrusted: ``model_config`` must be JSON naming only Keras' and advbench's
    layers, ``weights`` a group of float arrays whose declared shapes are exactly those the
    architecture needs (checked before any weight is read, as are compression bombs), and
    the stored content hash must match what is read back. ArtifactError otherwise."""
    import keras

    importlib.import_module("advbench.models.layers")  # registers our layers with Keras

    path = Path(path)
    with open_artifact(path, MODEL_SCHEMA) as f:
        meta = read_attrs(f)
        meta.pop("model_config", None)
        config_json = f.attrs.get("model_config")
        if config_json is None or "weights" not in f:
            raise ArtifactError(f"{path} has no model inside; it is incomplete: train it again")
        if isinstance(config_json, bytes):
            config_json = config_json.decode(errors="replace")
        if not isinstance(config_json, str):
            raise ArtifactError(f"{path}: model_config is not a JSON string; the file was "
                                "edited or is corrupt: train the model again")
        try:
            config = json.loads(config_json)
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{path}: model_config is not JSON ({e.msg} at character "
                                f"{e.pos}); the file was edited or is corrupt: train the model "
                                "again") from None
        group = f["weights"]
        if not isinstance(group, h5py.Group):
            raise ArtifactError(f"{path}: weights is an array, expected a group of weight "
                                "arrays; the file was edited or is corrupt: train it again")
        entries = []
        for key in sorted(group):
            item = group[key]
            if not isinstance(item, h5py.Dataset):
                raise ArtifactError(f"{path}: weights/{key} is a group, expected a weight "
                                    "array; the file was edited or is corrupt: train it again")
            check_dataset(path, f"weights/{key}", item, kinds="f")
            entries.append((key, item))
        if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
            raise ArtifactError(f"{path}: model_config is a JSON {type(config).__name__}, not "
                                "a Keras model configuration; the file was edited or is "
                                "corrupt: train the model again")
        _check_layers_safe(config, path)
        check_size(path, "weights", sum(math.prod(item.shape) * item.dtype.itemsize
                                        for _, item in entries), error=ArtifactError,
                   fix="the file was edited or is corrupt: train the model again")
        with deferred_variables() as pending:
            try:
                model = keras.saving.deserialize_keras_object(config, safe_mode=True)
            except Exception as e:
                raise ArtifactError(f"{path}: cannot rebuild the model "
                                    f"({e.__class__.__name__}: "
                                    f"{(str(e).splitlines() or [''])[0][:200]})") from None
            if not isinstance(model, keras.Model):
                raise ArtifactError(f"{path}: model_config describes a "
                                    f"{type(model).__name__}, not a Keras model; the file was "
                                    "edited or is corrupt: train the model again")
            # The shapes the config declares, compared with the stored ones before any
            # variable is allocated (a Dense(2,700,000) in a 30 KB file is refused here).
            _check_weight_shapes(path, model, entries)
        pending.initialize()
        try:
            weights = [item[()] for _, item in entries]
        except (OSError, RuntimeError) as e:
            raise ArtifactError(f"{path} is corrupt ({e.__class__.__name__}); train the model "
                                "again") from None
    if _model_hash(config_json, weights) != meta.get("content_hash"):
        raise ArtifactError(f"{path} fails its content-hash check (the weights or the "
                            "architecture changed after writing); train the model again")
    try:
        model.set_weights(weights)
    except Exception as e:
        raise ArtifactError(f"{path}: cannot rebuild the model ({e.__class__.__name__}: "
                            f"{str(e).splitlines()[0][:200]})") from None
    return model, meta


def _check_weight_shapes(path: Path, model, entries: list) -> None:
    """The declared weight shapes must be those of the architecture, before reading them."""
    needed = [tuple(w.shape) for w in model.weights]
    if len(needed) != len(entries):
        raise ArtifactError(f"{path}: {len(entries)} weight arrays, but the architecture in "
                            f"model_config has {len(needed)}; train the model again")
    for (key, item), shape in zip(entries, needed):
        if tuple(item.shape) != shape:
            raise ArtifactError(f"{path}: weights/{key} has shape {tuple(item.shape)}, but the "
                                f"architecture in model_config needs {shape}; train the model "
                                "again")


# -- attack and evaluation artifacts ---------------------------------------------------------
def write_arrays(path: str | os.PathLike, schema: str, attrs: dict[str, Any],
                 arrays: dict[str, np.ndarray]) -> None:
    """Atomically write a flat artifact: attrs plus named arrays ("group/name" allowed)."""
    with atomic_h5(path) as f:
        stamp(f, schema)
        set_attrs(f, attrs)
        for name, value in arrays.items():
            value = np.asarray(value)
            kwargs = {"compression": "gzip", "compression_opts": 1} if value.ndim >= 3 else {}
            f.create_dataset(name, data=value, **kwargs)


def read_arrays(path: str | os.PathLike, schema: str,
                names: list[str] | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(attrs, arrays) of a flat artifact; all arrays unless ``names`` is given.

    The file is untrusted: its attributes, dtypes, shapes and sizes are checked against
    ``schema`` before any array is read (``check_arrays``), and value ranges after
    (``check_values``); ArtifactError names the file and field otherwise."""
    with open_artifact(path, schema) as f:
        attrs = read_attrs(f)
        try:
            check_arrays(path, f, schema, attrs, names)
            arrays: dict[str, np.ndarray] = {}

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and (names is None or name in names):
                    arrays[name] = obj[()]

            f.visititems(visit)
        except (OSError, RuntimeError) as e:
            raise ArtifactError(f"{path} is corrupt ({e.__class__.__name__}); delete it and "
                                "run the stage again") from None
    check_values(path, schema, attrs, arrays)
    return attrs, arrays


# -- lookups ---------------------------------------------------------------------------------
def read_attack_artifact(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(attrs, arrays) of a complete attack artifact; ArtifactError otherwise."""
    attrs, arrays = read_arrays(path, ATTACK_SCHEMA)
    missing = [name for name in ATTACK_ARRAYS if name not in arrays]
    if missing or "dataset" not in attrs:
        raise ArtifactError(f"{path} lacks {', '.join(missing) or 'its data set name'}; it is "
                            "incomplete or not written by `advbench attack`: run the attack again")
    if not attrs.get("complete"):
        done = int(np.count_nonzero(arrays["completed"]))
        if attrs.get("shard_count") is not None:
            count = int(attrs["shard_count"])
            raise ArtifactError(f"{path} is shard {int(attrs['shard_index'])}/{count} of a run "
                                f"({done} of {len(arrays['completed'])} samples); pass all "
                                f"{count} shards' files together, or `advbench merge` them "
                                "first")
        raise ArtifactError(f"{path} is an interrupted run ({done} of {len(arrays['completed'])} "
                            "samples done); rerun its `advbench attack` command to finish it")
    return attrs, arrays


def find_artifact(directory: PathLike, schema: str, key: str) -> Path | None:
    """A complete artifact of ``schema`` whose ``key`` attr equals ``key`` in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    for path in sorted(directory.glob("*.h5")):
        try:
            with open_artifact(path, schema) as f:
                attrs = read_attrs(f)
        except ArtifactError:
            continue
        if attrs.get("key") == key and attrs.get("complete", True):
            return path
    return None


def run_artifact_path(runs_dir: str | os.PathLike, model_path: str | os.PathLike, attack: str,
                      key: str, *, curve: bool = False) -> Path:
    """Where an attack artifact (or, with ``curve``, a curve artifact) is written by default:
    ``<runs_dir>/<model file stem>-<attack>[-curve]-<first 10 hex digits of the run key>.h5``.

    The key makes the name unique per parameters and samples; reuse goes by the key stored
    inside (``find_artifact``), so a renamed artifact is still found."""
    infix = "-curve" if curve else ""
    return Path(runs_dir) / f"{Path(model_path).stem}-{attack}{infix}-{key[:10]}.h5"


# -- JSON ------------------------------------------------------------------------------------
def jsonable(value: Any, *, strict: bool = True) -> Any:
    """``value`` with numpy scalars and arrays turned into Python ones, paths into strings and
    tuple keys into "a, b"; with ``strict`` (the default) NaN and infinity become None, so
    that ``json.dumps`` writes strict JSON.

    Example:
        >>> jsonable({"a": float("nan"), "b": np.float32(0.5), ("x", "y"): np.arange(2)})
        {'a': None, 'b': 0.5, 'x, y': [0, 1]}
    """
    if isinstance(value, dict):
        return {(", ".join(k) if isinstance(k, tuple) else str(k)): jsonable(v, strict=strict)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, strict=strict) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist(), strict=strict)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, Path):
        return str(value)
    if strict and isinstance(value, float) and not math.isfinite(value):
        return None
    return value
