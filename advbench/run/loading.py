"""What a MODEL argument names, opened one way for every stage: a zoo name, an advbench model
artifact, or a foreign model file (Keras 3 ``.keras``, legacy ``.h5``, SavedModel folder).

Every stage gets (path, model, metadata) with a model in advbench's convention ([0, 1] NHWC
images in, logits out) and metadata with at least ``dataset`` and ``content_hash`` (the
identity that tells white-box from black-box). A foreign model has no data set of its own:
it takes the data it is opened with (``--dataset`` or ``--data``), and its metadata say how
it was read (``models.foreign.open_foreign``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from advbench import data
from advbench.core.errors import ParameterError, flags_verb
from advbench.core.types import PathLike
from advbench.models.adapt import Preprocessing
from advbench.models.foreign import MODEL_KINDS, detect_kind, open_foreign
from advbench.models.zoo import resolve_model
from advbench.run.artifacts import load_model, read_model_metadata

#: How many test images probe a foreign model's outputs (probabilities or logits).
PROBE_IMAGES = 64


def open_model(ref: str, *, dataset: str | None = None, data_dir: PathLike | None = None,
               models_dir: PathLike | None = None,
               custom_objects: str | None = None, preprocessing: Preprocessing | None = None,
               outputs: str = "auto", strict: bool = True,
               model_output: str | None = None) -> tuple[Path, Any, dict[str, Any]]:
    """(path, model, metadata) for a MODEL argument.

    Args:
        ref: a zoo name (resolved in ``models_dir``), an advbench model artifact, a .keras or
            legacy .h5 file, or a SavedModel folder.
        dataset: the data a foreign model is used with (a built-in name or a user's data
            path, ``data.source_name``); required for foreign models, which are checked
            against its image shape and number of classes and probed on its first test
            images. For advbench artifacts it only picks among zoo names.
        custom_objects, preprocessing, outputs, model_output: how to read a foreign model
            (see ``models.foreign.open_foreign``; preprocessing None: read from the model);
            refused for advbench artifacts unless not ``strict`` (a command over several
            models applies them to the foreign ones).

    A foreign model is run on the probe images; predictions collapsed onto one class or at
    chance on them add a warning to the notes (``first_batch_warning``).

    Raises ArtifactError for unreadable or unsafe files, ParameterError for options that do
    not apply.
    """
    path = resolve_model(ref, dataset if dataset in data.DATASETS else None, models_dir)
    kind = detect_kind(path)
    options = [flag for flag, given in (
        ("--custom-objects", custom_objects), ("--outputs", outputs != "auto"),
        ("--model-output", model_output is not None),
        ("--input-range/--mean/--std", preprocessing is not None and not preprocessing.identity))
        if given]
    if kind == "advbench":
        if options and strict:
            raise ParameterError(f"{flags_verb(options, 'applies', 'apply')} to foreign model files; {path} is "
                                 "an advbench artifact (it takes [0, 1] images and gives logits)")
        model, meta = load_model(path)
        return path, model, meta
    if dataset is None:
        raise ParameterError(f"{path} is {MODEL_KINDS[kind]} with no data set of its own; say "
                             "which data it takes: --dataset mnist|cifar10 or --data FILE.npz|DIR")
    info = data.dataset_info(dataset)
    probe, probe_labels, _ = data.load(info.name, "test", data_dir=data_dir,
                                       limit=min(PROBE_IMAGES, info.test_size), seed=0)
    model, meta = open_foreign(path, info.input_shape, info.num_classes,
                               preprocessing=preprocessing, outputs=outputs,
                               custom_objects=custom_objects, probe=probe, kind=kind,
                               model_output=model_output)
    meta.update(dataset=info.name, data_hash=data.fingerprint(info.name, data_dir),
                class_names=list(info.class_names))
    predictions = np.asarray(model(probe, training=False)).argmax(axis=1)
    warning = first_batch_warning(predictions, probe_labels, info.class_names, path.name,
                                  meta["preprocessing"]["input_range"])
    if warning:
        meta["notes"].append(warning)
    return path, model, meta


def first_batch_warning(predictions: np.ndarray, labels: np.ndarray | None,
                        class_names: Sequence[str], name: str,
                        input_range: Sequence[float]) -> str | None:
    """A one-line warning when a foreign model's predictions on the first test images look
    like a misread model, else None.

    Args:
        predictions, labels: (N,) integer classes (labels may be None: unlabelled).
        class_names: the data's K class names.
        input_range: the pixel range advbench feeds the model (LOW, HIGH).

    Warned: one class given to at least 90% of N >= 10 images (when the labels are not that
    lopsided), or an accuracy no better than chance, 1/K plus two binomial standard errors.
    """
    n, k = len(predictions), len(class_names)
    if n < 10 or k < 2:
        return None
    counts = np.bincount(predictions, minlength=k)
    top = int(counts.argmax())
    lopsided = labels is not None and np.bincount(labels, minlength=k).max() >= 0.9 * n
    collapsed = counts[top] >= 0.9 * n and not lopsided
    said = (f"{name} gives class {top} ({class_names[top]!r}) to {counts[top]} of the first "
            f"{n} test images")
    chance = False
    if labels is not None:
        accuracy = float(np.mean(predictions == labels))
        p = 1.0 / k
        chance = accuracy <= p + 2 * math.sqrt(p * (1 - p) / n)
        said += f" and is right on {accuracy:.0%} of them (chance: {p:.0%})"
    if not (collapsed or chance):
        return None
    low, high = input_range
    return (f"Warning: {said}; if it scores better in Keras, it is read wrong: check the "
            f"input scale (advbench feeds {low:g}..{high:g}; --input-range), the channel "
            "order (RGB vs BGR), --mean/--std, and which output holds the class scores "
            "(--model-output, --outputs)")


def model_data(ref: str, models_dir: PathLike | None = None) -> str | None:
    """The data set an advbench model artifact was trained on (None for a foreign file),
    read from its metadata without loading the model."""
    path = resolve_model(ref, None, models_dir)
    return read_model_metadata(path).get("dataset") if detect_kind(path) == "advbench" else None
