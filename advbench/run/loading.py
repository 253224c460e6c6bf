"""What a MODEL argument names, opened one way for every stage: a zoo name, an advbench model
artifact, or a foreign model file (Keras 3 ``.keras``, legacy ``.h5``, SavedModel folder).

Every stage gets (path, model, metadata) with a model in advbench's convention ([0, 1] NHWC
images in, logits out) and metadata with at least ``dataset`` and ``content_hash`` (the
identity that tells white-box from black-box). A foreign model has no data set of its own:
it takes the data it is opened with (``--dataset`` or ``--data``), and its metadata say how
it was read (``models.foreign.open_foreign``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from advbench import data
from advbench.core.errors import ArtifactError, ParameterError, flags_verb
from advbench.core.types import PathLike
from advbench.models.adapt import Preprocessing
from advbench.models.foreign import detect_kind, open_foreign
from advbench.models.precheck import no_data_message
from advbench.models.zoo import resolve_model
from advbench.run.artifacts import load_model, read_model_metadata

#: How many test images probe a foreign model's outputs (probabilities or logits).
PROBE_IMAGES = 64


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model was read and how: enough to open it again, the same way, in another
    process (a shard, a Ray task, the audit's transfer check). Picklable; no Keras object.

    ``path``: the resolved file or SavedModel folder. ``dataset``, ``data_dir``: the data a
    foreign model was opened with (a built-in name or a user's data path, its probe images
    and class count). ``custom_objects``, ``outputs``, ``preprocessing``, ``model_output``:
    the reading flags of a foreign model (``--custom-objects``, ``--outputs``,
    ``--input-range/--mean/--std``, ``--model-output``); left at their defaults for an
    advbench artifact, which is read one way only."""

    path: str
    where: str = ""  # the absolute path (a worker's working folder is not the caller's)
    dataset: str | None = None
    data_dir: str | None = None
    custom_objects: str | None = None
    outputs: str = "auto"
    preprocessing: Preprocessing | None = None
    model_output: str | None = None

    def __post_init__(self) -> None:
        if not self.where:
            object.__setattr__(self, "where", str(Path(self.path).resolve()))
        if self.data_dir is not None:
            object.__setattr__(self, "data_dir", str(Path(self.data_dir).resolve()))

    def open(self) -> "LoadedModel":
        """The model read again as it was read first (``open_model``), in any working folder;
        its errors."""
        again = open_model(self.where, dataset=self.dataset, data_dir=self.data_dir,
                           custom_objects=self.custom_objects, preprocessing=self.preprocessing,
                           outputs=self.outputs, model_output=self.model_output)
        return LoadedModel(self, again.model, again.meta)


@dataclasses.dataclass
class LoadedModel:
    """A model as every stage takes it: ``source`` (how to open it again), ``model`` (the
    Keras model: float32 (N, H, W, C) images in [0, 1] in, (N, classes) logits out) and
    ``meta`` (its metadata: at least ``dataset`` and ``content_hash``, the identity that
    tells white-box from black-box). Unpacks as the (path, model, metadata) triple."""

    source: ModelSource
    model: Any
    meta: dict[str, Any]

    @property
    def path(self) -> Path:
        return Path(self.source.path)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.path, self.model, self.meta))

    def __getitem__(self, index: int) -> Any:
        return (self.path, self.model, self.meta)[index]


def open_model(ref: str, *, dataset: str | None = None, data_dir: PathLike | None = None,
               models_dir: PathLike | None = None,
               custom_objects: str | None = None, preprocessing: Preprocessing | None = None,
               outputs: str = "auto", strict: bool = True,
               model_output: str | None = None) -> LoadedModel:
    """The model a MODEL argument names (``LoadedModel``: unpacks as (path, model, metadata)).

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
        return LoadedModel(ModelSource(str(path)), model, meta)
    if dataset is None:
        raise ParameterError(no_data_message(path, kind))
    info = data.dataset_info(dataset)
    probe, probe_labels, _ = data.load(info.name, "test", data_dir=data_dir,
                                       limit=min(PROBE_IMAGES, info.test_size), seed=0)
    model, meta = open_foreign(path, info.input_shape, info.num_classes,
                               preprocessing=preprocessing, outputs=outputs,
                               custom_objects=custom_objects, probe=probe, kind=kind,
                               model_output=model_output)
    meta.update(dataset=info.name, data_hash=data.fingerprint(info.name, data_dir),
                class_names=list(info.class_names))
    scores = np.asarray(model(probe, training=False))
    if scores.shape != (len(probe), info.num_classes):
        # A graph may return anything its author chose (one row for the batch, ...).
        raise ArtifactError(f"{path} gives class scores of shape {scores.shape} for "
                            f"{len(probe)} images, not ({len(probe)}, {info.num_classes}); "
                            "it must return one row of scores per image")
    if scores.dtype.kind != "f":
        raise ArtifactError(f"{path} gives class scores of dtype {scores.dtype}; advbench "
                            "needs float scores (logits or probabilities) to take gradients of")
    if not np.isfinite(scores).all():
        # Every attack and metric would be NaN: say it is the model, not the attack.
        raise ArtifactError(f"{path} gives NaN or infinite class scores on the first "
                            f"{len(probe)} test images; it is damaged or not a classifier of "
                            "this data: check it in Keras (and --input-range)")
    predictions = scores.argmax(axis=1)
    warning = first_batch_warning(predictions, probe_labels, info.class_names, path.name,
                                  meta["preprocessing"]["input_range"])
    if warning:
        meta["notes"].append(warning)
    source = ModelSource(str(path), dataset=info.name,
                         data_dir=None if data_dir is None else str(data_dir),
                         custom_objects=custom_objects, outputs=outputs,
                         preprocessing=preprocessing, model_output=model_output)
    return LoadedModel(source, model, meta)


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
