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

from advbench.core.checks import MAX_GDA_COPIES, MAX_POWER_ITERATIONS
from advbench.core.errors import ParameterError
from advbench.core.params import Param, Spec
from advbench.core.registry import lazy_attributes, load_classes

if TYPE_CHECKING:
    from advbench.defenses.base import Defense

    DEFENSES: dict[str, type[Defense]]

#: The modes of the defenses that have one (``MODES`` of their modules; --at-mode, --vat-mode),
#: here, without TensorFlow, for the CLI's choices.
FGSM_AT_MODES = ("static", "online", "fresh")
VAT_MODES = ("static", "loss")
#: GDA's noise (``gda.GaussianAugmentation``, --gda-noise): "fresh" every epoch, or drawn
#: "once" per image and copy and reused every epoch (the paper authors' code stacked its 10
#: noisy copies once before training).
GDA_NOISES = ("fresh", "once")


# -- the defenses' parameters, each declared once (``advbench.core.params.Param``), with the flag
# of `advbench train`: flags are prefixed by the defense, since defenses share names (eps).
GDA_SIGMA = Param("sigma", float, low=0.0, eps_like=True, flag="--gda-sigma",
                  help="GDA noise std", default_help=(
                      "[default: 0.3 on MNIST, 0.05 on CIFAR-10 (the paper's); your own data: "
                      "its size's set, else required; gda-cohen: 0.25 on any data]."))
# Each epoch holds (copies + 1) index pairs per training image: 100 copies of 60,000 images
# is 6 million, while 1e9 exhausted memory.
GDA_COPIES = Param("copies", int, low=0, high=MAX_GDA_COPIES, flag="--gda-copies",
                   help="GDA noisy copies per image")
GDA_CLIP = Param("clip", bool, flag="--gda-clip", help="Clip x + noise to [0, 1]",
                 default_help="[default: off, as the paper's authors].")
GDA_NOISE = Param("noise", str, choices=GDA_NOISES, flag="--gda-noise", help=(
    "GDA noise: fresh every epoch, or drawn once per image and copy (the authors' code)"))
LS_WEIGHT = Param("weight", float, low=0.0, high=1.0, low_inclusive=False, flag="--ls-weight",
                  help="Label smoothing true-class weight")
FS_BITS = Param("bit_depth", int, low=1, high=16, flag="--fs-bits",
                help="Feature squeezing bit depth",
                default_help="[default: 1 on MNIST, 3 on CIFAR-10].")
AT_EPS = Param("eps", float, low=0.0, low_inclusive=False, eps_like=True, flag="--at-eps",
               help="FGSM adversarial training eps", default_help=(
                   "[default: 0.3 on MNIST, 0.05 on CIFAR-10 (the paper's); your own data: its "
                   "size's set, else required]."))
AT_MODE = Param("mode", str, choices=FGSM_AT_MODES, flag="--at-mode", help=(
    "Adversarial training mode: static (the paper's), fresh (the authors' code: a fresh model "
    "learns clean + adversarial data) or online"))
AT_RATIO = Param("ratio", float, low=0.0, high=1.0, flag="--at-ratio",
                 help="Online adversarial loss weight")
VAT_EPS = Param("eps", float, low=0.0, low_inclusive=False, eps_like=True, flag="--vat-eps",
                help="VAT perturbation L2 norm")
VAT_MODE = Param("mode", str, choices=VAT_MODES, flag="--vat-mode",
                 help="VAT: the paper's static augmentation or Miyato's loss")
VAT_ALPHA = Param("alpha", float, low=0.0, flag="--vat-alpha",
                  help="Weight of the VAT loss term")
VAT_XI = Param("xi", float, low=0.0, low_inclusive=False, eps_like=True, flag="--vat-xi",
               help="VAT finite-difference step of the power iteration")
VAT_POWER_ITERATIONS = Param("power_iterations", int, low=1, high=MAX_POWER_ITERATIONS,
                             flag="--vat-power-iterations", help="VAT power iterations")

#: Every defense parameter, in flag order.
DEFENSE_PARAMETERS: tuple[Param, ...] = (
    GDA_SIGMA, GDA_COPIES, GDA_CLIP, GDA_NOISE, LS_WEIGHT, FS_BITS, AT_EPS, AT_MODE, AT_RATIO,
    VAT_EPS, VAT_MODE, VAT_ALPHA, VAT_XI, VAT_POWER_ITERATIONS)

#: CLI name -> the defense's ``Spec``: its class ("module:Class" in advbench.defenses), its
#: parameters with the paper's defaults, and the defaults that depend on the data set. The one
#: list of defenses, one entry each: constructors, checks, ``param_names``, `train`'s flags
#: and their help derive from it. ``DEFENSES`` maps the same names to the classes, imported
#: (with TensorFlow) on first use.
DEFENSE_SPECS: dict[str, Spec] = {
    "none": Spec("base:NoDefense"),
    "gda": Spec("gda:GaussianAugmentation", GDA_SIGMA(0.3), GDA_COPIES(10), GDA_CLIP(False),
                GDA_NOISE("fresh"),
                dataset_defaults={"mnist": {"sigma": 0.3}, "cifar10": {"sigma": 0.05}}),
    "gda-cohen": Spec("gda:CohenGaussianAugmentation", GDA_SIGMA(0.25)),
    "label-smoothing": Spec("label_smoothing:LabelSmoothing", LS_WEIGHT(0.9)),
    "feature-squeezing": Spec("feature_squeezing:FeatureSqueezingDefense", FS_BITS(1),
                              dataset_defaults={"mnist": {"bit_depth": 1},
                                                "cifar10": {"bit_depth": 3}}),
    "fgsm-at": Spec("fgsm_at:FGSMAdversarialTraining", AT_EPS(0.3), AT_MODE("static"),
                    AT_RATIO(0.5),
                    dataset_defaults={"mnist": {"eps": 0.3}, "cifar10": {"eps": 0.05}}),
    "vat": Spec("vat:VirtualAdversarialTraining", VAT_EPS(2.1), VAT_MODE("static"),
                VAT_ALPHA(1.0), VAT_XI(1e-6), VAT_POWER_ITERATIONS(1)),
}
#: CLI name -> "module:Class" (``DEFENSE_SPECS``' refs): what the CLI's choices and
#: ``DEFENSES`` read.
DEFENSE_CLASSES: dict[str, str] = {name: spec.ref for name, spec in DEFENSE_SPECS.items()}

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


__all__ = ["DEFENSES", "DEFENSE_CLASSES", "DEFENSE_PARAMETERS", "DEFENSE_SPECS", "Defense",
           "FGSM_AT_MODES", "GDA_NOISES", "VAT_MODES", "make_defense"]
