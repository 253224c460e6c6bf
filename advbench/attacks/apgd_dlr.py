"""APGD-DLR: Auto-PGD on the difference-of-logits-ratio loss (Croce and Hein, ICML 2020,
https://arxiv.org/abs/2003.01690, equation 6), the second attack of AutoAttack's "rand"
version (with Expectation over Transformation) and of its "plus" version."""

from __future__ import annotations

from advbench.attacks.apgd import AutoPGD


class APGDDifferenceLogitsRatio(AutoPGD):
    """Auto-PGD maximising -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3), L-inf or L2.

    The DLR loss is invariant to shifts and scalings of the logits: a model that scales its
    logits until the softmax saturates (zero cross-entropy gradient) does not stop it.
    Needs at least 3 classes. Arguments (eps=0.3, norm="linf", n_iter=100, n_restarts=1,
    rho=0.75, eot_iter=1), input and output as ``APGDCrossEntropy``
    (``advbench.attacks.apgd_ce``).

    Example:
        >>> out = APGDDifferenceLogitsRatio(eps=0.3, eot_iter=20)(model, x, y, seed=0)
    """

    name = "apgd-dlr"
    loss = "dlr"
