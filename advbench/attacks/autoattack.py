"""AutoAttack: the ensembles of Croce and Hein, "Reliable evaluation of adversarial robustness
with an ensemble of diverse parameter-free attacks", ICML 2020, https://arxiv.org/abs/2003.01690,
and for L1 "Mind the box: l1-APGD for sparse adversarial attacks on image classifiers", ICML
2021, https://arxiv.org/abs/2103.01208, as the authors' ``autoattack.py`` runs them
(github.com/fra31/auto-attack): each attack only on the samples every earlier one failed on.

The versions are data (``VERSION_MEMBERS``): per version and norm, the members in order with
the parameters the authors' ``AutoAttack`` gives each (its constructor and ``set_version``):
    standard, L-inf and L2: apgd-ce (1 restart), apgd-t (9 target classes, 1 restart each),
        fab-t (9 target classes, 1 restart), square (5,000 queries, p_init 0.8).
    standard, L1: apgd-ce (5 restarts) and apgd-t (5 target classes), both with the
        "large reps" schedule (3, 2, 1 times eps), then fab-t and square as above.
    plus: apgd-ce and apgd-dlr (5 restarts each), fab (5 restarts), square, apgd-t (9
        targets), fab-t (9 targets). The authors warn that it is not meant for L1.
    rand: for randomised defenses: apgd-ce and apgd-dlr, 1 restart each, gradients averaged
        over 20 draws of the model's randomness (Expectation over Transformation).
APGD and FAB run 100 iterations. A member advbench does not have (none today: FAB, FAB-T and
Square in L1 are all in) is not run and is named in ``skipped``: the ensemble is then weaker
than the authors' and says so wherever its table is printed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from advbench.attacks import ATTACK_CLASSES
from advbench.attacks.apgd import MIN_CLASSES
from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.norms import NORMS
from advbench.core.errors import ParameterError
from advbench.core.types import Model
from advbench.models.zoo import predict_logits

Members = tuple[tuple[str, dict[str, Any]], ...]

# The authors' constructor settings of each member (autoattack.py, AutoAttack.__init__).
_APGD = {"n_iter": 100, "rho": 0.75}
_FAB = {"n_iter": 100, "alpha_max": 0.1, "eta": 1.05, "beta": 0.9}
_SQUARE = {"n_queries": 5000, "p_init": 0.8, "n_restarts": 1}
_STANDARD: Members = (
    ("apgd-ce", {**_APGD, "n_restarts": 1}),
    ("apgd-t", {**_APGD, "n_restarts": 1, "n_target_classes": 9}),
    ("fab-t", {**_FAB, "n_restarts": 1, "n_target_classes": 9}),
    ("square", _SQUARE),
)
_STANDARD_L1: Members = (
    ("apgd-ce", {**_APGD, "n_restarts": 5, "use_largereps": True}),
    ("apgd-t", {**_APGD, "n_restarts": 1, "n_target_classes": 5, "use_largereps": True}),
    ("fab-t", {**_FAB, "n_restarts": 1, "n_target_classes": 9}),
    ("square", _SQUARE),
)
# FAB-T runs with 1 restart in every version: the authors' loop sets it before FAB-T runs.
_PLUS: Members = (
    ("apgd-ce", {**_APGD, "n_restarts": 5}),
    ("apgd-dlr", {**_APGD, "n_restarts": 5}),
    ("fab", {**_FAB, "n_restarts": 5}),
    ("square", _SQUARE),
    ("apgd-t", {**_APGD, "n_restarts": 1, "n_target_classes": 9}),
    ("fab-t", {**_FAB, "n_restarts": 1, "n_target_classes": 9}),
)
_RAND: Members = (
    ("apgd-ce", {**_APGD, "n_restarts": 1, "eot_iter": 20}),
    ("apgd-dlr", {**_APGD, "n_restarts": 1, "eot_iter": 20}),
)
#: version -> norm -> the members in the order they run, with their parameters (eps and norm
#: are the ensemble's). tests/test_attack_autoattack.py holds it equal to the authors' objects.
VERSION_MEMBERS: dict[str, dict[str, Members]] = {
    "standard": {"linf": _STANDARD, "l2": _STANDARD, "l1": _STANDARD_L1},
    "plus": {"linf": _PLUS, "l2": _PLUS, "l1": _PLUS},
    "rand": {"linf": _RAND, "l2": _RAND, "l1": _RAND},
}
#: The ensemble's overrides (None: the version's value) and the member parameter each sets.
OVERRIDES = ("n_iter", "n_target_classes", "n_queries", "eot_iter")


def missing_reason(name: str, norm: str) -> str | None:
    """Why advbench cannot run member ``name`` at ``norm`` (None: it can)."""
    if name not in ATTACK_CLASSES:
        return f"{name} is not in this advbench"
    if not NORMS[norm].takes(name):
        return f"advbench's {name} has no {norm}"
    return None


#: The randomness check (the authors' ``check_randomized``): passes over the same images, and
#: the largest L2 distance between their L2-normalised logits that still counts as the same.
RANDOMNESS_PASSES = 5
RANDOMNESS_TOLERANCE = 1e-4

#: ``extras["broken_by"]`` for a sample no attack fooled, and for one misclassified clean.
ROBUST = -1
MISCLASSIFIED = -2


def robust_accuracy_by_attack(broken_by: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Robust accuracy after each attack of the ensemble, in order, from ``broken_by``
    (int, (n,): the index in ``names`` of the attack that first fooled each sample, ROBUST or
    MISCLASSIFIED): {"clean": accuracy, names[0]: after it, ...}, fractions of n. The last
    value is the ensemble's robust accuracy. AutoAttack prints the same table."""
    broken_by = np.asarray(broken_by)
    n = max(len(broken_by), 1)
    table = {"clean": float(np.sum(broken_by != MISCLASSIFIED) / n)}
    for index, name in enumerate(names):
        table[name] = float(np.sum((broken_by == ROBUST) | (broken_by > index)) / n)
    return table


class AutoAttack(Attack):
    """The AutoAttack ensemble: its members in order (``VERSION_MEMBERS``), each on the
    samples still robust.

    Every member draws its randomness per sample from ``seed`` and the sample's row, so a
    member fools in the ensemble exactly the samples it fools alone: the ensemble is never
    weaker than any member run with the same settings and seed (on a deterministic model).
    A sample gets the adversarial of the first member that fooled it (checked with one
    forward pass, as in the authors' code); samples no member fooled get the last member's
    point (the lowest-loss or highest-loss point it found, inside the ball).

    Args:
        eps: radius of the ball, >= 0 (default 0.3, MNIST L-inf).
        norm: "linf" (default), "l2" or "l1".
        version: "standard" (default), "plus" or "rand".
        n_iter: APGD and FAB iterations per run, >= 1 (default None: the version's, 100).
        n_target_classes: target classes of apgd-t and fab-t, >= 1 (default None: the
            version's, 9; 5 for apgd-t in the L1 standard version).
        n_queries: Square's queries, >= 1 (default None: the version's, 5000).
        eot_iter: gradients averaged per APGD step, >= 1, "rand" version only (default None:
            its 20).

    Input: x float32 (batch, H, W, C) in [0, 1]; y int (batch,). Output: ``x_adv`` in [0, 1]
    within eps of x; ``extras["broken_by"]`` (batch,) int32: the index in ``attack_names``
    of the member that first fooled the sample, -1 if none did, -2 if the model misclassifies
    it clean. ``robust_accuracy_by_attack`` turns it into the per-attack table.

    Example:
        >>> attack = AutoAttack(eps=0.3)
        >>> out = attack(model, x, y, seed=0)
        >>> robust_accuracy_by_attack(out.extras["broken_by"], attack.attack_names)
    """

    name = "autoattack"
    randomized = True

    def __post_init__(self) -> None:
        norm, version = self.norm, self.version
        # The members' settings a caller gave (None keeps the version's).
        given = {param: getattr(self, param) for param in ("n_iter", "n_target_classes",
                                                           "n_queries", "eot_iter")
                 if getattr(self, param) is not None}
        members = VERSION_MEMBERS[version][norm]
        for param in given:
            if not any(param in settings for _, settings in members):
                raise ParameterError(f"{param} applies to no member of the {version} version "
                                     f"({', '.join(name for name, _ in members)}); drop it")
        from advbench.attacks import ATTACKS

        attacks, skipped = [], {}
        for name, settings in members:
            reason = missing_reason(name, norm)
            if reason is not None:
                skipped[name] = reason
                continue
            params = {**settings, **{k: v for k, v in given.items() if k in settings}}
            member: Any = ATTACKS[name]  # every member takes eps and norm
            attacks.append(member(eps=self.eps, norm=norm, **params))
        self.attacks: tuple[Any, ...] = tuple(attacks)
        #: member name -> why it is not run (the authors' ensemble runs it).
        self.skipped: dict[str, str] = skipped

    @property
    def attack_names(self) -> tuple[str, ...]:
        """The registry names of the members that run, in order."""
        return tuple(attack.name for attack in self.attacks)

    def __repr__(self) -> str:
        # The members that ran are part of the provenance: they depend on what this advbench
        # has (``skipped``), not only on the parameters.
        return f"{super().__repr__()} running {', '.join(self.attack_names) or 'nothing'}"

    def shown_params(self) -> dict[str, Any]:
        """``params()`` with each override left None shown as the members' values: one value
        where they agree ("n_iter=100"), per member where not ("n_target_classes=apgd-t:5,
        fab-t:9"), "unused" where no member takes it."""
        shown = self.params()
        for param in OVERRIDES:
            if shown.get(param) is not None:
                continue
            values = {attack.name: attack.params()[param] for attack in self.attacks
                      if param in attack.params()}
            if not values:
                shown[param] = "unused"
            elif len(set(values.values())) == 1:
                shown[param] = next(iter(values.values()))
            else:
                shown[param] = ",".join(f"{name}:{v}" for name, v in values.items())
        return shown

    def setting_lines(self) -> list[str]:
        """One line per member, in order, with every setting it runs with (the version's,
        with the overrides given), and one per member not run and why."""
        from advbench.attacks.budgets import parameter_line

        count = len(self.attacks)
        lines = [f"  member {i}/{count} " + parameter_line(
            attack.name, {"norm": attack.norm, **attack.params()})
            for i, attack in enumerate(self.attacks, 1)]
        return lines + [f"  not run: {name} ({why})" for name, why in self.skipped.items()]

    def model_warnings(self, model: Model, x: np.ndarray) -> list[str]:
        """The authors' checks (``checks.py`` of fra31/auto-attack) that advbench does not
        make elsewhere: a model whose outputs change between passes on the same images under
        a version other than rand (theirs), the converse (rand on a deterministic model:
        advbench's, its averaging only multiplies the cost), the plus version outside L-inf
        and L2 (theirs), and members the model's classes cannot run as asked (theirs)."""
        warnings = []
        outputs = [predict_logits(model, x).astype(np.float64) for _ in range(RANDOMNESS_PASSES)]
        unit = [o / (np.linalg.norm(o, axis=1, keepdims=True) + 1e-10) for o in outputs]
        changes = max(float(np.linalg.norm(u - unit[0], axis=1).max()) for u in unit[1:])
        predictions_change = any((o.argmax(axis=1) != outputs[0].argmax(axis=1)).any()
                                 for o in outputs[1:])
        randomized = predictions_change or changes > RANDOMNESS_TOLERANCE
        if randomized and self.version != "rand":
            warnings.append(
                f"autoattack: the model's outputs on the same images differ between "
                f"{RANDOMNESS_PASSES} passes (a randomized defense?): the {self.version} "
                "version attacks one draw of its randomness at a time; use --version rand "
                "(gradients averaged over --eot-iter draws)")
        if not randomized and self.version == "rand":
            warnings.append(
                f"autoattack: the model's outputs on the same images are the same on "
                f"{RANDOMNESS_PASSES} passes (deterministic): --version rand only multiplies "
                "the cost by averaging identical gradients; use --version standard")
        if self.version == "plus" and self.norm not in ("linf", "l2"):
            warnings.append(f"autoattack: the plus version is meant for linf and l2, not "
                            f"{self.norm} (the authors warn likewise)")
        num_classes = int(model.output_shape[-1])
        for attack in self.attacks:
            needed = MIN_CLASSES.get(getattr(attack, "loss", ""), 0)
            if num_classes < needed:
                warnings.append(f"autoattack: {attack.name} needs at least {needed} classes, "
                                f"the model has {num_classes}: it is not run")
            elif getattr(attack, "n_target_classes", 0) > num_classes - 1:
                warnings.append(
                    f"autoattack: {attack.name} asks for {attack.n_target_classes} target "
                    f"classes, the model has {num_classes - 1} besides the label")
        return warnings

    @property
    def protocol(self) -> str:
        """The ensemble as a number quoted from it must name it: version, norm, eps and
        any member not run ("autoattack standard, linf eps=0.3" + "; without fab-t")."""
        text = f"autoattack {self.version}, {self.norm} eps={self.eps:g}"
        if self.skipped:
            text += f"; without {', '.join(self.skipped)} (not the authors' full ensemble)"
        return text

    def run(self, model: Model, x: np.ndarray, y: np.ndarray, *, target: np.ndarray | None,
            seed: int, logits: np.ndarray | None = None) -> AttackOutput:
        num_classes = int(model.output_shape[-1])
        x_adv = x.copy()
        logits = self.clean_logits(model, x, logits)
        broken_by = np.where(logits.argmax(axis=1) == y, ROBUST, MISCLASSIFIED).astype(np.int32)
        for index, attack in enumerate(self.attacks):
            if num_classes < MIN_CLASSES.get(getattr(attack, "loss", ""), 0):
                continue  # a DLR loss needs 3 or 4 classes; the authors' checks warn likewise
            todo = np.flatnonzero(broken_by == ROBUST)
            if todo.size == 0:
                break
            # The member's random draws depend on (seed, row), so its result per sample is
            # the one it gets alone on the whole batch.
            out_x, _, _ = attack.run_on(model, x[todo], y[todo], seed=seed, ids=todo,
                                        total=len(x), logits=logits[todo])
            fooled = predict_logits(model, out_x).argmax(axis=1) != y[todo]
            broken_by[todo[fooled]] = index
            # Samples still robust keep the latest member's point: inside the ball, and the
            # most useful one to inspect (the last attack's best).
            x_adv[todo] = out_x
        return AttackOutput(x_adv=self.held(x, x_adv),
                            extras={"broken_by": broken_by})


def artifact_table(attrs: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """The per-attack table of an ``autoattack`` attack artifact (``attrs``, ``arrays`` as
    ``artifacts.read_attack_artifact`` gives them): {"protocol": the ensemble's,
    "after": ``robust_accuracy_by_attack`` on its ``extras/broken_by``, "skipped": the
    members not run}, robust accuracy on the model it was crafted on. None for another attack,
    or when the artifact's members are not the ones this advbench runs for its parameters
    (its ``attack_repr`` differs): its indices would name the wrong members."""
    if attrs.get("attack") != "autoattack" or "extras/broken_by" not in arrays:
        return None
    try:
        attack = AutoAttack(**(attrs.get("attack_params") or {}))
    except (TypeError, ParameterError):
        return None
    if attrs.get("attack_repr") != repr(attack):
        return None
    return {"protocol": attack.protocol, "skipped": dict(attack.skipped),
            "after": robust_accuracy_by_attack(arrays["extras/broken_by"], attack.attack_names)}
