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
import datetime as _dt
import hashlib
import importlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from advbench import __version__
from advbench.errors import ArtifactError
from advbench.types import Model, PathLike

SCHEMA_VERSION = 1
MODEL_SCHEMA = "advbench.model"
ATTACK_SCHEMA = "advbench.attack"
EVALUATION_SCHEMA = "advbench.evaluation"
CURVE_SCHEMA = "advbench.curve"
# Arrays every complete attack artifact holds.
ATTACK_ARRAYS = ("x_adv", "y", "indices", "completed")


# -- writing --------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open a temporary HDF5 file beside ``path`` for writing; rename it into place on
    success, delete it on any error (including KeyboardInterrupt)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def stamp(f: h5py.File, schema: str) -> None:
    f.attrs["schema"] = schema
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["advbench_version"] = __version__
    f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def set_attrs(f: h5py.File, attrs: dict[str, Any]) -> None:
    """Store scalars and strings as attrs; dicts and lists as JSON strings."""
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, (dict, list, tuple)):
            f.attrs[key] = json.dumps(value)
        else:
            f.attrs[key] = value


def read_attrs(f: h5py.File) -> dict[str, Any]:
    out = {}
    for key, value in f.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, str) and value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        out[key] = value
    return out


# -- reading --------------------------------------------------------------------------------
@contextlib.contextmanager
def open_artifact(path: str | os.PathLike, schema: str) -> Iterator[h5py.File]:
    """Open an advbench artifact read-only, checking that it is of the expected kind."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; check the path")
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


def artifact_kind(path: str | os.PathLike) -> str | None:
    """The schema name of an advbench artifact, or None if it is not one."""
    try:
        with h5py.File(path, "r") as f:
            found = f.attrs.get("schema")
    except OSError:
        return None
    return found.decode() if isinstance(found, bytes) else found


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
    """(model, metadata) from a model artifact, rebuilt in safe mode; the stored content
    hash is checked against the weights read back."""
    import keras

    importlib.import_module("advbench.models.layers")  # registers our layers with Keras

    path = Path(path)
    with open_artifact(path, MODEL_SCHEMA) as f:
        meta = read_attrs(f)
        config_json = f.attrs.get("model_config")
        if config_json is None or "weights" not in f:
            raise ArtifactError(f"{path} has no model inside; it is incomplete: train it again")
        if isinstance(config_json, bytes):
            config_json = config_json.decode()
        group = f["weights"]
        weights = [group[k][()] for k in sorted(group)]
    meta.pop("model_config", None)
    if _model_hash(config_json, weights) != meta.get("content_hash"):
        raise ArtifactError(f"{path} fails its content-hash check (the weights or the "
                            "architecture changed after writing); train the model again")
    config = json.loads(config_json)
    _check_layers_safe(config, path)
    try:
        model = keras.saving.deserialize_keras_object(config, safe_mode=True)
        model.set_weights(weights)
    except Exception as e:
        raise ArtifactError(f"{path}: cannot rebuild the model ({e.__class__.__name__}: "
                            f"{str(e).splitlines()[0][:200]})") from None
    return model, meta


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
    """(attrs, arrays) of a flat artifact; all arrays unless ``names`` is given."""
    with open_artifact(path, schema) as f:
        attrs = read_attrs(f)
        arrays: dict[str, np.ndarray] = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and (names is None or name in names):
                arrays[name] = obj[()]

        try:
            f.visititems(visit)
        except (OSError, RuntimeError) as e:
            raise ArtifactError(f"{path} is corrupt ({e.__class__.__name__}); delete it and "
                                "run the stage again") from None
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
