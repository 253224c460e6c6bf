"""Fast Gradient Sign Method (Goodfellow et al., 2014, https://arxiv.org/abs/1412.6572)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from advbench.attacks.gradient_descent import GradientDescent, Plan, direction
from advbench.attacks.norms import NORMS, check_norm
from advbench.core.types import Model
from advbench.models.gradients import attack_model


def fgsm_direction(model: Model, x: tf.Tensor, labels: tf.Tensor, norm: str,
                   targeted: bool) -> tf.Tensor:
    """The unit FGSM step at x: sign of the loss gradient (linf) or its L2 direction (l2).

    Targeted: the step that decreases the loss of the target class.
    """
    return direction(model, x, labels, NORMS[norm], targeted)


class FGSM(GradientDescent):
    """One step of size eps along the sign of the loss gradient (L-inf), or along the
    normalised gradient (L2): the one-step case of the gradient-descent loop.

    Args:
        eps: step size, >= 0 (paper: 0.01 to 1 for curves, 0.1 for transfer). For ``l2``
            eps is the L2 norm of the perturbation.
        norm: "linf" (default, the paper's) or "l2".

    Example:
        >>> out = FGSM(eps=0.1)(model, x, y)
        >>> out.x_adv.shape == x.shape
        >>> outs = FGSM()(model, x, y, eps=[0.05, 0.1, 0.3])  # one output per eps
    """

    name = "fgsm"
    supports_targets = True

    def __post_init__(self) -> None:
        check_norm(self.norm, self.name)  # l1 is for the attacks of L1_ATTACKS

    def plan(self, eps: float) -> Plan:
        # One step of eps from x stays in the ball: no projection.
        return Plan(start=None, start_size=0.0, step_size=eps, steps=1, project=False)

    def line_step(self, eps: float) -> tuple[str, float]:
        return "x", eps

    def direction(self, model: Model, x: np.ndarray, labels: np.ndarray,
                  targeted: bool = False) -> np.ndarray:
        """The unit step direction for a batch (numpy)."""
        model = attack_model(model)  # called directly, not only through __call__
        fn = self.compiled(model, f"line-{targeted}", lambda: (
            lambda xb, yb: direction(model, xb, yb, self.ball, targeted)))
        return fn(tf.convert_to_tensor(x), tf.convert_to_tensor(labels)).numpy()


def apply_step(x: np.ndarray, step: np.ndarray, eps: float | np.ndarray) -> np.ndarray:
    """x + eps * step clipped to [0, 1]; eps scalar or (batch,)."""
    eps = np.asarray(eps, dtype=np.float32)
    if eps.ndim == 1:
        eps = eps.reshape((-1,) + (1,) * (x.ndim - 1))
    return np.clip(x + eps * step, 0.0, 1.0).astype(np.float32)
