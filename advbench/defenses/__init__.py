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

from typing import Any, ClassVar

import tensorflow as tf

from advbench.checks import check_int, check_range
from advbench.errors import ParameterError
from advbench.ops import per_sample_cross_entropy, per_sample_soft_cross_entropy

MODES = ("static", "online")


class Defense:
    name: ClassVar[str] = ""
    # (data set -> default) per parameter that depends on the data set.
    dataset_defaults: ClassVar[dict[str, dict[str, Any]]] = {}
    param_names: ClassVar[tuple[str, ...]] = ()
    copies: int = 0

    def params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.param_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    @classmethod
    def for_dataset(cls, dataset: str, **overrides) -> "Defense":
        """The paper's settings for ``dataset``, with user overrides (None = keep default)."""
        params = dict(cls.dataset_defaults.get(dataset, {}))
        params.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**params)

    # Hooks: the defaults mean "no change".
    def model_options(self) -> dict[str, Any]:
        return {}

    def target_distribution(self, labels: tf.Tensor, num_classes: int) -> tf.Tensor:
        return tf.one_hot(labels, num_classes)

    def perturb_batch(self, x: tf.Tensor, noisy: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return x

    has_online_loss: ClassVar[bool] = False

    def online_loss(self, model, x, labels, targets, logits, seed):
        raise NotImplementedError

    def static_augmentation(self):
        """An attack object whose adversarials of the training set are appended, or None."""
        return None


class NoDefense(Defense):
    name = "none"


class GaussianAugmentation(Defense):
    """Gaussian data augmentation (the paper's GDA): each epoch sees every image plus
    ``copies`` fresh noisy versions x + N(0, sigma^2), drawn on the fly.

    Args:
        sigma: noise standard deviation (paper: 0.3 MNIST, 0.05 CIFAR-10).
        copies: noisy copies per image per epoch (paper: 10).
        clip: clip x + noise to [0, 1] (the paper's authors did not; default off to match).
    """

    name = "gda"
    dataset_defaults = {"mnist": {"sigma": 0.3}, "cifar10": {"sigma": 0.05}}
    param_names = ("sigma", "copies", "clip")

    def __init__(self, *, sigma: float = 0.3, copies: int = 10, clip: bool = False):
        check_range("gda sigma", sigma, low=0.0)
        check_int("gda copies", copies, low=0)
        self.sigma = float(sigma)
        self.copies = int(copies)
        self.clip = bool(clip)

    def perturb_batch(self, x, noisy, seed):
        noise = tf.random.stateless_normal(tf.shape(x), seed=seed, stddev=self.sigma)
        mask = tf.reshape(tf.cast(noisy, x.dtype), [-1, 1, 1, 1])
        x = x + mask * noise
        return tf.clip_by_value(x, 0.0, 1.0) if self.clip else x


class LabelSmoothing(Defense):
    """Label smoothing (Warde-Farley & Goodfellow): the true class gets ``weight`` and the
    other classes share 1 - weight evenly (paper: 0.9)."""

    name = "label-smoothing"
    param_names = ("weight",)

    def __init__(self, *, weight: float = 0.9):
        check_range("label smoothing weight", weight, low=0.0, high=1.0, low_inclusive=False)
        self.weight = float(weight)

    def target_distribution(self, labels, num_classes):
        rest = (1.0 - self.weight) / (num_classes - 1)
        return tf.one_hot(labels, num_classes, on_value=self.weight, off_value=rest)


class FeatureSqueezingDefense(Defense):
    """Feature squeezing (Xu et al.): colour depth reduced to ``bit_depth`` bits by a layer at
    the model's input, used in training and at prediction time. Its gradient is the identity
    (straight-through), so white-box gradient attacks see through it (BPDA)."""

    name = "feature-squeezing"
    dataset_defaults = {"mnist": {"bit_depth": 1}, "cifar10": {"bit_depth": 3}}
    param_names = ("bit_depth",)

    def __init__(self, *, bit_depth: int = 1):
        check_int("feature squeezing bit depth", bit_depth, low=1)
        if bit_depth > 16:
            raise ParameterError(f"feature squeezing bit depth must be <= 16, got {bit_depth}")
        self.bit_depth = int(bit_depth)

    def model_options(self):
        return {"squeeze_bits": self.bit_depth}


class FGSMAdversarialTraining(Defense):
    """FGSM adversarial training (Goodfellow et al.).

    Args:
        eps: FGSM step (paper: 0.3 MNIST, 0.05 CIFAR-10).
        mode: "static" (the paper's: after a first training phase, FGSM adversarials of the
            whole training set are crafted once on that model, appended, and training goes
            on over the union) or "online" (every batch: loss = (1 - ratio) * J(x) +
            ratio * J(x_adv), x_adv crafted on the current weights).
        ratio: weight of the adversarial loss in online mode (0.5, Goodfellow et al.).
    """

    name = "fgsm-at"
    dataset_defaults = {"mnist": {"eps": 0.3}, "cifar10": {"eps": 0.05}}
    param_names = ("eps", "mode", "ratio")
    has_online_loss = True

    def __init__(self, *, eps: float = 0.3, mode: str = "static", ratio: float = 0.5):
        check_range("fgsm-at eps", eps, low=0.0, low_inclusive=False)
        if mode not in MODES:
            raise ParameterError(f"fgsm-at mode must be static or online, got {mode!r}")
        check_range("fgsm-at ratio", ratio, low=0.0, high=1.0)
        self.eps = float(eps)
        self.mode = mode
        self.ratio = float(ratio)
        self.has_online_loss = mode == "online"

    def online_loss(self, model, x, labels, targets, logits, seed):
        from advbench.attacks.fgsm import fgsm_direction

        x_adv = tf.stop_gradient(tf.clip_by_value(
            x + self.eps * fgsm_direction(model, x, labels, "linf", False), 0.0, 1.0))
        adv_logits = model(x_adv, training=True)
        clean = per_sample_soft_cross_entropy(targets, logits)
        adv = per_sample_soft_cross_entropy(targets, adv_logits)
        # Replaces the clean loss: (1 - ratio) J(x) + ratio J(x_adv) - J(x).
        return self.ratio * (adv - clean)

    def static_augmentation(self):
        if self.mode != "static":
            return None
        from advbench.attacks.fgsm import FGSM

        return FGSM(eps=self.eps)


class VirtualAdversarialTraining(Defense):
    """Virtual adversarial training (Miyato et al., https://arxiv.org/abs/1704.03976).

    Args:
        eps: L2 norm of the virtual adversarial perturbation (paper: 2.1).
        mode: "static" (the paper's authors': adversarials along the VAT direction of the
            training set, crafted once after a first training phase, appended) or "loss"
            (Miyato's VAT: loss = J(x) + alpha * KL(p(x) || p(x + r_vadv)) every batch).
        alpha: weight of the KL term in "loss" mode (1.0, Miyato et al.).
        xi: finite-difference step of the power iteration (1e-6).
        power_iterations: 1 (Miyato et al.).
    """

    name = "vat"
    param_names = ("eps", "mode", "alpha", "xi", "power_iterations")

    def __init__(self, *, eps: float = 2.1, mode: str = "static", alpha: float = 1.0,
                 xi: float = 1e-6, power_iterations: int = 1):
        check_range("vat eps", eps, low=0.0, low_inclusive=False)
        if mode not in ("static", "loss"):
            raise ParameterError(f"vat mode must be static or loss, got {mode!r}")
        check_range("vat alpha", alpha, low=0.0)
        check_range("vat xi", xi, low=0.0, low_inclusive=False)
        check_int("vat power iterations", power_iterations, low=1)
        self.eps = float(eps)
        self.mode = mode
        self.alpha = float(alpha)
        self.xi = float(xi)
        self.power_iterations = int(power_iterations)
        self.has_online_loss = mode == "loss"

    def online_loss(self, model, x, labels, targets, logits, seed):
        from advbench.attacks.vat import vat_loss

        return self.alpha * vat_loss(model, x, logits, eps=self.eps, xi=self.xi,
                                     power_iterations=self.power_iterations,
                                     seed_tensor=seed, training=True)

    def static_augmentation(self):
        if self.mode != "static":
            return None
        from advbench.attacks.vat import VirtualAdversarial

        return VirtualAdversarial(eps=self.eps, xi=self.xi,
                                  power_iterations=self.power_iterations)


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


__all__ = ["DEFENSES", "Defense", "make_defense", "per_sample_cross_entropy"]
