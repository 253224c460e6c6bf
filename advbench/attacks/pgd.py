"""Projected gradient descent (Madry et al., 2017, https://arxiv.org/abs/1706.06083)."""

from __future__ import annotations

from advbench.attacks.gradient_descent import GradientDescent, Plan
from advbench.attacks.norms import check_norm


class PGD(GradientDescent):
    """Iterated FGSM with projection onto the eps ball and [0, 1], from a random start (the
    gradient-descent loop of ``gradient_descent.descend``).

    By default a fixed number of steps as in Madry et al.: later steps keep raising the loss,
    which matters for transfer. ``early_stop=True`` freezes each sample at its first
    adversarial iterate and stops when all are: accuracy under attack at most that of the
    full run (a sample cannot drift back to its class) for a fraction of the gradient passes
    on an undefended model, but less confident adversarials.

    Args:
        eps: radius of the ball, >= 0 (default 0.3, Madry et al.'s MNIST setting); L-inf or
            L2 per ``norm``.
        step_size: size of each step, > 0 (default 0.01); an L2 length for ``l2``.
        steps: number of steps, >= 0 (default 40).
        random_start: start from a uniform random point of the ball (default True).
        norm: "linf" (default) or "l2".
        early_stop: stop each sample once adversarial (default False, Madry et al.'s form).

    Example:
        >>> out = PGD(eps=0.3, step_size=0.01, steps=40)(model, x, y, seed=0)
        >>> out = PGD(norm="l2", eps=2.0, step_size=0.1)(model, x, y, target=t, seed=0)
    """

    name = "pgd"
    randomized = True
    supports_targets = True

    def __post_init__(self) -> None:
        check_norm(self.norm, self.name)  # l1 is for the attacks of L1_ATTACKS

    def plan(self, eps: float) -> Plan:
        return Plan(start="ball" if self.random_start else None, start_size=0.0,
                    step_size=self.step_size, steps=self.steps, project=True)
