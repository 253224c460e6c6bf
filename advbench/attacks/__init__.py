"""Attacks, one module each, keyed by CLI name in ``ATTACK_SPECS`` / ``ATTACKS``.

Every attack works on logits, batched, inside ``tf.function``; see ``base.Attack``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from advbench.attacks.budgets import EPS_HELP
from advbench.core.checks import (MAX_INITIAL_CONST, MAX_POWER_ITERATIONS,
                                  MAX_SEARCH_STEPS)
from advbench.core.params import Param, Spec
from advbench.core.registry import lazy_attributes, load_classes

if TYPE_CHECKING:
    from advbench.attacks.base import Attack, AttackOutput

    ATTACKS: dict[str, type[Attack]]

#: --norm name -> "module:Class" in advbench.attacks: the norms of the gradient attacks
#: (``norms.NORMS`` holds one instance of each, named by its key).
NORM_CLASSES: dict[str, str] = {"linf": "norms:LinfNorm", "l2": "norms:L2Norm",
                                "l1": "norms:L1Norm"}
#: The norms of the minimum-norm attack ``fmn.FMN`` (--norm): L0 counts pixel-channel
#: features; L1 and L0 are FMN's own (its projections live in ``fmn``).
FMN_NORMS = ("l0", "l1", "l2", "linf")
#: Every --norm name: the gradient attacks' norms and FMN's (each attack checks its own).
ATTACK_NORMS = tuple(sorted(set(NORM_CLASSES) | set(FMN_NORMS)))
#: The norms FAB minimises (``fab.FAB``); its projections are its own (``fab.project``).
FAB_NORMS = ("linf", "l2", "l1")
#: The most final-search steps of FAB (each one forward pass; the authors' code uses 3).
MAX_FINAL_SEARCH = 100
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


# -- the attacks' parameters, each declared once (``advbench.core.params.Param``): type, bounds,
# choices, flag and help; an attack's spec below gives each its default. The flags of
# `advbench attack` and `transfer` come in this order.
EPS = Param("eps", float, low=0.0, eps_like=True, values=True, default_help=EPS_HELP, help=(
    "Perturbation size (fgsm, rand-fgsm, pgd, vat, apgd-*, square, autoattack; fab and fab-t: "
    "none makes them minimal, a value bounded as in AutoAttack), a value or a fraction "
    "(8/255); for fgsm and rand-fgsm also a list 0.1,0.3 or a range start:stop:step "
    "(0:8/255:1/255) for a curve. Your own data of another image size has no default."))
# Each attack takes its own norms (choices): the flag takes every one (ATTACK_NORMS).
NORM = Param("norm", str, choices=tuple(NORM_CLASSES), help=(
    "Norm (fgsm, pgd: linf or l2; apgd-*, square, autoattack, fab, fab-t: linf, l2 or l1; "
    "fmn: l0, l1, l2 or linf)"))
EPS_STEP = Param("eps_step", float, low=0.0, low_inclusive=False, eps_like=True,
                 help="Grid step of fgsm-min",
                 default_help="[default: 0.05 on MNIST, 1/255 on CIFAR-10].")
EPS_MAX = Param("eps_max", float, low=0.0, low_inclusive=False, eps_like=True,
                help="Largest eps fgsm-min tries")
SEARCH = Param("search", str, choices=FGSM_MIN_SEARCHES, help=(
    "fgsm-min's search: exact, or authors (the paper authors' loop, which attacks the wrong "
    "images from the third eps on; to reproduce their Table 2, with --batch-size >= the "
    "sample count)"))
ALPHA = Param("alpha", float, low=0.0, eps_like=True, help="Random step of rand-fgsm",
              default_help="[default: 0.05 on MNIST, 4/255 on CIFAR-10; eps/2 on your own "
                           "data].")
STEP_SIZE = Param("step_size", float, low=0.0, low_inclusive=False, eps_like=True,
                  help="PGD step size", default_help=(
                      "[default: 0.01 on MNIST, 2/255 on CIFAR-10 (L-inf); 2.5 eps / 40 at "
                      "the L2 budget; 2.5 eps / steps on your own data]."))
STEPS = Param("steps", int, low=0, help="Steps of pgd and fmn")
RANDOM_START = Param("random_start", bool, help="PGD random start")
EARLY_STOP = Param("early_stop", bool,
                   help="PGD: stop each sample at its first adversarial step")
XI = Param("xi", float, low=0.0, low_inclusive=False, eps_like=True,
           help="VAT finite-difference step")
POWER_ITERATIONS = Param("power_iterations", int, low=1, high=MAX_POWER_ITERATIONS,
                         help="VAT power iterations")
# JSMA's theta: nonzero, checked by the attack (a positive value increases features).
THETA = Param("theta", float, low=-1.0, high=1.0, help="JSMA change per feature")
GAMMA = Param("gamma", float, low=0.0, high=1.0, low_inclusive=False,
              help="JSMA largest fraction of features changed")
TARGET_MODE = Param("target_mode", str, choices=TARGET_MODES, flag=None,
                    help="How JSMA chooses target classes when none are given (--target)")
FALLBACK = Param("fallback", bool, help=(
    "JSMA: when no pair meets the saliency map's sign constraints, move the pair with the "
    "largest target gradient instead of stopping"))
SALIENCY = Param("saliency", str, choices=SALIENCY_MAPS, help=(
    "JSMA's saliency map: pairwise (the paper's) or simplified (ART's; fewer pixels)"))
MAX_ITER = Param("max_iter", int, low=1,
                 help="Iterations (deepfool; cw-l2 steps per search step)")
OVERSHOOT = Param("overshoot", float, low=0.0, help="DeepFool overshoot")
CANDIDATES = Param("candidates", int, low=2, help="DeepFool: top-k candidate classes")
EPSILON = Param("epsilon", float, low=0.0, low_inclusive=False,
                help="DeepFool: numerical guard against vanishing gradients (> 0)")
BOX_AWARE = Param("box_aware", bool,
                  help="DeepFool: account for the [0, 1] box when stepping")
CONFIDENCE = Param("confidence", float, low=0.0, help="C&W confidence (kappa)")
LEARNING_RATE = Param("learning_rate", float, low=0.0, low_inclusive=False,
                      help="C&W Adam learning rate")
# c grows tenfold per search step without success: 30 steps from at most 1e6 stay finite in
# float32 (< 3.4e38); more steps cannot help and used to run for ever.
BINARY_SEARCH_STEPS = Param("binary_search_steps", int, low=1, high=MAX_SEARCH_STEPS,
                            flag="--search-steps", help=(
                                "Binary search steps: C&W's over c; fmn's towards the boundary "
                                "from an --init batch start"))
INITIAL_CONST = Param("initial_const", float, low=0.0, low_inclusive=False,
                      high=MAX_INITIAL_CONST, help="C&W initial c")
ABORT_EARLY = Param("abort_early", bool, help="C&W abort early")
# autoattack's None: the value of its version's members (``autoattack.VERSION_MEMBERS``).
N_ITER = Param("n_iter", int, low=1, help="Iterations per run (apgd-*, autoattack, fab, fab-t)",
               default_help="[default: 100; autoattack None: its version's, 100].")
N_RESTARTS = Param("n_restarts", int, low=1, help="Random restarts (apgd-*, square, fab, fab-t)")
RHO = Param("rho", float, low=0.0, high=1.0,
            help="APGD: fraction of successful steps below which the step halves")
EOT_ITER = Param("eot_iter", int, low=1, help=(
    "Gradients averaged per step (EOT, for randomised models; apgd-*, autoattack's rand "
    "version)"), default_help="[default: 1 apgd-*; autoattack None: its version's, 20].")
USE_LARGEREPS = Param("use_largereps", bool, help=(
    "APGD with norm l1: AutoAttack's schedule of three runs at 3, 2 and 1 times eps "
    "(30/30/40% of --n-iter)"), default_help=(
        "[default: off; autoattack's l1 standard version turns it on]."))
N_TARGET_CLASSES = Param("n_target_classes", int, low=1,
                         help="Top-k target classes of apgd-t, fab-t and autoattack",
                         default_help=("[default: 9; autoattack None: its version's, 9, apgd-t "
                                       "5 in the l1 standard version]."))
N_QUERIES = Param("n_queries", int, low=1,
                  help="Square: model queries per sample (also autoattack)",
                  default_help="[default: 5000; autoattack None: its version's, 5000].")
P_INIT = Param("p_init", float, low=0.0, high=1.0, low_inclusive=False,
               help="Square: initial fraction of pixels per square")
LOSS = Param("loss", str, choices=SQUARE_LOSSES, help="Square's loss")
RESCALE_SCHEDULE = Param("rescale_schedule", bool, help=(
    "Square: stretch the p schedule, written for 10,000 queries, to --n-queries"))
ALPHA_MAX = Param("alpha_max", float, low=0.0, high=1.0, help=(
    "FAB: largest weight of the clean image's projection in a step, in [0, 1]"))
ETA = Param("eta", float, low=1.0, help="FAB: overshoot of the projections, >= 1")
BETA = Param("beta", float, low=0.0, high=1.0, low_inclusive=False,
             help="FAB: pull back towards the clean image after a success, in (0, 1]")
FINAL_SEARCH = Param("final_search", int, low=0, high=MAX_FINAL_SEARCH, help=(
    "FAB: steps of the original code's final search between the clean image and the "
    "adversarial"), default_help="[default: 0, as AutoAttack].")
ALPHA_INIT = Param("alpha_init", float, low=0.0, low_inclusive=False,
                   help="fmn: first step size (L2, in [0, 1] pixels)")
# None: alpha_init / 100 (checked <= alpha_init by FMN).
ALPHA_FINAL = Param("alpha_final", float, low=0.0, low_inclusive=False, optional=True,
                    help="fmn: last step size, cosine-annealed from --alpha-init",
                    default_help="[default: alpha-init / 100].")
GAMMA_INIT = Param("gamma_init", float, low=0.0, high=1.0, low_inclusive=False,
                   high_inclusive=False,
                   help="fmn: first factor by which the norm bound grows or shrinks")
GAMMA_FINAL = Param("gamma_final", float, low=0.0, low_inclusive=False,
                    help="fmn: last such factor, cosine-annealed from --gamma-init")
INIT = Param("init", str, choices=FMN_INITS, help=(
    "fmn's start: input (x itself, the reference's default) or batch (the nearest image of the "
    "batch classified otherwise, then a binary search for the boundary)"))
VERSION = Param("version", str, choices=AUTOATTACK_VERSIONS, help=(
    "AutoAttack version: standard (APGD-CE, APGD-T, FAB-T, Square), plus (also APGD-DLR "
    "and FAB, 5 restarts) or rand (EOT, for randomised defenses)"))

#: Every attack parameter, in flag order.
ATTACK_PARAMETERS: tuple[Param, ...] = (
    EPS, NORM, EPS_STEP, EPS_MAX, SEARCH, ALPHA, STEP_SIZE, STEPS, RANDOM_START, EARLY_STOP, XI,
    POWER_ITERATIONS, THETA, GAMMA, TARGET_MODE, FALLBACK, SALIENCY, MAX_ITER, OVERSHOOT,
    CANDIDATES, EPSILON, BOX_AWARE, CONFIDENCE, LEARNING_RATE, BINARY_SEARCH_STEPS,
    INITIAL_CONST, ABORT_EARLY, N_ITER, N_RESTARTS, RHO, EOT_ITER, USE_LARGEREPS,
    N_TARGET_CLASSES, N_QUERIES, P_INIT, LOSS, RESCALE_SCHEDULE, ALPHA_MAX, ETA, BETA,
    FINAL_SEARCH, ALPHA_INIT, ALPHA_FINAL, GAMMA_INIT, GAMMA_FINAL, INIT, VERSION)

_APGD = (EPS(0.3), NORM("linf"), N_ITER(100), N_RESTARTS(1), RHO(0.75), EOT_ITER(1),
         USE_LARGEREPS(False))
# eps None: FAB minimal; a value: bounded, as AutoAttack runs it.
_FAB = (NORM("linf", choices=FAB_NORMS), EPS(None, optional=True, values=False), N_RESTARTS(1),
        N_ITER(100), ALPHA_MAX(0.1), ETA(1.05), BETA(0.9), FINAL_SEARCH(0))
# None: the value of the version's members (``autoattack.VERSION_MEMBERS``).
_MEMBER_DEFAULT = {"optional": True}

#: CLI name -> the attack's ``Spec``: its class ("module:Class" in advbench.attacks) and its
#: parameters with their paper defaults, in constructor order. The one list of attacks, one
#: entry each: the constructors and their checks, ``param_names``, the CLI's flags and help
#: and the docs' tables derive from it. (Here, not in the attack modules, because those import
#: TensorFlow and ``--help`` and the pre-TensorFlow checks must not.)
#: The norms of FGSM and PGD: their steps and random starts were checked against their
#: references in L-inf and L2 only (the APGD family, Square and FAB take L1 too).
GRADIENT_NORMS = ("linf", "l2")
ATTACK_SPECS: dict[str, Spec] = {
    "fgsm": Spec("fgsm:FGSM", EPS(0.1), NORM("linf", choices=GRADIENT_NORMS)),
    "fgsm-min": Spec("fgsm_min:MinimalFGSM", EPS_STEP(0.05), EPS_MAX(1.0), SEARCH("exact")),
    "rand-fgsm": Spec("rand_fgsm:RandomFGSM", EPS(0.1), ALPHA(0.05)),
    "jsma": Spec("jsma:JSMA", THETA(0.1), GAMMA(1.0), TARGET_MODE("random"), FALLBACK(True),
                 SALIENCY("pairwise")),
    "deepfool": Spec("deepfool:DeepFool", MAX_ITER(100), OVERSHOOT(0.02), CANDIDATES(10),
                     EPSILON(1e-6), BOX_AWARE(False)),
    "cw-l2": Spec("carlini_wagner:CarliniWagnerL2", CONFIDENCE(2.3), LEARNING_RATE(0.01),
                  MAX_ITER(1000), BINARY_SEARCH_STEPS(9), INITIAL_CONST(1e-3),
                  ABORT_EARLY(True)),
    "pgd": Spec("pgd:PGD", EPS(0.3), STEP_SIZE(0.01), STEPS(40), RANDOM_START(True),
                NORM("linf", choices=GRADIENT_NORMS), EARLY_STOP(False)),
    "vat": Spec("vat:VirtualAdversarial", EPS(2.1), XI(1e-6), POWER_ITERATIONS(1)),
    "apgd-ce": Spec("apgd_ce:APGDCrossEntropy", *_APGD),
    "apgd-dlr": Spec("apgd_dlr:APGDDifferenceLogitsRatio", *_APGD),
    "apgd-t": Spec("apgd_t:APGDTargeted", *_APGD, N_TARGET_CLASSES(9)),
    "square": Spec("square:Square", EPS(0.3), NORM("linf"), N_QUERIES(5000), P_INIT(0.8),
                   N_RESTARTS(1), LOSS("margin"), RESCALE_SCHEDULE(False)),
    "fab": Spec("fab:FAB", *_FAB),
    "fab-t": Spec("fab:FABTargeted", *_FAB, N_TARGET_CLASSES(9)),
    "autoattack": Spec("autoattack:AutoAttack", EPS(0.3), NORM("linf"), VERSION("standard"),
                       N_ITER(None, **_MEMBER_DEFAULT),
                       N_TARGET_CLASSES(None, **_MEMBER_DEFAULT),
                       N_QUERIES(None, **_MEMBER_DEFAULT), EOT_ITER(None, **_MEMBER_DEFAULT)),
    "fmn": Spec("fmn:FMN", NORM("linf", choices=FMN_NORMS), STEPS(100, low=1),
                ALPHA_INIT(1.0), ALPHA_FINAL(None), GAMMA_INIT(0.05), GAMMA_FINAL(0.001),
                INIT("input"), BINARY_SEARCH_STEPS(10, high=64)),
}
#: CLI name -> "module:Class" (``ATTACK_SPECS``' refs): what the CLI's choices and
#: ``ATTACKS`` read.
ATTACK_CLASSES: dict[str, str] = {name: spec.ref for name, spec in ATTACK_SPECS.items()}
#: The minimal-perturbation attacks (their class's ``minimal``; FAB and FAB-T without
#: ``--eps``), named without TensorFlow in messages and help; a contract test holds it equal
#: to the classes.
MINIMAL_ATTACKS = ("fgsm-min", "deepfool", "cw-l2", "fab", "fab-t", "fmn")

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


__all__ = ["ATTACKS", "ATTACK_CLASSES", "ATTACK_PARAMETERS", "ATTACK_SPECS", "Attack",
           "AttackOutput", "ATTACK_NORMS", "FMN_INITS", "FMN_NORMS", "NORM_CLASSES", "TARGET_MODES", "make_attack"]
