"""Feature squeezing (Xu et al., 2017, https://arxiv.org/abs/1704.01155), one of the paper's
baselines: a colour-depth reduction layer at the model's input."""

from __future__ import annotations

from typing import Any

from advbench.core.checks import check_int
from advbench.core.errors import ParameterError
from advbench.defenses.base import Defense


class FeatureSqueezingDefense(Defense):
    """Feature squeezing (Xu et al.): colour depth reduced to ``bit_depth`` bits by a layer at
    the model's input, used in training and at prediction time. Its gradient is the identity
    (straight-through), so white-box gradient attacks see through it (BPDA)."""

    name = "feature-squeezing"
    dataset_defaults = {"mnist": {"bit_depth": 1}, "cifar10": {"bit_depth": 3}}

    def __init__(self, *, bit_depth: int = 1):
        check_int("feature squeezing bit depth", bit_depth, low=1)
        if bit_depth > 16:
            raise ParameterError(f"feature squeezing bit depth must be <= 16, got {bit_depth}")
        self.bit_depth = int(bit_depth)

    def model_options(self) -> dict[str, Any]:
        return {"squeeze_bits": self.bit_depth}
