"""The attack interface shared by every attack module.

An attack is a small object holding hyperparameters (keyword-only, paper defaults). It never
binds a model: ``attack(model, x, y, seed=...)`` attacks any Keras model that maps images in
[0, 1] to logits, so one attack object serves white-box runs and transfer alike. Batching,
progress, seeds per batch and resume live in the driver (``advbench.run.runner``), not here.
"""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from typing import Any, Callable, ClassVar

import numpy as np
from numpy.typing import ArrayLike
import tensorflow as tf

from advbench.attacks.norms import NORMS
from advbench.core import progress
from advbench.core.checks import check_class_labels, check_images, check_seed, check_targets
from advbench.core.errors import ParameterError
from advbench.core.params import Parameterized, Spec
from advbench.core.types import Model
from advbench.models.gradients import attack_model
from advbench.models.zoo import predict_logits


@dataclasses.dataclass
class AttackOutput:
    """What an attack returns for one batch.

    x_adv: float32 array shaped like the input, in [0, 1].
    extras: per-sample arrays of shape (batch,) that the attack knows and the driver cannot
        recompute, e.g. ``eps`` (minimal eps found by fgsm-min) or ``iterations``.
    """

    x_adv: np.ndarray
    extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Attack(Parameterized):
    """Base class: subclasses set ``name`` (their key in ``advbench.attacks.ATTACK_SPECS``,
    which declares their parameters: ``advbench.core.params.Parameterized`` builds the keyword-only
    constructor, its checks and the attributes of the same names from it) and implement
    ``run``; ``__post_init__`` adds checks across parameters and derived state.

    Class attributes:
        name: the CLI name (registry key).
        minimal: True when the attack searches the smallest perturbation that flips the
            prediction (usable for the empirical-robustness metric). An instance may set its
            own: FAB is minimal without eps and bounded with it.
        randomized: True when the result depends on ``seed``.
        supports_targets: True when ``target`` labels can be given.
        param_names: the constructor's keyword-only parameters, in order, derived from its
            spec (never kept by hand): provenance and the run key come from them.

    Attribute:
        norm: the norm the attack measures its perturbation in ("linf", "l2", "l0"): a class
            constant of attacks with one norm, the constructor's ``norm`` of attacks that take
            one (fgsm, pgd), which then have no class attribute ``norm``.
    """

    minimal: bool = False
    randomized: ClassVar[bool] = False
    supports_targets: ClassVar[bool] = False
    takes_logits: ClassVar[bool] = False
    norm: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Attacks whose ``run`` takes the clean logits get them from the caller (the driver
        # computes them once per batch) instead of a forward pass of their own.
        cls.takes_logits = "logits" in inspect.signature(cls.run).parameters

    @classmethod
    def _registry(cls) -> dict[str, Spec]:
        from advbench.attacks import ATTACK_SPECS

        return ATTACK_SPECS

    def __init__(self, **params: Any) -> None:
        self._compiled_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        super().__init__(**params)

    def accepts_targets(self) -> bool:
        """True when this attack, with its parameters, takes ``target`` labels: the class's
        ``supports_targets``, unless a parameter rules targets out (fgsm-min's authors
        search)."""
        return self.supports_targets

    def untargeted_only(self) -> str:
        """Who refuses targets, for error messages: the attack's name, with the parameters
        that differ from their defaults when they (not the attack) rule targets out."""
        if not self.supports_targets:
            return f"attack {self.name!r}"
        defaults = self.spec.defaults()
        changed = [f"{k}={v!r}" for k, v in self.params().items() if defaults.get(k) != v]
        return f"attack {self.name!r} with {', '.join(changed)}"

    def shown_params(self) -> dict[str, Any]:
        """The parameters as the line that starts a run prints them: ``params()`` (what the
        run key and the artifact hold), with values an attack resolves itself (a None that
        means "the version's") shown resolved. The base shows ``params()``."""
        return self.params()

    def setting_lines(self) -> list[str]:
        """Lines printed after the run's parameter line for settings it cannot hold (an
        ensemble's members); the base has none."""
        return []

    def model_warnings(self, model: Model, x: np.ndarray) -> list[str]:
        """Warnings about using this attack on ``model``, read from its outputs on ``x``
        (float32 (batch, H, W, C) in [0, 1]: the run's first batch), one line each; the
        driver prints them at the start of a run and stores them in the artifact
        (``warnings``). The base has none."""
        return []

    def failure_hint(self, fooled: np.ndarray, extras: dict[str, np.ndarray],
                     correct: np.ndarray | None = None) -> str:
        """One line for the end of a run when the attack's own failures point at a setting
        to change ("" when none): ``fooled`` (n,) bool, the samples the run moved as asked;
        ``extras`` the per-sample extras of the whole run; ``correct`` (n,) bool, the samples
        the model classifies correctly (None: not known). The base says nothing."""
        return ""

    # -- running --------------------------------------------------------------------------
    def __call__(self, model: Model, x: ArrayLike, y: ArrayLike, *,
                 target: ArrayLike | None = None, seed: int = 0,
                 logits: ArrayLike | None = None) -> AttackOutput:
        """Attack one batch.

        Args:
            model: a Keras model mapping float32 NHWC images in [0, 1] to logits.
            x: float array (batch, H, W, C) in [0, 1]; float64 and float16 are converted to
                float32, integer arrays refused (8-bit pixels: divide by 255 first).
            y: int array (batch,) of class indices (not one-hot, not (batch, 1)): true labels
                (untargeted) or ignored when ``target`` given.
            target: optional int array (batch,) of target classes (targeted attacks only).
            seed: integer seed in [0, 2**32) for randomized attacks; the driver derives one
                per batch so that a resumed run reproduces an uninterrupted one.
            logits: optional float array (batch, classes), the model's logits on x, when the
                caller has them (the driver does): attacks that need the clean prediction
                then skip their own forward pass.

        Raises:
            ParameterError: one line naming the fix, for images outside [0, 1], NaN or
                infinite, integer dtypes, a rank other than 4, one-hot or (batch, 1) labels,
                labels or targets outside the model's classes, mismatched lengths, a bad
                seed, logits of another shape than (batch, classes). The attacks do not
                check labels and targets again.
        """
        if target is not None and not self.accepts_targets():
            raise ParameterError(f"{self.untargeted_only()} is untargeted only; drop the "
                                 "target option")
        x = check_images("x", x)
        outputs = getattr(model, "output_shape", None)
        num_classes = outputs[-1] if isinstance(outputs, tuple) and outputs and isinstance(
            outputs[-1], int) else None
        y = check_class_labels("y", y, num_classes=num_classes)
        if x.shape[0] != y.shape[0]:
            raise ParameterError(
                f"x has {x.shape[0]} samples but y has {y.shape[0]}; pass one label per image"
            )
        if target is not None:
            target = check_targets(np.asarray(target), x.shape[0], num_classes)
        check_seed(seed)
        context: dict[str, Any] = {}
        if self.takes_logits and logits is not None:
            logits = np.asarray(logits, dtype=np.float32)
            if logits.shape[0] != x.shape[0] or logits.ndim != 2:
                raise ParameterError(f"logits must have shape ({x.shape[0]}, classes), one row "
                                     f"per image, got {logits.shape}")
            context["logits"] = logits
        # Same logits, cheaper input gradients on the CPU (advbench.models.gradients).
        out = self.run(attack_model(model), x, y, target=target, seed=int(seed), **context)
        out.x_adv = self.held(x, np.clip(np.asarray(out.x_adv, dtype=np.float32), 0.0, 1.0))
        return out

    def budget(self) -> float | None:
        """The eps the attack's output is held to in its norm, None for attacks without one
        (minimal attacks: fgsm-min, deepfool, cw-l2, fmn, fab without eps; jsma)."""
        eps = getattr(self, "eps", None)
        return None if eps is None or self.minimal else float(eps)

    def held(self, x: np.ndarray, x_adv: np.ndarray) -> np.ndarray:
        """x_adv held to the budget (``budget``) exactly, the one rule of every attack
        (``norms.Norm.hold``): ||x_adv - x|| <= eps computed in float64, x_adv in [0, 1].
        x, x_adv: float32 (batch, H, W, C); returns float32 shaped like x."""
        eps = self.budget()
        if eps is None:
            return x_adv
        return NORMS[self.norm].hold(x, x_adv, eps).numpy()

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int) -> AttackOutput:
        raise NotImplementedError

    @staticmethod
    def clean_logits(model: Model, x: np.ndarray, logits: np.ndarray | None) -> np.ndarray:
        """The model's logits on x, float32 (batch, classes): ``logits`` when the caller
        handed them (the driver's clean pass of the batch), else one forward pass."""
        return predict_logits(model, x) if logits is None else logits

    def compiled(self, model: Model, key: str, build: Callable[[], Callable]) -> Callable:
        """A ``tf.function`` built once per (attack, model, key) and reused across batches.

        ``build`` returns the Python function to compile; it may close over ``model``. A
        ``tf.function`` with an input signature (APGD, FAB, Square) is used as it is: wrapped
        in another, each batch size the outer one traced was one more graph to optimise
        (3.4 s for APGD-T on the CIFAR-10 CNN at load 5, docs/performance.md), and its first
        graph, specialised to the first batch size, could round differently from the
        later ones; the signature serves every size with one graph. While a progress bar listens
        (``advbench.core.progress.listening``) a second one is built, with the in-loop step
        callback (``advbench.core.ops.report_step``) traced in: the same ops otherwise.
        """
        if progress.listening():
            key += "/progress"
        per_model = self._compiled_cache.get(model)
        if per_model is None:
            per_model = {}
            self._compiled_cache[model] = per_model
        if key not in per_model:
            function = build()
            if getattr(function, "input_signature", None) is None:
                function = tf.function(function, reduce_retracing=True)
            per_model[key] = function
        return per_model[key]


class EnsembleMember(Attack):
    """An attack AutoAttack runs on the samples still robust (APGD, FAB, Square): ``run_on``
    attacks rows ``ids`` of a caller's batch of ``total`` samples, its random draws depending
    only on seed and row, so the ensemble gets each sample's standalone result."""

    def run_on(self, model: Model, x: np.ndarray, y: np.ndarray, *, seed: int, ids: np.ndarray,
               total: int, logits: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """x_adv, fooled (bool, n: adversarial or misclassified clean) and extras of x, rows
        ``ids`` of the caller's batch; ``logits``: the clean logits of x when known."""
        raise NotImplementedError

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int, logits: np.ndarray | None = None) -> AttackOutput:
        x_adv, _, extras = self.run_on(model, x, y, seed=seed, ids=np.arange(len(x)),
                                       total=len(x), logits=logits)
        return AttackOutput(x_adv=x_adv, extras=extras)
