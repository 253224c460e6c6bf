"""Usage errors about model files and data found before TensorFlow starts (it takes 10-30 s
to import): a missing model file or unknown zoo name (the zoo store's names are resolved
here, ``resolve_model``), a Keras model with several outputs and no
``--model-output``, a flat (vector) input, a model input that no layout of the data's
images fits.

Read with h5py, zipfile, json and NumPy only: a ``.keras`` file's ``config.json``, a legacy
``.h5`` file's ``model_config`` attribute, and the user's data (``userdata.open_data``, which
a command reads anyway, once: its errors come first too). Anything this module cannot tell (a zoo
name, a SavedModel, an unusual config) is left to the full checks, which run after the
import and say the same things: the messages here are theirs (``models.adapt``,
``models.foreign``), word for word.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

from advbench.core.errors import AdvbenchError, ArtifactError, ParameterError
from advbench.core.types import PathLike
from advbench.models import ARCHITECTURE_BUILDERS, MODEL_KINDS


def looks_like_path(ref: str) -> bool:
    """What ``models.resolve_model`` takes as a path rather than a zoo name."""
    return (Path(ref).suffix in (".h5", ".hdf5", ".keras") or Path(ref).exists()
            or os.sep in ref)


def keras_config(path: Path) -> dict | None:
    """The model configuration of a .keras or legacy Keras .h5 file, or None for anything
    else (an advbench artifact, a SavedModel, an unreadable file: the full checks say why)."""
    try:
        if zipfile.is_zipfile(path):
            from advbench.core.limits import MAX_CONFIG_BYTES, read_zip_member

            # Bounded, as the full reading (foreign.py): a config.json that inflates to
            # gigabytes must not be inflated here first.
            with zipfile.ZipFile(path) as archive:
                return json.loads(read_zip_member(path, archive, "config.json",
                                                  MAX_CONFIG_BYTES))
        import h5py

        if path.is_file() and h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                if "schema" in f.attrs or "model_config" not in f.attrs:
                    return None
                text = f.attrs["model_config"]
            return json.loads(text.decode() if isinstance(text, bytes) else text)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, AdvbenchError):
        return None  # the full checks say what is wrong, in their words
    return None


def _layer_names(spec: Any) -> list[str]:
    """``[name, node, tensor]`` or a list of them -> the names."""
    if isinstance(spec, list) and spec and isinstance(spec[0], str):
        return [spec[0]]
    return [s[0] for s in spec or [] if isinstance(s, list) and s and isinstance(s[0], str)]


def outputs_and_input(config: dict) -> tuple[list[str], tuple | None]:
    """(output names, per-image input shape or None) of a Keras model configuration."""
    cls, inner = config.get("class_name"), config.get("config") or {}
    layers = inner.get("layers") or []
    if cls == "Sequential":
        outputs = [layers[-1].get("config", {}).get("name", "?")] if layers else []
        first = layers[0].get("config", {}) if layers else {}
    elif cls in ("Functional", "Model"):
        outputs = _layer_names(inner.get("output_layers"))
        inputs = _layer_names(inner.get("input_layers"))
        first = next((spec.get("config", {}) for spec in layers
                      if len(inputs) == 1 and spec.get("name",
                                                       spec.get("config", {}).get("name"))
                      == inputs[0]), {})
    else:
        return [], None
    shape = first.get("batch_shape") or first.get("batch_input_shape")
    return outputs, (tuple(shape[1:]) if isinstance(shape, list) else None)


def data_image_shape(ref: str | None, own: bool = False) -> tuple | None:
    """The (H, W, C) of a built-in data set, or of a user's file or folder read and checked
    now (``userdata.open_data``, which keeps it for the command: it is read once), so that
    its errors come before TensorFlow's import too; None without data. ``own``: ``ref`` came
    from ``--data``, so it is a path even when it looks like a name (a missing folder is
    "does not exist", not "unknown data set")."""
    if not ref:
        return None
    from advbench.data import DATASETS
    from advbench.data.userdata import is_user_data, open_data

    if ref in DATASETS:
        return tuple(DATASETS[ref].input_shape)
    return tuple(open_data(ref).input_shape) if own or is_user_data(ref) else None


def no_data_message(path: PathLike, kind: str) -> str:
    """The refusal of a foreign model (``kind``, a key of ``MODEL_KINDS``) given without its
    data (the same words before and after TensorFlow's import)."""
    return (f"{path} is {MODEL_KINDS[kind]} with no data set of its own; say which data it "
            "takes: --dataset mnist|cifar10 or --data FILE.npz|DIR")


def check_model(ref: str, data: str | None = None, model_output: str | None = None,
                models_directory: PathLike | None = None, *, needs_data: bool = False) -> None:
    """The errors ``loading.open_model`` would raise after TensorFlow's import, raised now
    when a file's header tells: ArtifactError (one line) for a missing model file, several
    outputs without ``model_output``, a flat input, or an input no layout of ``data``'s
    images (a built-in name or a user's file) fits; ParameterError for a ``model_output``
    that names no output, and for a foreign file without ``data`` when ``needs_data`` (a
    command of one MODEL, whose data can only come from --dataset or --data); a zoo name is
    resolved in ``models_directory`` (``resolve_model``:
    an unknown one is an ArtifactError naming where it looked)."""
    from advbench.data import DATASETS

    path = resolve_model(ref, data if data in DATASETS else None, models_directory)
    config = keras_config(path) if path.is_file() else None
    if needs_data and data is None:
        if config is not None:
            raise ParameterError(no_data_message(path, "keras" if zipfile.is_zipfile(path)
                                                 else "h5"))
        if path.is_dir() and (path / "saved_model.pb").is_file():
            raise ParameterError(no_data_message(path, "savedmodel"))
    if config is None:
        return
    outputs, expected = outputs_and_input(config)
    if len(outputs) > 1 and model_output is None:
        raise ArtifactError(f"{path.name} has {len(outputs)} outputs ({', '.join(outputs)}); "
                            "pick the class scores with --model-output NAME|INDEX")
    if outputs and model_output is not None and model_output not in outputs and not (
            model_output.isdigit() and int(model_output) < len(outputs)):
        raise ParameterError(f"--model-output {model_output}: {path.name} has no such output; "
                             "its outputs are "
                             f"{', '.join(f'{i}: {n}' for i, n in enumerate(outputs))}")
    if expected is None:
        return
    if len(expected) == 1:
        raise ArtifactError(flat_input_message(path.name, expected))
    image = data_image_shape(data)
    if image is not None and not layout_fits(image, expected):
        raise ArtifactError(f"{path.name} takes images of shape {expected} but the data's "
                            f"are {image}; pass the data it was trained on (or resize the "
                            "data to its input)")


def flat_input_message(name: str, expected: tuple) -> str:
    """The refusal of a model that takes flat vectors (the same words before and after
    TensorFlow's import)."""
    return (f"{name} takes flat inputs of shape {expected}; advbench feeds it images: put a "
            "Flatten layer first (keras.Sequential([keras.Input((H, W, C)), "
            "keras.layers.Flatten(), model])) and save it again")


def layout_fits(image: tuple, expected: tuple) -> bool:
    """Whether ``models.adapt`` can feed (H, W, C) images to a model taking ``expected``: as
    they are, without the channel axis (C = 1) or channels-first; a None is any size."""
    def fits(shape):
        return len(shape) == len(expected) and all(e is None or e == s
                                                   for s, e in zip(shape, expected))
    h, w, c = image
    return fits((h, w, c)) or (c == 1 and fits((h, w))) or fits((c, h, w))


# -- the zoo store ------------------------------------------------------------------------------
def models_dir(path: PathLike | None = None) -> Path:
    return Path(path or os.environ.get("ADVBENCH_MODELS") or "models")


def zoo_name(architecture: str, activation: str, defense: str) -> str:
    """The short name of a trained model: ``cnn``, ``cnn-brelu``, ``cnn-brelu-gda``..."""
    parts = [architecture]
    if activation != "relu":
        parts.append(activation)
    if defense != "none":
        parts.append(defense)
    return "-".join(parts)


def resolve_model(ref: str, dataset: str | None = None,
                  directory: PathLike | None = None) -> Path:
    """A model path from a path (an artifact, a .keras / .h5 file, a SavedModel folder) or a
    zoo name (``cnn``, ``resnet-brelu``, ``cnn-brelu-gda``).

    Zoo names resolve to ``<models dir>/<dataset>-<arch>-<act>-<defense>.h5``.
    """
    path = Path(ref)
    if path.suffix in (".h5", ".hdf5", ".keras") or path.exists() or os.sep in ref:
        if not path.exists():
            raise ArtifactError(f"model file {ref} does not exist; train one with "
                                "`advbench train` or pass an existing path")
        return path
    store = models_dir(directory)
    candidates = sorted(store.glob("*.h5")) if store.is_dir() else []
    names: dict[str, dict[str, Path]] = {}
    architectures = ARCHITECTURE_BUILDERS  # the zoo's --model names
    for cand in candidates:
        stem_parts = cand.stem.split("-")
        if len(stem_parts) < 4:
            continue
        ds = stem_parts[0]
        # Architectures may contain a dash (cifar-cnn); activation and defense follow it.
        for arch in sorted(architectures, key=len, reverse=True):
            prefix = f"{ds}-{arch}-"
            if cand.stem.startswith(prefix):
                rest = cand.stem[len(prefix):]
                act, _, defense = rest.partition("-")
                names.setdefault(ds, {})[zoo_name(arch, act, defense)] = cand
                break
    datasets = [dataset] if dataset else sorted(names)
    for ds in datasets:
        if ref in names.get(ds, {}):
            return names[ds][ref]
    known = sorted({f"{n} ({ds})" for ds in names for n in names[ds]})
    hint = ", ".join(known) if known else "none yet; train one with `advbench train`"
    # `advbench reproduce` (make demo) trains into results/<data>/<profile>/models/.
    elsewhere = sorted({str(p.parent) for p in Path("results").glob("*/*/models/*.h5")})
    raise ArtifactError(
        f"no model {ref!r} as a file or as a zoo name in {store}/ (the zoo "
        f"store: --models-dir, else $ADVBENCH_MODELS, else models/; files named "
        f"<data>-<architecture>-<activation>-<defense>.h5) for data set {dataset or 'any'}; "
        f"available: {hint}"
        + (f"; other trained models are in {', '.join(elsewhere)}/ (pass a file's path, or "
           "--models-dir)" if elsewhere else ""))
