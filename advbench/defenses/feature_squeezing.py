"""Feature squeezing (Xu et al., 2017, https://arxiv.org/abs/1704.01155), one of the paper's
baselines: a colour-depth reduction layer at the model's input."""

from __future__ import annotations

from typing import Any

from advbench.defenses.base import Defense


class FeatureSqueezingDefense(Defense):
    """Feature squeezing (Xu et al.): colour depth reduced to ``bit_depth`` bits by a layer at
    the model's input, used in training and at prediction time. Its gradient is the identity
    (straight-through), so white-box gradient attacks see through it (BPDA)."""

    name = "feature-squeezing"

    def model_options(self) -> dict[str, Any]:
        return {"squeeze_bits": self.bit_depth}
