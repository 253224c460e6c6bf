"""Fast Gradient Sign Method (Goodfellow et al., 2014, https://arxiv.org/abs/1412.6572)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.norms import NORMS
from advbench.core.ops import loss_gradient
from advbench.core.types import Model
from advbench.models.gradients import attack_model


def fgsm_direction(model: Model, x: tf.Tensor, labels: tf.Tensor, norm: str,
                   targeted: bool) -> tf.Tensor:
    """The unit FGSM step at x: sign of the loss gradient (linf) or its L2 direction (l2).

    Targeted: the step that decreases the loss of the target class.
    """
    grad, _ = loss_gradient(model, x, labels)
    if targeted:
        grad = -grad
    return NORMS[norm].normalise(grad)


class FGSM(Attack):
    """One step of size eps along the sign of the loss gradient (L-inf), or along the
    normalised gradient (L2).

    Args:
        eps: step size, >= 0 (paper: 0.01 to 1 for curves, 0.1 for transfer). For ``l2``
            eps is the L2 norm of the perturbation.
        norm: "linf" (default, the paper's) or "l2".

    Example:
        >>> out = FGSM(eps=0.1)(model, x, y)
        >>> out.x_adv.shape == x.shape
    """

    name = "fgsm"
    supports_targets = True

    def direction(self, model: Model, x: np.ndarray, labels: np.ndarray,
                  targeted: bool = False) -> np.ndarray:
        """The unit step direction for a batch (numpy); shared by curves over many eps."""
        model = attack_model(model)  # called directly by curves, not only through __call__
        fn = self.compiled(model, f"direction-{self.norm}-{targeted}", lambda: (
            lambda xb, yb: fgsm_direction(model, xb, yb, self.norm, targeted)))
        return fn(tf.convert_to_tensor(x), tf.convert_to_tensor(labels)).numpy()

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int) -> AttackOutput:
        targeted = target is not None
        labels = y if target is None else target
        step = self.direction(model, x, labels, targeted)
        return AttackOutput(x_adv=np.clip(x + self.eps * step, 0.0, 1.0))


def apply_step(x: np.ndarray, step: np.ndarray, eps: float | np.ndarray) -> np.ndarray:
    """x + eps * step clipped to [0, 1]; eps scalar or (batch,)."""
    eps = np.asarray(eps, dtype=np.float32)
    if eps.ndim == 1:
        eps = eps.reshape((-1,) + (1,) * (x.ndim - 1))
    return np.clip(x + eps * step, 0.0, 1.0).astype(np.float32)
