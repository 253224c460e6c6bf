"""Generate the docs' derived blocks, or check that they are current (``make lint``).

A block is the text between ``<!-- generated: KIND [ARGS] -->`` and ``<!-- end generated -->``
in a docs/*.md file; KIND is one of ``GENERATORS``: ``help COMMAND...`` (a command's
``--help``, 80 columns, as `advbench COMMAND --help` prints it), ``attack-parameters`` and
``defense-parameters`` (the tables of the declarations in ``advbench.attacks.ATTACK_SPECS``
and ``advbench.defenses.DEFENSE_SPECS``), ``metrics`` and ``gate-metrics`` (the tables of
``advbench.score.metric_registry.METRICS``). Nothing in a block is written by hand: edit the
declaration or the command's docstring, then run ``python tools/docgen.py``.

Usage: python tools/docgen.py [--check]
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Callable

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's advbench, installed or not

BLOCK = re.compile(r"(<!-- generated: (?P<kind>[\w-]+)(?P<args>[^>]*?) -->\n)(?P<body>.*?)"
                   r"(<!-- end generated -->)", re.DOTALL)


def command_help(*path: str) -> str:
    """``advbench PATH... --help`` as an 80-column terminal shows it (Click keeps 2 columns
    spare), fenced."""
    from advbench.cli import main

    ctx = click.Context(main, info_name="advbench", terminal_width=78,
                        **main.context_settings)
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group), path
        command = command.commands[name]
        ctx = click.Context(command, info_name=name, parent=ctx, terminal_width=78)
    return "```\n" + command.get_help(ctx) + "\n```\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def parameter_table(specs: dict, order: tuple) -> str:
    """One row per parameter: flag, type and range, the default of each owner, meaning."""
    from advbench.core.params import flag_table, shown_default

    lines = ["| parameter | flag | type | range | default | meaning |",
             "|---|---|---|---|---|---|"]
    declared = {p.name: p for spec in specs.values() for p in spec.params}
    table = flag_table(specs, order)
    rows = [(p, defaults) for p, defaults in table.values()]
    rows += [(p, {owner: spec.param(p.name).default for owner, spec in specs.items()
                  if p.name in spec.defaults()})
             for p in declared.values() if p.cli_flag is None]
    for p, defaults in rows:
        groups: dict[str, list[str]] = {}
        for owner, value in defaults.items():
            groups.setdefault(f"`{shown_default(value) if p.type is bool else repr(value)}`",
                              []).append(owner)
        default = "; ".join(f"{value} ({', '.join(owners)})" for value, owners in groups.items())
        flag = f"`{p.cli_declaration}`" if p.cli_flag else "(--target)"
        if p.choices is not None:  # each owner may take fewer (fgsm's norms): list them all
            every = [c for spec in specs.values() for q in spec.params
                     if (q.name, q.cli_flag) == (p.name, p.cli_flag) for c in q.choices or ()]
            p = dataclasses.replace(p, choices=tuple(dict.fromkeys(every)))
        lines.append(f"| `{p.name}` | {flag} | {p.type.__name__} | {_cell(p.range_text())} | "
                     f"{_cell(default)} | {_cell(p.help)} |")
    return "\n".join(lines) + "\n"


def attack_parameters() -> str:
    from advbench.attacks import ATTACK_PARAMETERS, ATTACK_SPECS

    return parameter_table(ATTACK_SPECS, ATTACK_PARAMETERS)


def defense_parameters() -> str:
    from advbench.defenses import DEFENSE_PARAMETERS, DEFENSE_SPECS

    return parameter_table(DEFENSE_SPECS, DEFENSE_PARAMETERS)


def metrics() -> str:
    """One row per metric of ``advbench.score.metric_registry.METRICS``: its name (and
    aliases), what it is, direction, range, unit, scope, where the JSON summary holds it and
    its CSV name."""
    from advbench.score.metric_registry import METRICS, SCOPES

    lines = ["| metric | value | better | range | unit | measured on | JSON summary | CSV metric |",
             "|---|---|---|---|---|---|---|---|"]
    for m in METRICS.values():
        name = f"`{m.name}" + (f"@{m.qualifier}`" if m.qualifier else "`") + "".join(
            f" (= `{alias}`)" for alias in m.aliases)
        json = "`" + SCOPES[m.scope][1] + "".join(f"[{key!r}]" for key in m.path) + "`"
        if m.also_per_artifact:
            json += " and, per attack artifact, `['artifacts'][i]" + "".join(
                f"[{key!r}]" for key in m.also_per_artifact) + "`"
        if m.summary:
            json += f"; `['metrics'][{m.name!r}]`"
        csv = f"`{m.name}`" if not m.variant else (
            f"`{m.name}_VARIANT`" + (f" (`{m.name}` for {m.plain_variant})"
                                     if m.plain_variant else ""))
        if m.qualifier == "RADIUS":
            csv += " (one row per radius, in the eps column)"
        lines.append(f"| {name} | {_cell(m.value)} | {m.better} | {_cell(m.range_text())} | "
                     f"{_cell(m.unit)} | {SCOPES[m.scope][0]} | {json} | {csv} |")
    return "\n".join(lines) + "\n"


def gate_metrics() -> str:
    """The gate's table (docs/evaluate.md): name, value, direction, the unqualified value."""
    from advbench.score.metric_registry import METRICS, SCOPES

    lines = ["| name | value | better | without qualifier |", "|---|---|---|---|"]
    for m in METRICS.values():
        name = f"`{m.name}" + ("@R`" if m.qualifier == "RADIUS" else "`")
        lines.append(f"| {name} | {_cell(m.value)} | {m.better} | {SCOPES[m.scope][2]} |")
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[..., str]] = {
    "help": command_help,
    "attack-parameters": attack_parameters,
    "defense-parameters": defense_parameters,
    "metrics": metrics,
    "gate-metrics": gate_metrics,
}


def regenerate(text: str) -> str:
    def fill(match: re.Match) -> str:
        kind = match["kind"]
        if kind not in GENERATORS:
            raise SystemExit(f"unknown generated block {kind!r}; choose one of: "
                             f"{', '.join(GENERATORS)}")
        return match[1] + GENERATORS[kind](*match["args"].split()) + match[5]
    return BLOCK.sub(fill, text)


def stale_files(write: bool) -> list[Path]:
    stale = []
    for path in sorted((ROOT / "docs").rglob("*.md")):
        text = path.read_text()
        new = regenerate(text)
        if new != text:
            stale.append(path)
            if write:
                path.write_text(new)
    return stale


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    stale = stale_files(write=not check)
    for path in stale:
        rel = path.relative_to(ROOT)
        print(f"{rel}: generated blocks are stale; run `python tools/docgen.py`" if check
              else f"{rel}: regenerated", file=sys.stderr)
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
