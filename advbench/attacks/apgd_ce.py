"""APGD-CE: Auto-PGD on the cross-entropy loss (Croce and Hein, ICML 2020,
https://arxiv.org/abs/2003.01690), the first attack of AutoAttack's standard ensemble."""

from __future__ import annotations

from advbench.attacks.apgd import AutoPGD


class APGDCrossEntropy(AutoPGD):
    """Auto-PGD maximising the cross-entropy of the true label, L-inf or L2.

    Momentum 0.75, step size from 2 * eps halved at the paper's checkpoints when progress
    stalls, restart from the best point; per-sample early stop (a sample is frozen at its
    first adversarial iterate). Defaults are AutoAttack's standard setting (100 iterations,
    1 restart, rho 0.75), as in the authors' ``autoattack.py``; eps 0.3 is MNIST's L-inf
    budget (set eps for L2, e.g. 2.0 on MNIST, 0.5 on CIFAR-10).

    Args:
        eps: radius of the ball, >= 0 (default 0.3).
        norm: "linf" (default) or "l2".
        n_iter: steps per run, >= 1 (default 100).
        n_restarts: runs from random starts, >= 1 (default 1); each runs only on the samples
            the previous ones did not fool.
        rho: condition-1 fraction of loss increases, in [0, 1] (default 0.75).
        eot_iter: gradients averaged per step over the model's randomness, >= 1 (default 1;
            AutoAttack's "rand" version uses 20).

    Input: x float32 (batch, H, W, C) in [0, 1]; y int (batch,). Output: ``x_adv`` in [0, 1]
    within eps of x; samples the model misclassifies are returned unchanged.

    Example:
        >>> out = APGDCrossEntropy(eps=0.3)(model, x, y, seed=0)
        >>> out = APGDCrossEntropy(eps=2.0, norm="l2", n_restarts=5)(model, x, y, seed=0)
    """

    name = "apgd-ce"
    loss = "ce"
