"""Virtual adversarial training (Miyato et al., https://arxiv.org/abs/1704.03976), one of the
paper's baselines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from advbench.core.checks import MAX_POWER_ITERATIONS, check_int, check_range
from advbench.core.errors import ParameterError
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

    def __init__(self, *, eps: float = 2.1, mode: str = "static", alpha: float = 1.0,
                 xi: float = 1e-6, power_iterations: int = 1):
        check_range("vat eps", eps, low=0.0, low_inclusive=False)
        if mode not in MODES:
            raise ParameterError(f"vat mode must be static or loss, got {mode!r}")
        check_range("vat alpha", alpha, low=0.0)
        check_range("vat xi", xi, low=0.0, low_inclusive=False)
        check_int("vat power iterations", power_iterations, low=1,
                  high=MAX_POWER_ITERATIONS)
        self.eps = float(eps)
        self.mode = mode
        self.alpha = float(alpha)
        self.xi = float(xi)
        self.power_iterations = int(power_iterations)

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
