"""FGSM adversarial training (Goodfellow et al., 2014, https://arxiv.org/abs/1412.6572), one
of the paper's baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tensorflow as tf

from advbench.core.ops import per_sample_soft_cross_entropy
from advbench.core.types import Model
from advbench.defenses import FGSM_AT_MODES
from advbench.defenses.base import Defense

if TYPE_CHECKING:
    from advbench.attacks.base import Attack

MODES = FGSM_AT_MODES


class FGSMAdversarialTraining(Defense):
    """FGSM adversarial training (Goodfellow et al.).

    Args:
        eps: FGSM step (paper: 0.3 MNIST, 0.05 CIFAR-10).
        mode: "static" (the paper's: after a first training phase, FGSM adversarials of the
            whole training set are crafted once on that model, appended, and training goes
            on over the union), "fresh" (the authors' code, ART history 735ead0c0,
            ``train_adversarially.py``: the same adversarials, crafted on a separately
            trained model, learnt with the clean set by a fresh, untrained model; here the
            first-phase model crafts them and the weights restart from their initial values)
            or "online" (every batch: loss = (1 - ratio) * J(x) + ratio * J(x_adv), x_adv
            crafted on the current weights).
        ratio: weight of the adversarial loss in online mode (0.5, Goodfellow et al.).
    """

    name = "fgsm-at"

    @property
    def has_online_loss(self) -> bool:
        return self.mode == "online"

    def online_loss(self, model: Model, x: tf.Tensor, labels: tf.Tensor, targets: tf.Tensor,
                    logits: tf.Tensor, seed: tf.Tensor, *,
                    rows: tuple[tf.Tensor, tf.Tensor] | None = None) -> tf.Tensor:
        from advbench.attacks.fgsm import fgsm_direction

        x_adv = tf.stop_gradient(tf.clip_by_value(
            x + self.eps * fgsm_direction(model, x, labels, "linf", False), 0.0, 1.0))
        adv_logits = model(x_adv, training=True)
        clean = per_sample_soft_cross_entropy(targets, logits)
        adv = per_sample_soft_cross_entropy(targets, adv_logits)
        # Replaces the clean loss: (1 - ratio) J(x) + ratio J(x_adv) - J(x).
        return self.ratio * (adv - clean)

    @property
    def fresh_after_crafting(self) -> bool:
        return self.mode == "fresh"

    def static_augmentation(self) -> Attack | None:
        if self.mode not in ("static", "fresh"):
            return None
        from advbench.attacks.fgsm import FGSM

        return FGSM(eps=self.eps)
