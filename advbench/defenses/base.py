"""The defense interface: a small object of hyperparameters (keyword-only, the paper's
defaults) with hooks that the shared training loop (``advbench.run.train``) calls."""

from __future__ import annotations

from typing import Any, TYPE_CHECKING

import tensorflow as tf

from advbench.core.params import Param, Parameterized, Spec
from advbench.core.types import Model

if TYPE_CHECKING:
    from advbench.attacks.base import Attack


class Defense(Parameterized):
    """Base class: subclasses set ``name``, their key in ``advbench.defenses.DEFENSE_SPECS``,
    which declares their keyword-only hyperparameters (stored as attributes of the same names,
    ``param_names``; see ``advbench.core.params.Parameterized``), and override the hooks they
    need."""

    copies: int = 0

    @classmethod
    def _registry(cls) -> dict[str, Spec]:
        from advbench.defenses import DEFENSE_SPECS

        return DEFENSE_SPECS

    def param_label(self, param: Param) -> str:
        # "gda sigma must be >= 0": which defense, since defenses share parameter names.
        return f"{self.name} {param.name.replace('_', ' ')}"

    @classmethod
    def for_dataset(cls, dataset: str, **overrides: Any) -> "Defense":
        """The paper's settings for ``dataset``, with user overrides (None = keep default)."""
        params = dict(cls.spec.dataset_defaults.get(dataset, {}))
        params.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**params)

    # Hooks: the defaults mean "no change".
    def model_options(self) -> dict[str, Any]:
        return {}

    def target_distribution(self, labels: tf.Tensor, num_classes: int) -> tf.Tensor:
        return tf.one_hot(labels, num_classes)

    def perturb_batch(self, x: tf.Tensor, noisy: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        return x

    @property
    def has_online_loss(self) -> bool:
        """True when ``online_loss`` adds a term to every batch's loss."""
        return False

    def online_loss(self, model: Model, x: tf.Tensor, labels: tf.Tensor, targets: tf.Tensor,
                    logits: tf.Tensor, seed: tf.Tensor, *,
                    rows: tuple[tf.Tensor, tf.Tensor] | None = None) -> tf.Tensor:
        """Extra loss per sample, shape (batch,). ``rows`` = (first, total): x holds rows
        first.. of a global batch of ``total`` split over replicas; random draws must come
        from the global batch (``global_batch_normal``) to match a one-device run."""
        raise NotImplementedError

    def static_augmentation(self) -> Attack | None:
        """An attack object whose adversarials of the training set are appended, or None."""
        return None

    @property
    def fresh_after_crafting(self) -> bool:
        """True when, after the static augmentation is crafted, the model restarts from its
        untrained weights (and optimizer state) to learn the union."""
        return False


class NoDefense(Defense):
    """No defense: plain training (the paper's undefended models)."""

    name = "none"


def global_batch_normal(x: tf.Tensor, seed: tf.Tensor,
                        rows: tuple[tf.Tensor, tf.Tensor] | None = None) -> tf.Tensor:
    """Standard normal noise shaped like x: the rows ``rows = (first, total)`` of a draw over
    the whole global batch of ``total`` samples (the whole draw when rows is None), so that
    every replica of a distributed step gets what one device would draw for those rows."""
    if rows is None:
        return tf.random.stateless_normal(tf.shape(x), seed=seed, dtype=x.dtype)
    first, total = rows
    shape = tf.concat([[total], tf.shape(x)[1:]], axis=0)
    return tf.random.stateless_normal(shape, seed=seed, dtype=x.dtype)[
        first:first + tf.shape(x)[0]]
