"""Usage errors about model files and data found before TensorFlow starts (it takes 10-30 s
to import): a missing model file, a Keras model with several outputs and no
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

from advbench.errors import ArtifactError, ParameterError


def looks_like_path(ref: str) -> bool:
    """What ``models.resolve_model`` takes as a path rather than a zoo name."""
    return (Path(ref).suffix in (".h5", ".hdf5", ".keras") or Path(ref).exists()
            or os.sep in ref)


def keras_config(path: Path) -> dict | None:
    """The model configuration of a .keras or legacy Keras .h5 file, or None for anything
    else (an advbench artifact, a SavedModel, an unreadable file: the full checks say why)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json"))
        import h5py

        if path.is_file() and h5py.is_hdf5(path):
            with h5py.File(path, "r") as f:
                if "schema" in f.attrs or "model_config" not in f.attrs:
                    return None
                text = f.attrs["model_config"]
            return json.loads(text.decode() if isinstance(text, bytes) else text)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None
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


def data_image_shape(ref: str | None) -> tuple | None:
    """The (H, W, C) of a built-in data set, or of a user's file or folder read and checked
    now (``userdata.open_data``, which keeps it for the command: it is read once), so that
    its errors come before TensorFlow's import too; None without data."""
    if not ref:
        return None
    from advbench.data import DATASETS
    from advbench.userdata import is_user_data, open_data

    if ref in DATASETS:
        return tuple(DATASETS[ref].input_shape)
    return tuple(open_data(ref).input_shape) if is_user_data(ref) else None


def check_model(ref: str, data: str | None = None, model_output: str | None = None) -> None:
    """The errors ``loading.open_model`` would raise after TensorFlow's import, raised now
    when a file's header tells: ArtifactError (one line) for a missing model file, several
    outputs without ``model_output``, a flat input, or an input no layout of ``data``'s
    images (a built-in name or a user's file) fits; ParameterError for a ``model_output``
    that names no output."""
    if not looks_like_path(ref):
        return
    path = Path(ref)
    if not path.exists():
        raise ArtifactError(f"model file {ref} does not exist; train one with "
                            "`advbench train` or pass an existing path")
    config = keras_config(path) if path.is_file() else None
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
