"""The layout's rules, checked on the source: the packages are the pipeline's floors and each
imports only the floors below it, only the CLI imports Click, no module imports another
module's private names, every CLI choice comes from a library registry, and the CLI, every
command's help and every package's ``__init__`` start without TensorFlow."""

import ast
import subprocess
import sys
from pathlib import Path

import click
import pytest

import advbench
from advbench.cli import RegistryChoice, main

PACKAGE = Path(advbench.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(module imported, names imported from it) for every import statement of a file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [alias.name for alias in node.names]


#: The pipeline, bottom first (docs/architecture.md): a module of a floor imports only its own
#: floor and those below. cli is advbench/cli.py, advbench/__main__.py and advbench/stages.py
#: (the same stages as Python calls, docs/python.md: the commands' one library call each).
FLOORS = ("core", "data", "models", "attacks", "defenses", "run", "score", "paper", "cli")


def floor_of(module: str) -> str | None:
    """The floor of an advbench module (``advbench.run.runner`` -> "run"); None for the root
    package itself (``advbench``: its ``__version__``, importable from every floor)."""
    parts = module.split(".")
    if parts[0] != "advbench" or len(parts) == 1:
        return None
    return "cli" if parts[1] in ("cli", "__main__", "stages") else parts[1]


def advbench_imports(path: Path):
    """Every advbench module a file imports (function-level imports included): ``from advbench
    import data`` imports advbench.data; ``from advbench import __version__``, the root."""
    for module, names in imports(path):
        if module == "advbench":
            for name in names:
                yield "advbench" if name.startswith("__") else f"advbench.{name}"
        elif module.startswith("advbench."):
            yield module


def test_every_module_sits_on_a_floor():
    assert sorted({floor_of(module_name(p)) for p in MODULES} - {None}) == sorted(FLOORS)
    assert [module_name(p) for p in MODULES if floor_of(module_name(p)) is None] == ["advbench"]


def test_each_floor_imports_only_the_floors_below_it():
    upward = []
    for path in MODULES:
        importer = module_name(path)
        level = FLOORS.index(floor_of(importer) or "core")
        for imported in advbench_imports(path):
            floor = floor_of(imported)
            if floor is not None and FLOORS.index(floor) > level:
                upward.append(f"{importer} imports {imported}")
    assert upward == []


def test_the_root_package_imports_nothing_of_advbench():
    assert list(advbench_imports(PACKAGE / "__init__.py")) == []


def test_only_the_cli_imports_click():
    importers = sorted(module_name(p) for p in MODULES
                       if any(m == "click" or m.startswith("click.") for m, _ in imports(p)))
    assert importers == ["advbench.cli"]


def test_no_module_imports_private_names_of_another():
    found = []
    for path in MODULES:
        for module, names in imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            hidden = [part for part in module.split(".") if part.startswith("_")]
            if module.startswith("advbench") and (private or hidden):
                found.append(f"{module_name(path)}: from {module} import {', '.join(names)}")
    assert found == []


def commands(group: click.Group, path: tuple[str, ...] = ()):
    """(path, command) for every command and subcommand of ``group``."""
    for name, command in group.commands.items():
        yield path + (name,), command
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))


def test_every_cli_choice_comes_from_a_registry():
    literal = [f"{command.name} {param.name}" for _, command in commands(main)
               for param in command.params
               if isinstance(param.type, click.Choice)
               and not isinstance(param.type, RegistryChoice)]
    assert literal == []


# Every command's and subcommand's help, listed from the group so a new command is covered.
@pytest.mark.parametrize("path", [()] + [path for path, _ in commands(main)], ids=" ".join)
def test_cli_help_does_not_import_tensorflow(path):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom advbench.cli import main\n"
            "result = CliRunner().invoke(main, sys.argv[1:] + ['--help'])\n"
            "assert result.exit_code == 0, result.output\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, *path], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# Each floor's __init__ holds its CLI choices (the old advbench/names.py) and lazy registries.
@pytest.mark.parametrize("floor", FLOORS[:-1])
def test_package_init_does_not_import_tensorflow(floor):
    code = (f"import sys\nimport advbench.{floor}\n"
            "print(sorted(m for m in ('tensorflow', 'keras', 'h5py') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_registries_name_each_class_by_its_cli_name_and_miss_no_module():
    import importlib

    from advbench.attacks import ATTACK_CLASSES, ATTACKS
    from advbench.attacks.base import Attack
    from advbench.defenses import DEFENSE_CLASSES, DEFENSES
    from advbench.defenses.base import Defense

    for package, names, classes, base in (("attacks", ATTACK_CLASSES, ATTACKS, Attack),
                                          ("defenses", DEFENSE_CLASSES, DEFENSES, Defense)):
        assert list(classes) == list(names)
        assert all(cls.name == name for name, cls in classes.items())
        # Every module that defines an attack (defense) class has it registered.
        for path in sorted((PACKAGE / package).glob("*.py")):
            module = importlib.import_module(f"advbench.{package}.{path.stem}")
            defined = [c for c in vars(module).values() if isinstance(c, type)
                       and issubclass(c, base) and c.__module__ == module.__name__ and c.name]
            assert all(c in classes.values() for c in defined), (path, defined)


def test_public_functions_are_typed():
    """Every public function and method of the package annotates its parameters and return
    (mypy, run by `make lint`, then checks them); Click commands are exempt."""
    untyped = []
    for path in MODULES:
        def visit(body, in_class):
            for node in body:
                if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                    visit(node.body, True)
                elif isinstance(node, ast.FunctionDef):
                    command = any(isinstance(d, ast.Call) for d in node.decorator_list)
                    private = node.name.startswith("_") and node.name not in ("__init__",
                                                                               "__call__")
                    if command or private:
                        continue
                    args = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                    if in_class and args and args[0].arg in ("self", "cls"):
                        args = args[1:]
                    args += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
                    if any(a.annotation is None for a in args) or (
                            node.returns is None and node.name != "__init__"):
                        untyped.append(f"{module_name(path)}.{node.name}")
        visit(ast.parse(path.read_text()).body, False)
    assert untyped == []
