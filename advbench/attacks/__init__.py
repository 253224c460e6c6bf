"""Attacks, one module each, keyed by CLI name in ``ATTACK_CLASSES`` / ``ATTACKS``.

Every attack works on logits, batched, inside ``tf.function``; see ``base.Attack``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from advbench.core.registry import lazy_attributes, load_classes

if TYPE_CHECKING:
    from advbench.attacks.base import Attack, AttackOutput

    ATTACKS: dict[str, type[Attack]]

#: CLI name -> "module:Class" in advbench.attacks: the one list of attacks (one line each).
#: ``ATTACKS`` maps the same names to the classes, imported (with TensorFlow) on first use.
ATTACK_CLASSES: dict[str, str] = {
    "fgsm": "fgsm:FGSM",
    "fgsm-min": "fgsm_min:MinimalFGSM",
    "rand-fgsm": "rand_fgsm:RandomFGSM",
    "jsma": "jsma:JSMA",
    "deepfool": "deepfool:DeepFool",
    "cw-l2": "carlini_wagner:CarliniWagnerL2",
    "pgd": "pgd:PGD",
    "vat": "vat:VirtualAdversarial",
    "apgd-ce": "apgd_ce:APGDCrossEntropy",
    "apgd-dlr": "apgd_dlr:APGDDifferenceLogitsRatio",
    "apgd-t": "apgd_t:APGDTargeted",
    "square": "square:Square",
    "fab": "fab:FAB",
    "fab-t": "fab:FABTargeted",
    "autoattack": "autoattack:AutoAttack",
    "fmn": "fmn:FMN",
}

#: --norm name -> "module:Class" in advbench.attacks: the norms of the gradient attacks
#: (``norms.NORMS`` holds one instance of each, named by its key).
NORM_CLASSES: dict[str, str] = {"linf": "norms:LinfNorm", "l2": "norms:L2Norm",
                                "l1": "norms:L1Norm"}
#: The norms of the minimum-norm attack ``fmn.FMN`` (--norm): L0 counts pixel-channel
#: features; L1 and L0 are FMN's own (its projections live in ``fmn``).
FMN_NORMS = ("l0", "l1", "l2", "linf")
#: Every --norm name: the gradient attacks' norms and FMN's (each attack checks its own).
ATTACK_NORMS = tuple(sorted(set(NORM_CLASSES) | set(FMN_NORMS)))
#: Where ``fmn.FMN`` starts (--init): "input", x itself (the reference's default), or
#: "batch", the nearest image of the batch the model classifies otherwise, moved towards x by
#: a binary search for the boundary.
FMN_INITS = ("input", "batch")
#: How target classes are chosen when none are given (``--target``, JSMA's target_mode):
#: the modes of ``targets.choose_targets``.
TARGET_MODES = ("random", "least-likely")
#: JSMA's saliency maps (``jsma.JSMA``, --saliency): "pairwise", the paper's map over
#: feature pairs, or "simplified", the two features of largest target gradient (IBM ART's).
SALIENCY_MAPS = ("pairwise", "simplified")
#: The losses the Square Attack can maximise (``square.Square``, --loss).
SQUARE_LOSSES = ("margin", "ce")
#: AutoAttack's versions (``autoattack.AutoAttack``, --version; members per norm in
#: ``autoattack.VERSION_MEMBERS``): "standard" (APGD-CE, APGD-T, FAB-T, Square), "plus" (also
#: APGD-DLR and FAB, 5 restarts) or "rand" (APGD-CE and APGD-DLR with EOT, for randomised
#: defenses).
AUTOATTACK_VERSIONS = ("standard", "plus", "rand")
#: How fgsm-min walks its eps grid (``fgsm_min.MinimalFGSM``, --search): "exact" (every sample
#: until its first flip, as ART 1.20.1) or "authors" (the paper authors' loop, which attacks
#: the wrong images from the third grid step on; for reproducing their Table 2 only).
FGSM_MIN_SEARCHES = ("exact", "authors")

# ATTACKS and the base class, imported (with TensorFlow) when first asked for.
__getattr__ = lazy_attributes(globals(), {
    "ATTACKS": lambda: load_classes(__name__, ATTACK_CLASSES),
    "Attack": lambda: importlib.import_module("advbench.attacks.base").Attack,
    "AttackOutput": lambda: importlib.import_module("advbench.attacks.base").AttackOutput,
})


def make_attack(name: str, **params: Any) -> Attack:
    """An attack by CLI name with keyword parameters (None values keep the defaults).

    Raises ParameterError for an unknown name or a parameter the attack does not take.
    """
    from advbench.core.errors import ParameterError

    if name not in ATTACK_CLASSES:
        raise ParameterError(f"unknown attack {name!r}; choose one of: "
                             f"{', '.join(sorted(ATTACK_CLASSES))}")
    from advbench.attacks import ATTACKS

    cls = ATTACKS[name]
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(cls.param_names))
    if unknown:
        raise ParameterError(f"parameter(s) {', '.join(unknown)} do not apply to attack {name!r}"
                             f" (its parameters: {', '.join(cls.param_names)})")
    return cls(**given)


__all__ = ["ATTACKS", "ATTACK_CLASSES", "ATTACK_NORMS", "Attack", "AttackOutput", "FMN_NORMS",
           "NORM_CLASSES", "TARGET_MODES", "make_attack"]
