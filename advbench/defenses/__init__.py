"""Training-time and in-model defenses, keyed by CLI name, with the paper's defaults.

Each defense is a small object of hyperparameters with hooks the shared training loop
(``advbench.train``) calls:

- ``model_options()``: extra arguments for ``build_model`` (feature squeezing adds its layer);
- ``copies``: how many extra noisy passes over each image an epoch makes (GDA);
- ``perturb_batch(x, noisy, seed)``: in-graph noise for the GDA copies;
- ``target_distribution(labels, num_classes)``: the training targets (label smoothing);
- ``online_loss(model, x, labels, targets, logits)``: an extra in-graph loss term (online FGSM
  adversarial training, the VAT loss);
- ``static_augmentation``: the attack whose adversarials of the training set are appended after
  a first training phase (the paper's adversarial training and VAT).
"""

from __future__ import annotations

from advbench.defenses.base import Defense, NoDefense
from advbench.defenses.feature_squeezing import FeatureSqueezingDefense
from advbench.defenses.fgsm_at import FGSMAdversarialTraining
from advbench.defenses.gda import GaussianAugmentation
from advbench.defenses.label_smoothing import LabelSmoothing
from advbench.defenses.vat import VirtualAdversarialTraining
from advbench.errors import ParameterError

DEFENSES: dict[str, type[Defense]] = {
    cls.name: cls
    for cls in (NoDefense, GaussianAugmentation, LabelSmoothing, FeatureSqueezingDefense,
                FGSMAdversarialTraining, VirtualAdversarialTraining)
}


def make_defense(name: str, dataset: str, **overrides) -> Defense:
    """A defense with the paper's settings for ``dataset`` and the given overrides.

    Overrides meant for another defense (e.g. ``gda_sigma`` with ``label-smoothing``) are an
    error, so a typo in a script never silently trains the wrong model.
    """
    if name not in DEFENSES:
        raise ParameterError(f"unknown defense {name!r}; choose one of: "
                             f"{', '.join(sorted(DEFENSES))}")
    cls = DEFENSES[name]
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(cls.param_names))
    if unknown:
        raise ParameterError(f"option(s) {', '.join(unknown)} do not apply to defense {name!r}"
                             f" (its options: {', '.join(cls.param_names) or 'none'})")
    return cls.for_dataset(dataset, **given)


__all__ = ["DEFENSES", "Defense", "make_defense"]
