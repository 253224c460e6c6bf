"""Hyperparameters declared once: a ``Param`` per parameter (name, type, bounds, choices, CLI
flag, help), a ``Spec`` per attack or defense (its class and its parameters with their
defaults), and ``Parameterized``, the base that turns a ``Spec`` into the keyword-only
constructor, its validation, ``param_names``, ``params()`` and ``repr``.

The CLI flags, their ``--help`` lines, the parameter tables of docs/attacks.md and the error
wording all derive from the same ``Param``: nothing is typed twice. TensorFlow-free (the
registries that hold the specs are read by ``--help`` and by the checks made before
TensorFlow starts).

Example:
    >>> EPS = Param("eps", float, low=0.0, help="Perturbation size.")
    >>> spec = Spec("fgsm:FGSM", EPS(0.1))
    >>> spec.defaults()
    {'eps': 0.1}
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from advbench.core.checks import MAX_INT32, check_int, check_range
from advbench.core.errors import ParameterError

_NO_DEFAULT = object()


@dataclasses.dataclass(frozen=True)
class Param:
    """One hyperparameter, declared once and shared by every attack (or defense) taking it.

    Attributes:
        name: the keyword argument and attribute name (``step_size``).
        type: float, int, bool or str (str takes one of ``choices``).
        default: the Python default; an attack's spec sets it per attack (``EPS(0.3)``).
        help: the ``--help`` text without the default, which is derived from the defaults of
            the attacks taking it (or ``default_help`` when it depends on the data set).
        low, high, low_inclusive, high_inclusive: bounds of numbers (ints: inclusive; the
            upper bound of an int defaults to ``MAX_INT32``, what TensorFlow's counters hold).
        choices: the values a str takes.
        flag: the CLI flag, ``--`` + the name with dashes unless given; bools get the
            ``--x/--no-x`` pair. ``None`` when another option sets it (JSMA's target_mode:
            ``--target``).
        eps_like: an eps-like value, written ``8/255`` too on the command line (the
            defaults of those that depend on the data set are in ``advbench.attacks.budgets``).
        values: the CLI flag also takes a list or range of values (a curve: fgsm's --eps).
        optional: None is a value (the attack derives the default from another parameter).
        default_help: the default as ``--help`` says it, for a default that depends on the
            data set (the budgets' text), replacing the derived one.
    """

    name: str
    type: type
    default: Any = _NO_DEFAULT
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] | None = None
    flag: str | None = ""
    eps_like: bool = False
    values: bool = False
    optional: bool = False
    default_help: str | None = None

    def __call__(self, default: Any, **bounds: Any) -> Param:
        """This parameter with the default of one attack or defense, ``EPS(0.3)``, and the
        bounds or choices where they differ for it (fmn's norms)."""
        return dataclasses.replace(self, default=default, **bounds)

    @property
    def cli_flag(self) -> str | None:
        """The flag's long name (``--step-size``), None when it has none of its own."""
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def cli_declaration(self) -> str | None:
        """What ``click.option`` takes: ``--x`` or, for a bool, ``--x/--no-x``."""
        flag = self.cli_flag
        if flag is None or self.type is not bool:
            return flag
        return f"{flag}/--no-{flag[2:]}"

    def range_text(self) -> str:
        """The values it takes, as the docs write them: ``[0, 1]``, ``> 0``, ``linf, l2``."""
        if self.choices is not None:
            return ", ".join(self.choices)
        if self.type is bool:
            return "on, off"
        low = "" if self.low is None else ("[" if self.low_inclusive else "(") + f"{self.low:g}"
        high = "" if self.high is None else f"{self.high:g}" + ("]" if self.high_inclusive
                                                               else ")")
        if low and high:
            return f"{low}, {high}"
        if low:
            return (">= " if self.low_inclusive else "> ") + f"{self.low:g}"
        if high:
            return ("<= " if self.high_inclusive else "< ") + f"{self.high:g}"
        return "any"

    def check(self, value: Any, label: str | None = None) -> Any:
        """``value`` converted to the declared type, or ParameterError naming ``label`` (the
        name by default), what was passed and what is expected."""
        label = label or self.name
        if value is None and self.optional:
            return None
        if self.type is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise ParameterError(f"{label} must be True or False, got {value!r}")
            return bool(value)
        if self.type is int:
            check_int(label, value, low=int(self.low) if self.low is not None else -MAX_INT32,
                      high=int(self.high) if self.high is not None else MAX_INT32)
            return int(value)
        if self.type is float:
            check_range(label, value, low=self.low, high=self.high,
                        low_inclusive=self.low_inclusive, high_inclusive=self.high_inclusive)
            return float(value)
        if self.choices is not None and value not in self.choices:
            raise ParameterError(f"{label} must be one of {', '.join(self.choices)}, "
                                 f"got {value!r}")
        return value


@dataclasses.dataclass(frozen=True)
class Spec:
    """An attack or defense in its registry: its class (``"module:Class"`` in the registry's
    package) and its parameters with their defaults, in constructor order.

    ``dataset_defaults``: data set -> {parameter: default} for the defaults that depend on the
    data set (defenses; attacks take theirs from ``advbench.attacks.budgets``)."""

    ref: str
    params: tuple[Param, ...]
    dataset_defaults: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def __init__(self, ref: str, *params: Param,
                 dataset_defaults: dict[str, dict[str, Any]] | None = None) -> None:
        object.__setattr__(self, "ref", ref)
        object.__setattr__(self, "params", tuple(params))
        object.__setattr__(self, "dataset_defaults", dict(dataset_defaults or {}))

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)


def flag_table(specs: dict[str, Spec], order: tuple[Param, ...] = ()
               ) -> dict[str, tuple[Param, dict[str, Any]]]:
    """Each CLI flag of a registry, with the ``Param`` and the default of every attack (or
    defense) taking it: one flag per parameter, however many attacks share it. Flags come in
    the order of ``order`` (the registry's list of parameters), then of first declaration."""
    table: dict[str, tuple[Param, dict[str, Any]]] = {}
    for owner, spec in specs.items():
        for p in spec.params:
            if p.cli_flag is None:
                continue
            first, defaults = table.setdefault(p.cli_flag, (p, {}))
            defaults[owner] = p.default
    rank = {p.cli_flag: i for i, p in enumerate(order)}
    return dict(sorted(table.items(), key=lambda item: rank.get(item[0], len(rank))))


def stray_flags(specs: dict[str, Spec], owner: str, given: Any) -> list[str]:
    """The flags, sorted, of the parameters named in ``given`` that ``owner`` (a name of the
    registry ``specs``) does not take: a command refuses them ("--steps does not apply to
    --attack fgsm") rather than run the default silently."""
    flag_of = {p.name: flag for flag, (p, _) in flag_table(specs).items()}
    takes = {p.name for p in specs[owner].params}
    return sorted(flag_of[name] for name in given if name not in takes)


def choice_error(specs: dict[str, Spec], owner: str, given: dict[str, Any]) -> str | None:
    """The usage error of a str parameter in ``given`` (name -> value as typed) that is not
    one of ``owner``'s own choices (``--norm l0`` is fmn's, not fab's), None when all are:
    the flag's choices are the union over the registry, the owner's may be fewer."""
    flag_of = {p.name: flag for flag, (p, _) in flag_table(specs).items()}
    for param in specs[owner].params:
        value = given.get(param.name)
        if param.choices is not None and value is not None and value not in param.choices:
            others = sorted(name for name, spec in specs.items() if any(
                p.name == param.name and value in (p.choices or ()) for p in spec.params))
            where = f" ({value} is for {', '.join(others)})" if others else ""
            return (f"{flag_of.get(param.name, param.name)} of --attack {owner} is one of "
                    f"{', '.join(param.choices)}, got {value!r}{where}")
    return None


def shown_default(value: Any) -> str:
    """A default as ``--help`` writes it: on/off for bools, else its str."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def default_text(param: Param, defaults: dict[str, Any]) -> str:
    """``[default: ...]`` of a flag: ``default_help``, one value when every owner shares it,
    else each value with its owners (``100 deepfool, 1000 cw-l2``)."""
    if param.default_help is not None:
        return param.default_help
    groups: dict[str, list[str]] = {}
    for owner, value in defaults.items():
        groups.setdefault(shown_default(value), []).append(owner)
    if len(groups) == 1:
        return f"[default: {next(iter(groups))}]."
    return "[default: " + ", ".join(f"{value} {'/'.join(owners)}"
                                    for value, owners in groups.items()) + "]."


def flag_help(param: Param, defaults: dict[str, Any]) -> str:
    """The ``--help`` line of a flag: its help, then its default."""
    return f"{param.help} {default_text(param, defaults)}".strip()


class Parameterized:
    """Base of attacks and defenses: the class's ``spec`` (looked up in its registry by
    ``name``, see ``_registry``) gives a keyword-only constructor that checks and converts
    every value (``Param.check``), stores it as an attribute of the same name, then calls
    ``__post_init__`` for checks across parameters and derived state.

    ``param_names``, ``params()`` (provenance, the run key) and ``repr`` read the spec, and
    ``inspect.signature(cls)`` shows the keyword-only parameters with their defaults."""

    name: ClassVar[str] = ""
    spec: ClassVar[Spec] = Spec("")
    param_names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _registry(cls) -> dict[str, Spec]:
        """The registry of this kind of object (attacks', defenses'), by CLI name."""
        return {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own_name = vars(cls).get("name")
        registry = cls._registry()
        if own_name and own_name in registry:
            cls.spec = registry[own_name]
        cls.param_names = tuple(p.name for p in cls.spec.params)
        cls.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
            inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default,
                              annotation=p.type) for p in cls.spec.params])

    def __init__(self, **params: Any) -> None:
        for key in params:
            if key not in self.param_names:
                raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument "
                                f"{key!r}")
        for p in self.spec.params:
            setattr(self, p.name, p.check(params.get(p.name, p.default), self.param_label(p)))
        self.__post_init__()

    def __post_init__(self) -> None:
        """Checks that involve several parameters, and state derived from them."""

    def param_label(self, param: Param) -> str:
        """How errors name a parameter (attacks: its name)."""
        return param.name

    def params(self) -> dict[str, Any]:
        """Every hyperparameter by name: stored in artifacts as provenance."""
        return {name: getattr(self, name) for name in self.param_names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    if TYPE_CHECKING:
        # The parameters are attributes set from the spec: typed by their Param, not by a
        # second declaration in each class.
        def __getattr__(self, name: str) -> Any: ...
