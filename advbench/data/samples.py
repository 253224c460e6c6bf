"""The samples a stage works on, and the checks that tie them to a model and an artifact: a
slice of a data split in seeded batches (``Samples``), the whole training set (the
training-set distance's reference), the clean images an attack artifact was crafted from, and
whether a model takes a data set's images and classes."""

from __future__ import annotations

import dataclasses

import numpy as np

from advbench import data
from advbench.core.checks import check_int, check_seed
from advbench.core.errors import ArtifactError
from advbench.core.types import Model, PathLike


@dataclasses.dataclass(kw_only=True)
class Samples:
    """The samples a stage works on: a slice of a data split, in seeded batches."""

    dataset: str
    split: str = "test"
    limit: int | None = None
    start: int = 0
    batch_size: int = 128
    seed: int = 0
    data_dir: PathLike | None = None

    def validate(self) -> None:
        """ParameterError unless every number can run: batch size and limit in [1, 2**31),
        start in [0, 2**31), seed in [0, 2**32) (``advbench.core.checks``)."""
        check_int("batch size", self.batch_size, low=1)
        if self.limit is not None:
            check_int("limit", self.limit, low=1)
        check_int("start", self.start, low=0)
        check_seed(self.seed)

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(x, y, indices into the split), as ``data.load`` gives them."""
        return data.load(self.dataset, self.split, data_dir=self.data_dir, limit=self.limit,
                         seed=self.seed, start=self.start)


def check_model_fits(model: Model, meta: dict, path: PathLike, x: np.ndarray,
                     dataset: str) -> None:
    """ArtifactError unless the model takes images of x's shape and gives one score per class
    of the whole data set (not only of the classes the drawn sample happens to hold); the
    message names the fix for the case at hand (other data, or a model input without its
    channel axis)."""
    shape, images = tuple(model.input_shape[1:]), tuple(x.shape[1:])
    if shape == images:
        _check_classes_fit(model, meta, path, dataset)
        return
    where = f"model {path} takes inputs of shape {shape} but {data.display_name(dataset)} " \
            f"images are {images}"
    if shape == images[:-1] and images[-1] == 1:
        raise ArtifactError(f"{where}: its input has no channel axis; pass the model's own "
                            ".keras/.h5 file (advbench adds the axis for Keras files) or "
                            f"rebuild it with keras.Input({images})")
    trained = meta.get("dataset")
    fix = (f"use the data it was trained on ({data.display_name(trained)})" if trained
           else "use data of the shape it takes")
    raise ArtifactError(f"{where}; {fix}")


def _check_classes_fit(model: Model, meta: dict, path: PathLike, dataset: str) -> None:
    scores, classes = int(model.output_shape[-1]), data.dataset_info(dataset).num_classes
    if scores == classes:
        return
    trained = meta.get("dataset")
    fix = (f"use the data it was trained on ({data.display_name(trained)})"
           if trained and trained != dataset else f"use data of {scores} classes")
    raise ArtifactError(f"model {path} gives {scores} class scores but "
                        f"{data.display_name(dataset)} has {classes} classes (its labels, every "
                        f"split); {fix}")


def clean_samples(path: PathLike, attrs: dict, arrays: dict,
                  data_dir: PathLike | None = None) -> np.ndarray:
    """The clean images an attack artifact was crafted from, reloaded from the data set and
    checked against the artifact's sample indices and labels."""
    limit = attrs.get("limit")
    stored = attrs.get("data_hash")
    if stored and stored != data.fingerprint(attrs["dataset"], data_dir):
        fix = ("pass the --data-dir it was crafted with" if attrs["dataset"] in data.DATASETS
               else "restore that file or craft the artifact again")
        raise ArtifactError(f"{path} was crafted on other data than "
                            f"{data.display_name(attrs['dataset'])} holds now (the data hash "
                            f"differs); {fix}")
    x, y, indices = data.load(attrs["dataset"], attrs.get("split", "test"), data_dir=data_dir,
                              limit=None if limit in (None, "") else int(limit),
                              seed=int(attrs.get("seed", 0)), start=int(attrs.get("start", 0)))
    if not (np.array_equal(indices, arrays["indices"]) and np.array_equal(y, arrays["y"])):
        raise ArtifactError(f"{path}: the {attrs['dataset']} files found now do not hold the "
                            "samples the artifact was crafted from (indices or labels differ); "
                            "pass the --data-dir it was crafted with")
    return x


def training_set(dataset: str, data_dir: PathLike | None = None) -> np.ndarray:
    """The whole original training set (the fitting split and the validation split, in the
    order of the original files): 60,000 images on MNIST, 50,000 on CIFAR-10."""
    x_fit, _, i_fit = data.load(dataset, "train", data_dir=data_dir)
    x_val, _, i_val = data.load(dataset, "validation", data_dir=data_dir)
    x = np.empty((len(x_fit) + len(x_val),) + x_fit.shape[1:], np.float32)
    x[i_fit] = x_fit
    x[i_val] = x_val
    return x
