"""Perturbation budgets per data set, and the parsing of eps values (``8/255`` included).

An attack class keeps the MNIST defaults of its paper (``PGD(eps=0.3)``); the commands take
every eps-like default (eps, PGD's absolute step size, Random + FGSM's alpha, fgsm-min's
grid step) from the data set through ``attack_budget``: the field's standard budgets, MNIST
L-inf 0.3 and L2 1.5, CIFAR-10 L-inf 8/255 and L2 0.5 (Madry et al. 2018; Croce et al.,
RobustBench 2021). A user's own data set borrows the budgets of the built-in set whose image
shape it has (28x28x1: MNIST's, 32x32x3: CIFAR-10's) and says so; any other shape has no
default and the eps must be given.

TensorFlow-free: the CLI checks and prints budgets before TensorFlow starts.
"""

from __future__ import annotations

import dataclasses
import math
import re
from fractions import Fraction
from typing import Any

from advbench.core.errors import ParameterError

#: Largest number of eps points in one grid (a typo like 0:1:1e-9 must not run for days).
MAX_EPS_POINTS = 10_000

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
#: One eps-like value: a decimal number, or a fraction of two (8/255).
_VALUE = rf"{_NUMBER}(?:\s*/\s*{_NUMBER})?"
_FORMS = ("one value (0.1 or 8/255), a list (0.1,0.2) or a range start:stop:step "
          "(0:8/255:1/255)")

#: The field's standard budgets per data set and norm: MNIST L-inf 0.3 (Madry et al. 2018),
#: CIFAR-10 L-inf 8/255 (Madry et al. 2018; RobustBench), L2 1.5 on MNIST (Croce and Hein
#: 2020) and 0.5 on CIFAR-10 (RobustBench); L1 12 on CIFAR-10 (Croce and Hein 2021, "Mind the
#: box") and 10 on MNIST (the reference documents none; issue 22's choice).
BUDGETS: dict[str, dict[str, float]] = {
    "mnist": {"linf": 0.3, "l2": 1.5, "l1": 10.0},
    "cifar10": {"linf": 8 / 255, "l2": 0.5, "l1": 12.0},
}
#: How each standard value is written in messages and --help.
_SHOWN = {8 / 255: "8/255", 2 / 255: "2/255", 4 / 255: "4/255", 1 / 255: "1/255"}

#: Defaults that differ from the budget of BUDGETS, per attack and data set (the reason is
#: in the comment): every key of a row is an eps-like parameter of that attack.
_ATTACK_DEFAULTS: dict[str, dict[str, dict[str, float]]] = {
    # The paper's (Zantedeschi et al. 2017) FGSM and Random + FGSM on MNIST: eps 0.1 (Table 1),
    # alpha 0.05 (Tramer et al. 2018's MNIST setting); on CIFAR-10 the standard 8/255 and
    # Tramer et al.'s alpha = eps / 2.
    "fgsm": {"mnist": {"eps": 0.1}},
    "rand-fgsm": {"mnist": {"eps": 0.1, "alpha": 0.05},
                  "cifar10": {"eps": 8 / 255, "alpha": 4 / 255}},
    # Madry et al.'s steps: 0.01 on MNIST, 2/255 on CIFAR-10 (L-inf).
    "pgd": {"mnist": {"step_size": 0.01}, "cifar10": {"step_size": 2 / 255}},
    # fgsm-min's grid: the paper code's 0.05 on MNIST; one 8-bit level on CIFAR-10.
    "fgsm-min": {"mnist": {"eps_step": 0.05}, "cifar10": {"eps_step": 1 / 255}},
    # VAT's L2 radius: Miyato et al.'s 2.1 on MNIST; the L2 standard on CIFAR-10.
    "vat": {"mnist": {"eps": 2.1}, "cifar10": {"eps": 0.5}},
}
#: The command-line flag of each eps-like parameter.
FLAGS = {"eps": "--eps", "alpha": "--alpha", "step_size": "--step-size",
         "eps_step": "--eps-step"}
#: The parameters derived from a given eps on data without standards (``_derived``).
_FROM_EPS = ("step_size", "alpha")
#: The shape of each built-in set's images, to match a user's data against.
SHAPES = {"mnist": (28, 28, 1), "cifar10": (32, 32, 3)}
#: --eps's help: the defaults, per data set (and the exceptions).
EPS_HELP = ("[default: 0.3 on MNIST, 8/255 on CIFAR-10 (L-inf); L2 1.5 on MNIST, 0.5 on "
            "CIFAR-10; L1 10 on MNIST, 12 on CIFAR-10; fgsm and rand-fgsm 0.1 on MNIST (the "
            "paper's); vat 2.1 on MNIST]")
#: audit --eps's help: the budgets alone.
AUDIT_EPS_HELP = ("[default: 0.3 on MNIST, 8/255 on CIFAR-10 (L-inf); L2 1.5 on MNIST, 0.5 "
                  "on CIFAR-10; a user's data takes the set of its image size]")


def shown(value: float) -> str:
    """A budget as people write it: ``8/255`` for the 8-bit fractions, else ``0.3``."""
    for exact, text in _SHOWN.items():
        if math.isclose(value, exact, rel_tol=1e-9):
            return text
    return f"{value:g}"


def parse_value(text: str | float, what: str = "eps", *, bounded: bool = True) -> float:
    """One eps-like value: a float (``0.03``) or a fraction (``8/255``), finite and >= 0
    (unless ``bounded`` is False: then the caller's own range check speaks).

    Raises:
        ParameterError: one line with what was passed and the accepted forms.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        text = str(text).strip()
        if re.fullmatch(_VALUE, text):
            value = _fraction(text, what)
        elif not bounded and re.fullmatch(r"[-+]?(?:inf(?:inity)?|nan)", text, re.IGNORECASE):
            value = float(text)  # the caller's range check names it ("must be finite")
        else:
            raise ParameterError(f"{what} {text!r} is not a number; give a value such as 0.03 "
                                 "or 8/255")
    if bounded and (not math.isfinite(value) or value < 0):
        raise ParameterError(f"{what} must be finite and >= 0, got {text}")
    return value


def _fraction(text: str, what: str) -> float:
    numerator, _, denominator = text.partition("/")
    try:
        if not denominator:
            return float(numerator)
        value = Fraction(numerator.strip()) / Fraction(denominator.strip())
        return float(value)
    except ZeroDivisionError:
        raise ParameterError(f"{what} {text!r} divides by zero; give a value such as "
                             "8/255") from None
    except (OverflowError, ValueError):
        raise ParameterError(f"{what} {text!r} is too large; give a value such as 0.03 or "
                             "8/255") from None


def parse_eps(text: str | float) -> tuple[float, ...]:
    """The eps values of a CLI string: one value, a comma list, or an inclusive range; each
    value a decimal number or a fraction (``8/255``).

    ``"0.1"`` -> (0.1,); ``"0.1,0.3"`` -> (0.1, 0.3); ``"0.01:1:0.01"`` (start:stop:step) ->
    0.01, 0.02, ..., 1.0; ``"0:8/255:2/255"`` -> 0, 2/255, 4/255, 6/255, 8/255. The stop is
    included when it lies on the grid within rounding (1e-9 of a step), and every value is
    rounded to 12 decimals so that 0.01 * 7 prints as 0.07. Values must be finite and >= 0;
    a range has at most ``MAX_EPS_POINTS`` points; lists keep their order, duplicates are
    refused.

    Raises:
        ParameterError: with what was passed and the accepted forms.

    Example:
        >>> parse_eps("0:0.3:0.1")
        (0.0, 0.1, 0.2, 0.3)
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        values = [parse_value(text)]
    else:
        text = str(text).strip()
        if ":" in text:
            parts = [p.strip() for p in text.split(":")]
            if len(parts) != 3 or not all(re.fullmatch(_VALUE, p) for p in parts):
                raise ParameterError(f"eps range {text!r} is not start:stop:step; give {_FORMS}")
            start, stop, step = (_fraction(p, f"eps range {text!r}:") for p in parts)
            if not all(math.isfinite(v) for v in (start, stop, step)):
                raise ParameterError(f"eps range {text!r} must have finite start, stop and "
                                     "step")
            if not step > 0:
                raise ParameterError(f"eps range {text!r} has step {step}; the step must be > 0")
            if stop < start:
                raise ParameterError(f"eps range {text!r} ends ({stop}) before it starts "
                                     f"({start}); swap them")
            # A float quotient first: (1e308 - 0) / 1e-300 is inf, which floor() cannot take.
            span = (stop - start) / step
            if not span + 1 <= MAX_EPS_POINTS:
                raise ParameterError(f"eps range {text!r} has more than {MAX_EPS_POINTS} "
                                     "points; use a larger step")
            count = math.floor(span + 1e-9) + 1
            values = [round(start + i * step, 12) for i in range(count)]
        else:
            parts = [p.strip() for p in text.split(",")]
            if not parts or not all(re.fullmatch(_VALUE, p) for p in parts):
                raise ParameterError(f"eps {text!r} is not a number; give {_FORMS}")
            values = [_fraction(p, "eps") for p in parts]
    for value in values:
        if not math.isfinite(value) or value < 0:
            raise ParameterError(f"eps must be finite and >= 0, got {value}")
    if len(set(values)) != len(values):
        raise ParameterError(f"eps {text!r} repeats a value; give each eps once")
    return tuple(values)


@dataclasses.dataclass(frozen=True)
class Budget:
    """The eps-like defaults an attack takes from a data set.

    values: parameter name -> default (only those the caller did not give).
    source: the built-in set whose budgets were taken ("mnist", "cifar10"), or None.
    note: one sentence for stderr when the defaults were borrowed by image shape, else "".
    """

    values: dict[str, float]
    source: str | None
    note: str = ""

    @property
    def defaults_from(self) -> str:
        """Which parameters took whose defaults ("eps, step_size: cifar10"), or "": the
        provenance an attack artifact stores (``runner.AttackRun.defaults_from``)."""
        return f"{', '.join(self.values)}: {self.source}" if self.values and self.source else ""


def matching_dataset(dataset: str | None, input_shape: tuple | None) -> str | None:
    """The built-in set whose budgets apply: ``dataset`` itself when built in, else the one
    whose image shape ``input_shape`` is (28x28x1 MNIST, 32x32x3 CIFAR-10), else None."""
    if dataset in SHAPES:
        return dataset
    if input_shape is None:
        return None
    shape = tuple(int(s) for s in input_shape)
    return next((name for name, known in SHAPES.items() if known == shape), None)


def _shape_text(shape: tuple | None) -> str:
    return "x".join(str(int(s)) for s in shape) if shape else "unknown-shape"


def attack_budget(attack: str, dataset: str | None, *, norm: str | None = None,
                  given: dict[str, Any] | None = None, input_shape: tuple | None = None,
                  source_text: str | None = None, steps: int | None = None) -> Budget:
    """The eps-like defaults of ``attack`` on ``dataset`` for the parameters not in ``given``.

    Args:
        attack: CLI name of the attack ("pgd", ...), or "audit" (its --eps).
        dataset: a built-in name, a user's data path, or None when unknown.
        norm: the attack's norm ("linf", "l2" or "l1"; None: "linf").
        given: the parameters the user gave (None values count as not given).
        input_shape: (H, W, C) of the data set's images, to match a user's data.
        source_text: how to name the data in messages (``--data my.npz``).
        steps: PGD's step count, for the step size derived from a user's eps (2.5 eps /
            steps, Madry et al.'s rule) when the data set has no standard.

    Raises:
        ParameterError: when an eps-like parameter has no default on this data (a user's
            data of another shape) and was not given; the message names the flag.
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    norm = norm or "linf"
    _check_within_the_box(given.get("eps"), norm, input_shape or SHAPES.get(str(dataset)))
    source = matching_dataset(dataset, input_shape)
    wanted = _eps_like(attack)
    missing = [name for name in wanted if name not in given]
    if not missing:
        return Budget({}, source)
    if source is None:
        derived = _derived(attack, given, steps)
        # PGD's step and rand-fgsm's alpha follow from the eps, once given.
        needed = [name for name in missing if name not in derived
                  and not (name in _FROM_EPS and "eps" in missing)]
        if needed:
            flags = " and ".join(FLAGS[name] for name in needed)
            what = source_text or f"data {dataset}"
            raise ParameterError(
                f"{what} holds {_shape_text(input_shape)} images, the shape of no built-in data "
                f"set (mnist 28x28x1, cifar10 32x32x3), so {attack}'s {flags} "
                f"{'has' if len(needed) == 1 else 'have'} no default; give "
                f"{'it' if len(needed) == 1 else 'them'}, e.g. {FLAGS[needed[0]]} 8/255")
        return Budget({name: derived[name] for name in missing}, None)
    table = _table(attack, source, norm)
    values = {name: table[name] for name in missing}
    note = ""
    if source != dataset:
        what = source_text or f"data {dataset}"
        taken = ", ".join(f"{FLAGS[k]} {shown(v)}" for k, v in values.items())
        note = (f"{what} holds {_shape_text(input_shape)} images, {source}'s shape: "
                f"{attack} takes {source}'s default {taken} (give {FLAGS[missing[0]]} "
                "to change it)")
    return Budget(values, source, note)


def _check_within_the_box(eps: Any, norm: str, shape: tuple | None) -> None:
    """Refuse an L2 or L1 eps larger than any distance between two images in [0, 1] of this
    shape (sqrt(d) in L2, d in L1): it was given in the model's own pixel units (0-255),
    and would ask for no budget at all. (L-inf's box, 1, is checked with the attack.)"""
    if eps is None or norm not in ("l2", "l1") or not shape:
        return
    size = math.prod(int(n) for n in shape)
    largest = math.sqrt(size) if norm == "l2" else float(size)
    for value in (eps if isinstance(eps, (tuple, list)) else (eps,)):
        if isinstance(value, (int, float)) and value > largest:
            raise ParameterError(
                f"--eps {shown(float(value))} is above {largest:g}, the largest {norm.upper()} "
                f"distance between two {_shape_text(tuple(shape))} images in [0, 1]: attacks "
                "perturb images in [0, 1] whatever range the model takes; give eps in those "
                "units")


def _eps_like(attack: str) -> tuple[str, ...]:
    """The eps-like parameters of an attack that take a per-data-set default (those of
    ``FLAGS`` it declares): every attack with an eps gets the data set's budget, except where
    None is its default (FAB's eps: minimal unless given)."""
    from advbench.attacks import ATTACK_SPECS

    if attack == "audit":  # its checks attack at the one --eps it audits
        return ("eps",)
    spec = ATTACK_SPECS.get(attack)
    return tuple(p.name for p in spec.params
                 if p.name in FLAGS and not p.optional) if spec else ()


def _table(attack: str, dataset: str, norm: str) -> dict[str, float]:
    row: dict[str, float] = {}
    if "eps" in _eps_like(attack):
        # The data set's budget in the attack's norm, unless _ATTACK_DEFAULTS says otherwise.
        row["eps"] = BUDGETS[dataset][norm]
    if attack == "pgd" and norm == "l2":
        # Madry et al.'s rule, 2.5 eps / steps, at the default 40 steps.
        row["step_size"] = 2.5 * BUDGETS[dataset]["l2"] / 40
        return row
    if attack == "fgsm" and norm == "l2":
        return row
    row.update(_ATTACK_DEFAULTS.get(attack, {}).get(dataset, {}))
    return row


def _derived(attack: str, given: dict[str, Any], steps: int | None) -> dict[str, float]:
    """Defaults that follow from a given eps on a data set without standards."""
    eps = given.get("eps")
    if eps is None or isinstance(eps, tuple):
        return {}
    if attack == "pgd":
        return {"step_size": 2.5 * float(eps) / (steps or 40)}
    if attack == "rand-fgsm":
        return {"alpha": float(eps) / 2}
    return {}


def defense_source(dataset: str, input_shape: tuple | None) -> str | None:
    """The built-in set whose defense defaults (GDA sigma, FGSM-AT eps, feature squeezing
    bits) a training data set takes: itself, or the set of its image shape, or None."""
    return matching_dataset(dataset, input_shape)


def parameter_line(attack: str, params: dict[str, Any], *, budget: Budget | None = None,
                   samples: str = "", seed: int | None = None, extra: str = "",
                   defaults_from: str = "") -> str:
    """The one stderr line that starts a run: every parameter the attack uses (eps-like
    values as fractions where they are one: ``eps=8/255``), where the data-set defaults came
    from (``budget``, or ``defaults_from`` as a run records it: "eps, step_size: cifar10"),
    the seed and the samples.

    Example:
        >>> parameter_line("pgd", {"eps": 8 / 255, "steps": 40}, seed=0)
        'pgd: eps=8/255 steps=40; seed 0'
    """
    parts = [f"{k}={shown(v) if isinstance(v, float) else v}" for k, v in params.items()]
    line = f"{attack}: {' '.join(parts)}"
    if budget is not None and budget.values and budget.source:
        defaults_from = f"{', '.join(budget.values)}: {budget.source}"
    if defaults_from:
        several = "," in defaults_from.split(":")[0]
        line += f" ({defaults_from}'s default{'s' if several else ''})"
    if extra:
        line += f"; {extra}"
    if seed is not None:
        line += f"; seed {seed}"
    if samples:
        line += f"; {samples}"
    return line
