"""Attacks, one module each, keyed by CLI name in ``ATTACKS``.

Every attack works on logits, batched, inside ``tf.function``; see ``base.Attack``.
"""

from advbench.attacks.base import Attack, AttackOutput
from advbench.attacks.carlini_wagner import CarliniWagnerL2
from advbench.attacks.deepfool import DeepFool
from advbench.attacks.fgsm import FGSM
from advbench.attacks.fgsm_min import MinimalFGSM
from advbench.attacks.jsma import JSMA
from advbench.attacks.pgd import PGD
from advbench.attacks.rand_fgsm import RandomFGSM
from advbench.attacks.vat import VirtualAdversarial

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (FGSM, MinimalFGSM, RandomFGSM, JSMA, DeepFool, CarliniWagnerL2, PGD,
                VirtualAdversarial)
}


def make_attack(name: str, **params) -> Attack:
    """An attack by CLI name with keyword parameters (None values keep the defaults)."""
    from advbench.errors import ParameterError

    if name not in ATTACKS:
        raise ParameterError(f"unknown attack {name!r}; choose one of: {', '.join(sorted(ATTACKS))}")
    cls = ATTACKS[name]
    given = {k: v for k, v in params.items() if v is not None}
    unknown = sorted(set(given) - set(cls.param_names))
    if unknown:
        raise ParameterError(f"parameter(s) {', '.join(unknown)} do not apply to attack {name!r}"
                             f" (its parameters: {', '.join(cls.param_names)})")
    return cls(**given)


__all__ = ["ATTACKS", "Attack", "AttackOutput", "make_attack"]
