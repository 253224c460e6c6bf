"""Training-time and in-model defenses, keyed by CLI name, with the paper's defaults.

Each defense is a small object of hyperparameters with hooks the shared training loop
(``advbench.run.train``) calls:

- ``model_options()``: extra arguments for ``build_model`` (feature squeezing adds its layer);
- ``copies``: how many extra noisy passes over each image an epoch makes (GDA);
- ``perturb_batch(x, noisy, seed)``: in-graph noise for the GDA copies (``noisy``: 0 for a
  clean row, else a key unique to the image and copy, ``train.epoch_order``);
- ``target_distribution(labels, num_classes)``: the training targets (label smoothing);
- ``online_loss(model, x, labels, targets, logits, seed, rows=)``: an extra in-graph loss
  term (online FGSM adversarial training, the VAT loss);
- ``static_augmentation``: the attack whose adversarials of the training set are appended after
  a first training phase (the paper's adversarial training and VAT); ``fresh_after_crafting``:
  whether the union is then learnt by a fresh model (the authors' code) instead.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from advbench.core.errors import ParameterError
from advbench.core.registry import lazy_attributes, load_classes

if TYPE_CHECKING:
    from advbench.defenses.base import Defense

    DEFENSES: dict[str, type[Defense]]

#: CLI name -> "module:Class" in advbench.defenses: the one list of defenses (one line each).
#: ``DEFENSES`` maps the same names to the classes, imported (with TensorFlow) on first use.
DEFENSE_CLASSES: dict[str, str] = {
    "none": "base:NoDefense",
    "gda": "gda:GaussianAugmentation",
    "gda-cohen": "gda:CohenGaussianAugmentation",
    "label-smoothing": "label_smoothing:LabelSmoothing",
    "feature-squeezing": "feature_squeezing:FeatureSqueezingDefense",
    "fgsm-at": "fgsm_at:FGSMAdversarialTraining",
    "vat": "vat:VirtualAdversarialTraining",
}

#: The modes of the defenses that have one (``MODES`` of their modules; --at-mode, --vat-mode),
#: here, without TensorFlow, for the CLI's choices.
FGSM_AT_MODES = ("static", "online", "fresh")
VAT_MODES = ("static", "loss")
#: GDA's noise (``gda.GaussianAugmentation``, --gda-noise): "fresh" every epoch, or drawn
#: "once" per image and copy and reused every epoch (the paper authors' code stacked its 10
#: noisy copies once before training).
GDA_NOISES = ("fresh", "once")

# DEFENSES and the base class, imported (with TensorFlow) when first asked for.
__getattr__ = lazy_attributes(globals(), {
    "DEFENSES": lambda: load_classes(__name__, DEFENSE_CLASSES),
    "Defense": lambda: importlib.import_module("advbench.defenses.base").Defense,
})


def make_defense(name: str, dataset: str, **overrides: Any) -> Defense:
    """A defense with the paper's settings for ``dataset`` and the given overrides.

    Overrides meant for another defense (e.g. ``gda_sigma`` with ``label-smoothing``) are an
    error, so a typo in a script never silently trains the wrong model.
    """
    if name not in DEFENSE_CLASSES:
        raise ParameterError(f"unknown defense {name!r}; choose one of: "
                             f"{', '.join(sorted(DEFENSE_CLASSES))}")
    from advbench.defenses import DEFENSES

    cls = DEFENSES[name]
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(cls.param_names))
    if unknown:
        raise ParameterError(f"option(s) {', '.join(unknown)} do not apply to defense {name!r}"
                             f" (its options: {', '.join(cls.param_names) or 'none'})")
    return cls.for_dataset(dataset, **given)


__all__ = ["DEFENSES", "DEFENSE_CLASSES", "Defense", "FGSM_AT_MODES", "GDA_NOISES", "VAT_MODES",
           "make_defense"]
