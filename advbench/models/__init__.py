"""Models: the zoo's architectures (``zoo``), reading foreign models (``foreign``, ``adapt``),
exporting (``export``), the layers of the paper (``layers``), the attack twin's gradients
(``gradients``) and the checks made before TensorFlow starts (``precheck``).

This ``__init__`` holds the CLI's choices without importing TensorFlow (so that ``--help``
starts without it); the builders and the prediction functions of ``zoo`` are imported (with
TensorFlow) on first access, e.g. ``advbench.models.zoo.build_model``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Callable

from advbench.core.registry import lazy_attributes

if TYPE_CHECKING:
    from advbench.models.zoo import (ARCHITECTURES, activation_layer, build_cifar_cnn,
                                     build_cnn, build_mlp, build_model, build_resnet,
                                     forward_function, models_dir, predict_labels,
                                     predict_logits, resolve_model, zoo_name, zoo_path)

#: --model name -> the builder function of ``advbench.models`` (``models.ARCHITECTURES``).
ARCHITECTURE_BUILDERS: dict[str, str] = {
    "cnn": "build_cnn",
    "resnet": "build_resnet",
    "cifar-cnn": "build_cifar_cnn",
    "mlp": "build_mlp",
}

#: --act: the activations of ``models.build_model`` (BReLU: the paper's bounded ReLU).
ACTIVATIONS = ("relu", "brelu")

#: --outputs: how to read a model's outputs (``models.adapt``): "auto" refuses outputs that
#: look like probabilities.
OUTPUTS = ("auto", "logits", "probabilities")
#: The model sources a MODEL argument accepts, in the words of error messages.
MODEL_KINDS = {
    "advbench": "an advbench model artifact (.h5 from `advbench train`)",
    "keras": "a Keras 3 .keras file",
    "h5": "a legacy Keras .h5 full-model file",
    "savedmodel": "a TensorFlow SavedModel directory",
}

#: The public names of ``zoo``, given here on first access.
_ZOO = ("activation_layer", "build_cnn", "build_resnet", "build_cifar_cnn", "build_mlp",
        "ARCHITECTURES", "build_model", "models_dir", "zoo_name", "resolve_model", "zoo_path",
        "forward_function", "predict_logits", "predict_labels")



def _from_zoo(name: str) -> Callable[[], Any]:
    return lambda: getattr(importlib.import_module("advbench.models.zoo"), name)


__getattr__ = lazy_attributes(globals(), {name: _from_zoo(name) for name in _ZOO})

__all__ = ["ACTIVATIONS", "ARCHITECTURE_BUILDERS", "OUTPUTS", "activation_layer", "build_cnn",
           "build_resnet", "build_cifar_cnn", "build_mlp", "ARCHITECTURES", "build_model",
           "models_dir", "zoo_name", "resolve_model", "zoo_path", "forward_function",
           "predict_logits", "predict_labels"]
