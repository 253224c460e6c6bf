"""Virtual adversarial training (Miyato et al., https://arxiv.org/abs/1704.03976), one of the
paper's baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from advbench.core.types import Model, Tensor
from advbench.defenses import VAT_MODES
from advbench.defenses.base import Defense, global_batch_normal

if TYPE_CHECKING:
    from advbench.attacks.base import Attack

MODES = VAT_MODES


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

    @property
    def has_online_loss(self) -> bool:
        return self.mode == "loss"

    def online_loss(self, model: Model, x: Tensor, labels: Tensor, targets: Tensor,
                    logits: Tensor, seed: Tensor, *,
                    rows: tuple[Tensor, Tensor] | None = None) -> Tensor:
        from advbench.attacks.vat import vat_loss

        return self.alpha * vat_loss(model, x, logits, eps=self.eps, xi=self.xi,
                                     power_iterations=self.power_iterations,
                                     seed_tensor=seed, training=True,
                                     start=global_batch_normal(x, seed, rows))

    def static_augmentation(self) -> Attack | None:
        if self.mode != "static":
            return None
        from advbench.attacks.vat import VirtualAdversarial

        return VirtualAdversarial(eps=self.eps, xi=self.xi,
                                  power_iterations=self.power_iterations)
