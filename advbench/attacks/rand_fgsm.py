"""Random + FGSM (R+FGSM; Tramer et al., 2017, https://arxiv.org/abs/1705.07204)."""

from __future__ import annotations

from advbench.attacks.gradient_descent import GradientDescent, Plan
from advbench.core.checks import check_range
from advbench.core.errors import ParameterError


def check_alpha(alpha: float, eps: float) -> None:
    """ParameterError unless 0 <= alpha <= eps."""
    check_range("alpha", alpha, low=0.0)
    if alpha > eps:
        raise ParameterError(
            f"alpha ({alpha}) must be <= eps ({eps}): the random step is part of the "
            "eps budget; lower alpha or raise eps")


class RandomFGSM(GradientDescent):
    """A random sign step of size alpha, then an FGSM step of size eps - alpha from there,
    which escapes the gradient masking of models adversarially trained with FGSM:
    x' = clip(x + alpha * sign(N(0, I))), x_adv = clip(x' + (eps - alpha) * sign(grad at x')).

    The L-inf distance to x is at most eps (alpha + (eps - alpha)); outputs are clipped to
    [0, 1] after each step.

    Args:
        eps: total L-inf budget, >= 0 (default 0.1).
        alpha: size of the random step, 0 <= alpha <= eps (default 0.05, the paper's and
            Tramer et al.'s MNIST setting).

    Example:
        >>> out = RandomFGSM(eps=0.3, alpha=0.05)(model, x, y, seed=1)
        >>> out.x_adv.shape == x.shape
    """

    name = "rand-fgsm"
    norm = "linf"
    randomized = True

    def __post_init__(self) -> None:
        check_alpha(self.alpha, self.eps)

    @property
    def sign_step(self) -> float:  # type: ignore[override]
        return self.alpha

    def plan(self, eps: float) -> Plan:
        check_alpha(self.alpha, eps)
        # alpha + (eps - alpha) is the whole budget: the path cannot leave the ball.
        return Plan(start="sign", start_size=self.alpha, step_size=eps - self.alpha, steps=1,
                    project=False)

    def line_step(self, eps: float) -> tuple[str, float]:
        # Below alpha the budget cannot hold the random step: the noise alone, of size eps
        # (the paper's Figure 5 note), where a run at that eps is refused.
        return ("sign", eps - self.alpha) if eps >= self.alpha else ("noise", eps)
