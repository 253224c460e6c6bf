"""`advbench reproduce`: the paper's experiments end to end, through the same code paths as
`train`, `attack`, `evaluate` and `transfer`, with a report of tables and figures.

The grid is a list of stages; each writes artifacts at deterministic paths (or finds them by
key), so a rerun skips finished stages and an interrupted attack resumes from its checkpoint.
Stage results that are cheap summaries (evaluations) are cached as JSON next to the artifacts,
keyed by the content of their inputs.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from advbench import data
from advbench.attacks import make_attack
from advbench.attacks.budgets import parameter_line
from advbench.core.errors import ParameterError
from advbench.core.files import output_lock
from advbench.core.progress import Progress
from advbench.core.revision import source_revision
from advbench.core.types import PathLike
from advbench.data.samples import training_set
from advbench.defenses import make_defense
from advbench.models.zoo import models_dir as default_models_dir, zoo_path
from advbench.paper import published
from advbench.paper.profiles import DATASETS, MODEL_SPECS, PROFILES, profile_for
from advbench.run.artifacts import jsonable, load_model, read_model_metadata, save_model
from advbench.run.curves import CurveRun, parse_eps, read_curve, run_curve
from advbench.run.outputs import run_key
from advbench.run.runner import AttackRun
from advbench.run.shards import merge_shards
from advbench.run.train import TrainConfig, train, training_line
from advbench.score.evaluate import evaluate, score_artifact
from advbench.score.report import write_text
from advbench.score.transfer import craft_or_reuse, transfer

BLACKBOX_SOURCE = "resnet"


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _load_average() -> list[float] | None:
    """The 1, 5 and 15 min load averages (None where the OS has none): a run's wall time
    means little without the load it ran under."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


@dataclasses.dataclass
class Stage:
    """One node of the reproduction graph: ``id`` (stable, for ``--stage``), a readable
    ``name``, what it runs, and the ids of the stages it needs (the models it uses are
    trained by their own ``train:`` stages, never quietly by another stage)."""

    name: str
    run: Callable[[], Any]
    weight: float = 1.0  # rough relative cost, for the time-left estimate
    id: str = ""
    needs: tuple[str, ...] = ()


#: Where a stage's time in the report was measured.
STAGE_TIME_WHERE = ("this run", "an earlier run", "this run and earlier ones")

#: A stage that took less than this and is recorded as done was found complete on disk.
FOUND_COMPLETE_S = 2.0
# The lock is held for one small write: a wait this long means a hung process.
STAGE_TIMES_WAIT_S = 60.0


class StageTimes:
    """The seconds each stage spent doing its work, kept in ``timings.json`` across
    interrupted and resumed invocations: ``{stage: {"seconds": s, "done": bool}}``, written
    after every stage (and at an interrupt), so the report shows the time of the runs that did
    a stage's work, not the moment a later run took to find it complete. A file of the older
    form (``{stage: seconds}``) reads as every stage done. Each update re-reads the file under
    its lock: stages of one graph run at once (``--engine ray``, a cluster's ``--stage`` jobs)
    and must not drop each other's times."""

    def __init__(self, path: Path):
        self.path = path
        self.record = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        raw = json.loads(self.path.read_text()) if self.path.exists() else {}
        return {k: v if isinstance(v, dict) else {"seconds": float(v), "done": True}
                for k, v in raw.items()}

    def _update(self, stage: str, entry: Callable[[dict[str, Any]], dict[str, Any]]) -> dict:
        """Set ``stage``'s entry to ``entry(its entry now, or {})`` on the file's latest
        record, under its lock; returns the new entry."""
        with output_lock(self.path, "the stage times", wait_s=STAGE_TIMES_WAIT_S):
            self.record = self._read()
            self.record[stage] = entry(self.record.get(stage, {}))
            write_text(self.path, json.dumps(self.record, indent=1))
        return self.record[stage]

    def part(self, stage: str, seconds: float) -> None:
        """Adds the seconds of an interrupted part of ``stage`` (resumed later)."""
        def entry(before):
            earlier = before.get("seconds", 0.0) if not before.get("done", False) else 0.0
            return {"seconds": earlier + seconds, "done": False}
        self._update(stage, entry)

    def done(self, stage: str, seconds: float) -> tuple[float, str]:
        """``stage`` returned after ``seconds``: (the seconds of its work, where measured)."""
        before = self._read().get(stage)
        if before and before["done"] and seconds < FOUND_COMPLETE_S:
            return float(before["seconds"]), STAGE_TIME_WHERE[1]

        resumed = []

        def entry(now):
            if now and not now["done"]:
                resumed.append(True)
                return {"seconds": now["seconds"] + seconds, "done": True}
            return {"seconds": seconds, "done": True}
        written = self._update(stage, entry)
        return float(written["seconds"]), STAGE_TIME_WHERE[2 if resumed else 0]


class Reproduction:
    """One `advbench reproduce` run: the stages for a data set and profile, and their results."""

    def __init__(self, dataset: str, profile: str, out: str | Path, *,
                 data_dir: PathLike | None = None, models_dir: PathLike | None = None,
                 seed: int = 0, progress: Progress | None = None):
        if dataset not in DATASETS:
            raise ParameterError(f"unknown data set {dataset!r}; choose one of "
                                 f"{', '.join(DATASETS)}")
        if profile not in PROFILES:
            raise ParameterError(f"unknown profile {profile!r}; choose one of "
                                 f"{', '.join(PROFILES)}")
        self.dataset, self.profile = dataset, profile_for(dataset, profile)
        self.root = Path(out) / dataset / self.profile.name
        self.runs_dir = self.root / "runs"
        self.data_dir = data_dir
        self.models_dir = models_dir
        self.seed = seed
        self.progress = progress or Progress(quiet=True)
        self.results: dict[str, Any] = {}
        self.models: dict[str, Path] = {}
        # Per stage: (seconds of the work, where it was measured: STAGE_TIME_WHERE).
        self.timings: dict[str, tuple[float, str]] = {}
        self._training: np.ndarray | None = None  # training images, loaded once if needed
        # Where and when this invocation ran, for the report: read at the start, so a run
        # whose checkout changes meanwhile still names the code it imported.
        self.revision = source_revision()
        self.invocation: dict[str, Any] = {}

    # -- stages --------------------------------------------------------------------------------
    @property
    def seeds(self) -> tuple[int, ...]:
        """The training seeds: ``--seed`` first, then the profile's others."""
        return self.profile.seed_list(self.seed)

    def suffix(self, seed: int) -> str:
        """Stage-id suffix of a training seed: none for the first, ``@seedS`` for the others."""
        return "" if seed == self.seed else f"@seed{seed}"

    def stages(self) -> list[Stage]:
        """The stages in an order that runs every stage after the ones it needs. Every model
        has one ``train:NAME[@seedS]`` stage per training seed; every experiment a claim rests
        on has one stage per seed, which needs that seed's trainings."""
        if self.dataset == "toy":
            return [Stage(f"toy {name}", functools.partial(self._toy, name), 2.0,
                          id=f"toy:{name}") for name in ("circles", "moons")]
        p = self.profile
        seeds = self.seeds if "demo" not in p.experiments else (self.seed,)
        stages = []
        for seed in seeds:
            tag = self.suffix(seed)
            label = f" (seed {seed})" if tag else ""
            stages += [Stage(f"train {name}{label}", functools.partial(self._train, name, seed),
                             self._train_weight(name), id=f"train:{name}{tag}")
                       for name in p.models]
        for seed in seeds:
            stages += self._seed_stages(seed)
        if "certified" in p.experiments:  # first seed only: the section reads no interval
            from advbench.paper.certified import certified_stages

            stages += certified_stages(self, set(p.models))
        if "figure1" in p.experiments:
            stages.append(Stage("figure 1: minimal perturbations", self._figure1, 0.5,
                                id="figure1", needs=tuple(
                                    f"train:{n}" for n in ("cnn", "cnn-brelu-gda")
                                    if n in p.models)))
        return stages

    def _seed_stages(self, seed: int) -> list[Stage]:
        """The experiment stages of one training seed."""
        p, tag = self.profile, self.suffix(seed)
        label = f", seed {seed}" if tag else ""

        def train(*names: str) -> tuple[str, ...]:
            return tuple(f"train:{n}{tag}" for n in names)

        stages: list[Stage] = []
        experiments = set(p.experiments)
        defenses = [m for m in published.DEFENSE_MODELS if m in p.models]
        archs = [m for m in published.TABLE1_MODELS if m in p.models]
        if "demo" in experiments:
            for name in p.models:
                for attack in ("fgsm", "deepfool"):
                    stages.append(Stage(f"attack {attack} on {name}",
                                        functools.partial(self._attack, name, attack), 1.0,
                                        id=f"attack:{attack}:{name}", needs=train(name)))
            stages.append(Stage("evaluate", self._demo_table, 0.5, id="evaluate", needs=tuple(
                f"attack:{a}:{n}" for n in p.models for a in ("fgsm", "deepfool"))))
        if "table1" in experiments:
            stages.append(Stage(f"table 1: FGSM transfer matrix{label}",
                                functools.partial(self._table1, seed), 1.0,
                                id=f"table1{tag}", needs=train(*archs)))
        curves: list[str] = []
        if "figure3" in experiments:
            for name in archs:
                curves.append(f"curve:fgsm:{name}")
                stages.append(Stage(f"figure 3: FGSM curve on {name}{label}", functools.partial(
                    self._curve, name, [name], "fgsm", seed), 0.5,
                    id=f"curve:fgsm:{name}{tag}", needs=train(name)))
        if "figure4" in experiments:
            for name in defenses:
                for attack in ("fgsm", "rand-fgsm"):
                    # Figures 3 and 4 share the undefended CNN's white-box FGSM curve.
                    if f"curve:{attack}:{name}" in curves:
                        continue
                    stages.append(Stage(
                        f"figure 4: white-box {attack} curve on {name}{label}",
                        functools.partial(self._curve, name, [name], attack, seed), 0.5,
                        id=f"curve:{attack}:{name}{tag}", needs=train(name)))
            for attack in ("fgsm", "rand-fgsm"):
                stages.append(Stage(
                    f"figure 4: black-box {attack} curves from {BLACKBOX_SOURCE}{label}",
                    functools.partial(self._curve, BLACKBOX_SOURCE, defenses, attack, seed),
                    1.0, id=f"blackbox-curve:{attack}{tag}",
                    needs=train(BLACKBOX_SOURCE, *defenses)))
        if "table2" in experiments:
            for name in defenses:
                stages.append(Stage(f"table 2: minimal FGSM on {name}{label}",
                                    functools.partial(self._table2_row, name, seed), 1.0,
                                    id=f"table2:{name}{tag}", needs=train(name)))
            if not tag:  # the authors' code measured one model per defense
                stages += self._authors_stages("table2", defenses)
        if "table3" in experiments:
            stages.append(Stage(f"table 3: loss sensitivity{label}",
                                functools.partial(self._table3, seed), 0.5, id=f"table3{tag}",
                                needs=train(*defenses)))
            if not tag:
                stages += self._authors_stages("table3", defenses)
        if "table4" in experiments:
            for attack in published.BLACKBOX_ATTACKS:
                expensive = attack in ("jsma", "cw-l2", "deepfool")
                stages.append(Stage(
                    f"table 4: {attack} crafted on {BLACKBOX_SOURCE}{label}",
                    functools.partial(self._attack, BLACKBOX_SOURCE, attack, seed),
                    3.0 if expensive else 0.5, id=f"attack:{attack}:{BLACKBOX_SOURCE}{tag}",
                    needs=train(BLACKBOX_SOURCE)))
            stages.append(Stage(f"table 4: black-box scores{label}",
                                functools.partial(self._table4, seed), 1.0, id=f"table4{tag}",
                                needs=(*train(*defenses), *(
                                    f"attack:{a}:{BLACKBOX_SOURCE}{tag}"
                                    for a in published.BLACKBOX_ATTACKS))))
        if "strong" in experiments and not tag:  # one seed: the section reads no interval
            from advbench.paper.strong import strong_stages

            stages += strong_stages(self, defenses)
        return stages

    def _authors_stages(self, table: str, defenses: list[str]) -> list[Stage]:
        """Table 2 or 3 as the authors' code measured it (``advbench.paper.authors``)."""
        from advbench.paper import authors

        if table == "table3":
            return [Stage("table 3, authors' code: sensitivity variants", functools.partial(
                authors.table3_authors, self, defenses), 0.5, id="table3-authors",
                needs=tuple(f"train:{n}" for n in defenses))]
        stages = [Stage(f"table 2, authors' search: minimal FGSM on {name}",
                        functools.partial(authors.table2_authors_row, self, name), 1.0,
                        id=f"table2-authors:{name}", needs=(f"train:{name}",))
                  for name in defenses]
        if authors.FS_MODEL in defenses:
            stages.append(Stage("table 2, feature squeezing as the paper measured",
                                functools.partial(authors.feature_squeezing_as_paper, self),
                                1.0, id="table2-authors:fs-as-paper",
                                needs=(f"train:{authors.FS_MODEL}",)))
        return stages

    def stage(self, stage_id: str) -> Stage:
        """The stage ``stage_id``; ParameterError for an unknown id."""
        stages = {s.id: s for s in self.stages()}
        if stage_id not in stages:
            raise ParameterError(f"unknown stage {stage_id!r}; `advbench reproduce --plan` "
                                 "lists the stages")
        return stages[stage_id]

    def run_stage(self, stage_id: str) -> None:
        """Run the one stage ``stage_id`` (its dependencies must have run: their artifacts
        are found on disk), its seconds kept in ``timings.json`` for the report as in a full
        run (``--stage`` jobs of a cluster). ParameterError for an unknown id."""
        stage = self.stage(stage_id)
        self.root.mkdir(parents=True, exist_ok=True)
        self.stage_times = StageTimes(self.root / "timings.json")
        self._timed(stage)

    def _timed(self, stage: Stage) -> float:
        """Run ``stage``, its seconds added to ``timings.json`` (an interrupted or failed
        part too: its work counts towards the run that finishes it); returns the seconds
        this call took."""
        began = time.perf_counter()
        try:
            stage.run()
        except BaseException:
            self.stage_times.part(stage.name, time.perf_counter() - began)
            raise
        seconds = time.perf_counter() - began
        self.timings[stage.name] = self.stage_times.done(stage.name, seconds)
        return seconds

    def _train_weight(self, name: str) -> float:
        _, _, defense = MODEL_SPECS[name]
        config, defense_object = self._train_config(name)
        # Relative to one epoch over the images: GDA passes 1 + copies times, static
        # augmentation 3 times (a phase over the images, a phase over images + adversarials).
        passes = 1 + defense_object.copies
        if defense in ("fgsm-at", "vat"):
            passes = 3
        # One unit is about 40,000 processed samples (the stage weights below were set
        # against a training of that size).
        images = config.limit or data.dataset_info(self.dataset).train_size
        return passes * config.epochs * images / 40_000

    def run(self) -> Path:
        """Run every stage not yet done, then write the report; returns the report path."""
        stages = self.stages()
        remaining = sum(s.weight for s in stages)
        # The time-left estimate learns its seconds-per-weight from stages that did work;
        # stages found complete from an earlier run take no time and would skew it.
        worked_weight = worked_seconds = 0.0
        started = time.perf_counter()
        self.invocation = {"started": _now(), "load_start": _load_average()}
        self.root.mkdir(parents=True, exist_ok=True)
        self.stage_times = StageTimes(self.root / "timings.json")
        for i, stage in enumerate(stages, 1):
            elapsed = time.perf_counter() - started
            left = worked_seconds / worked_weight * remaining if worked_weight else None
            self.progress.log(f"[{i}/{len(stages)}] {stage.name}  (elapsed {elapsed / 60:.1f} min"
                              + (f", about {left / 60:.0f} min left)" if left else ")"))
            seconds = self._timed(stage)
            remaining -= stage.weight
            if seconds > 2.0:
                worked_weight += stage.weight
                worked_seconds += seconds
        self.invocation.update(finished=_now(), load_end=_load_average(),
                               wall_seconds=time.perf_counter() - started)
        from advbench.paper.report import write_report

        return write_report(self)

    # -- building blocks -------------------------------------------------------------------
    def _train_config(self, name: str, seed: int | None = None) -> tuple[TrainConfig, Any]:
        architecture, activation, defense = MODEL_SPECS[name]
        seed = self.seed if seed is None else seed
        p = self.profile
        epochs = {"gda": p.gda_epochs, "fgsm-at": p.static_epochs or p.epochs,
                  "vat": p.static_epochs or p.epochs}.get(defense, p.epochs)
        config = TrainConfig(dataset=self.dataset, architecture=architecture,
                             activation=activation, epochs=epochs, seed=seed,
                             limit=p.train_limit, patience=p.patience, data_dir=self.data_dir)
        return config, make_defense(defense, self.dataset, **p.defense_params.get(defense, {}))

    @staticmethod
    def _matches(meta: dict, config: TrainConfig, defense) -> bool:
        return (meta.get("dataset") == config.dataset
                and meta.get("architecture") == config.architecture
                and meta.get("activation") == config.activation
                and meta.get("defense") == defense.name
                and meta.get("defense_params") == defense.params()
                and meta.get("epochs") == config.epochs and meta.get("limit") == config.limit
                and meta.get("seed") == config.seed
                and meta.get("patience") == config.patience
                and meta.get("batch_size") == config.batch_size)

    def _train(self, name: str, seed: int | None = None) -> Path:
        config, defense = self._train_config(name, seed)
        architecture, activation, defense_name = MODEL_SPECS[name]
        suffix = "" if seed is None or seed == self.seed else f"-seed{seed}"
        candidates = [self.root / "models" / f"{self.dataset}-{name}{suffix}.h5",
                      zoo_path(self.dataset, architecture, activation, defense_name,
                               default_models_dir(self.models_dir))]
        for path in candidates:
            if path.exists():
                try:
                    if self._matches(read_model_metadata(path), config, defense):
                        self.progress.log(f"  using {path} (same training parameters)")
                        self.models[name + suffix] = path
                        return path
                except Exception:  # a foreign or broken file is simply not a match
                    continue
        model, meta = train(config, defense, progress=self.progress,
                            announce=training_line(config, defense, architecture))
        save_model(candidates[0], model, meta)
        self.models[name + suffix] = candidates[0]
        return candidates[0]

    def model(self, name: str, seed: int | None = None) -> tuple[Path, Any, dict]:
        suffix = "" if seed is None or seed == self.seed else f"-seed{seed}"
        path = self.models.get(name + suffix) or self._train(name, seed)
        model, meta = load_model(path)
        return path, model, meta

    def _limit_for(self, attack: str, seed: int | None = None) -> int | None:
        p = self.profile
        if attack in ("deepfool", "jsma", "cw-l2") and seed not in (None, self.seed) \
                and p.seed_expensive_limit is not None:
            return p.seed_expensive_limit
        expensive = attack in ("deepfool", "jsma", "cw-l2", "fgsm-min")
        return p.expensive_limit if expensive else p.test_limit

    def _put(self, seed: int | None, key: str, value: Any) -> None:
        """Store one seed's result under ``results["by_seed"][seed][key]``; the first seed's
        also under ``results[key]`` (the tables print it beside the paper's numbers)."""
        seed = self.seed if seed is None else seed
        self.results.setdefault("by_seed", {}).setdefault(seed, {})[key] = value
        if seed == self.seed:
            self.results[key] = value

    def _attack(self, source: str, attack_name: str, seed: int | None = None) -> Path:
        """Craft (or resume, or reuse) an attack artifact on ``source`` of training seed
        ``seed`` (always on the test images chosen by ``--seed``, the same for every seed)."""
        path, model, meta = self.model(source, seed)
        attack = make_attack(attack_name, **self.profile.attack_params.get(attack_name, {}))
        run = AttackRun(model_path=str(path), dataset=self.dataset, split="test",
                        limit=self._limit_for(attack_name, seed), batch_size=256, seed=self.seed,
                        data_dir=self.data_dir)
        output, _ = craft_or_reuse(run, attack, (path, model, meta), self.runs_dir,
                                   progress=self.progress)
        if isinstance(output, list):
            # Shards of this run (advbench attack --shard) found in runs_dir: merged once into
            # one artifact, which the stages below cache and score like any other.
            merged = Path(str(output[0]).rsplit("-shard", 1)[0] + ".h5")
            output, _ = merge_shards(output, merged, overwrite=True)
        key = source + self.suffix(self.seed if seed is None else seed)
        self.results.setdefault("attacks", {})[(key, attack_name)] = output
        return output

    def _cached(self, name: str, inputs: list, compute: Callable[[], Any]) -> Any:
        """A JSON summary cached under ``name``, recomputed when its inputs changed."""
        # The inputs, and the modification times of those that are files (a rewritten
        # artifact changes the summary).
        key = run_key({"inputs": [str(i) for i in inputs],
                       "mtimes": [Path(str(i)).stat().st_mtime_ns for i in inputs
                                  if Path(str(i)).exists()]})
        path = self.root / "summaries" / f"{name}.json"
        if path.exists():
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return cached["value"]
        value = compute()
        write_text(path, json.dumps({"key": key, "value": jsonable(value, strict=False)}))
        return json.loads(json.dumps(jsonable(value, strict=False)))

    # -- experiments -------------------------------------------------------------------------
    def _table1(self, seed: int | None = None):
        names = [m for m in published.TABLE1_MODELS if m in self.profile.models]
        loaded = [self.model(n, seed) for n in names]
        attack = make_attack("fgsm", **self.profile.attack_params["fgsm"])

        def compute():
            result = transfer(loaded, loaded, attack, dataset=self.dataset,
                              limit=self.profile.test_limit, seed=self.seed, batch_size=256,
                              data_dir=self.data_dir, runs_dir=self.runs_dir,
                              progress=self.progress)
            return result.summary
        summary = self._cached(f"table1{self._tag(seed)}", [m[0] for m in loaded], compute)
        self._put(seed, "table1", {"names": names, "summary": summary})

    def _tag(self, seed: int | None) -> str:
        """File-name suffix of a training seed's summaries (none for the first seed)."""
        return "" if seed in (None, self.seed) else f"-seed{seed}"

    def _curve(self, source: str, targets: list[str], attack: str, seed: int | None = None):
        src = self.model(source, seed)
        tgts = [self.model(t, seed) for t in targets]
        run = CurveRun(dataset=self.dataset, limit=self.profile.test_limit, seed=self.seed,
                       batch_size=256, data_dir=self.data_dir)
        eps = parse_eps(self.profile.eps_grid)
        params = self.profile.attack_params.get(attack, {})
        # Every parameter of the stage, as `advbench attack` prints them.
        shown_params: dict[str, Any] = {"norm": "linf", "eps": self.profile.eps_grid}
        if attack == "rand-fgsm":
            shown_params["alpha"] = float(params.get("alpha", 0.05))
        self.progress.log(parameter_line(
            f"{attack} curve", shown_params, extra=f"untargeted, on {source} against "
            f"{', '.join(targets)}", seed=self.seed,
            samples=f"{run.limit} samples (class-balanced) of {self.dataset} test (batch "
                    f"size {run.batch_size})" if run.limit else
                    f"all samples of {self.dataset} test (batch size {run.batch_size})"))
        path, _ = run_curve(run, src, tgts, eps, attack=attack,
                            alpha=params.get("alpha", 0.05), runs_dir=self.runs_dir,
                            progress=self.progress)
        curve = read_curve(path)
        entry = {"source": source, "targets": targets, "attack": attack,
                 "eps": [float(e) for e in curve.eps],
                 "accuracy": {t: [float(a) for a in curve.accuracy[i]]
                              for i, t in enumerate(targets)},
                 "clean": {t: float(curve.clean_accuracy[i]) for i, t in enumerate(targets)},
                 "path": str(path)}
        seed = self.seed if seed is None else seed
        curves = self.results.setdefault("by_seed", {}).setdefault(seed, {}).setdefault(
            "curves", [])
        if seed == self.seed:
            self.results["curves"] = curves
        # Figures 3 and 4 share the white-box FGSM curve of the undefended CNN: keep it once.
        if not any(c["source"] == source and c["targets"] == targets and c["attack"] == attack
                   for c in curves):
            curves.append(entry)

    def _training_images(self) -> np.ndarray:
        if self._training is None:
            self._training = training_set(self.dataset, self.data_dir)
        return self._training

    def _table2_row(self, name: str, seed: int | None = None):
        artifact = self._attack(name, "fgsm-min", seed)
        path, model, meta = self.model(name, seed)

        def compute():
            return score_artifact(model, meta, path, artifact, data_dir=self.data_dir,
                                  training=self._training_images).summary
        row = self._cached(f"table2-{name}{self._tag(seed)}", [artifact, path], compute)
        seed = self.seed if seed is None else seed
        table = self.results.setdefault("by_seed", {}).setdefault(seed, {}).setdefault(
            "table2", {})
        table[name] = row
        if seed == self.seed:
            self.results["table2"] = table

    def _table3(self, seed: int | None = None):
        names = [m for m in published.DEFENSE_MODELS if m in self.profile.models]
        rows = {}
        for name in names:
            path, model, meta = self.model(name, seed)

            def compute(model=model, meta=meta, path=path):
                return evaluate(model, meta, path, [], limit=self.profile.test_limit,
                                seed=self.seed, data_dir=self.data_dir, distance=False
                                ).summary["clean"]
            rows[name] = self._cached(f"table3-{name}{self._tag(seed)}", [path], compute)
        self._put(seed, "table3", rows)

    def _table4(self, seed: int | None = None):
        names = [m for m in published.DEFENSE_MODELS if m in self.profile.models]
        artifacts = {a: self._attack(BLACKBOX_SOURCE, a, seed)
                     for a in published.BLACKBOX_ATTACKS}
        rows = {}
        for name in names:
            path, model, meta = self.model(name, seed)
            row = {}
            for attack, artifact in artifacts.items():
                def compute(model=model, meta=meta, path=path, artifact=artifact):
                    return score_artifact(model, meta, path, artifact, data_dir=self.data_dir,
                                          model_level=False).summary
                row[attack] = self._cached(f"table4-{name}-{attack}{self._tag(seed)}",
                                           [artifact, path], compute)
            rows[name] = row
        self._put(seed, "table4", rows)

    def _figure1(self):
        """Minimal FGSM perturbations of the first ten test images, undefended vs GDA+BRELU,
        crafted by the same attack object the `attack` stage uses."""
        x, y, _ = data.load(self.dataset, "test", data_dir=self.data_dir)
        x, y = x[:10], y[:10]
        attack = make_attack("fgsm-min", **self.profile.attack_params["fgsm-min"])
        panels = {}
        for name in ("cnn", "cnn-brelu-gda"):
            if name not in self.profile.models:
                continue
            _, model, _ = self.model(name)
            out = attack(model, x, y, seed=self.seed)
            panels[name] = {"x_adv": out.x_adv, "eps": out.extras.get("eps"),
                            "found": out.extras.get("found")}
        self.results["figure1"] = {"x": x, "y": y, "panels": panels}

    def _demo_table(self):
        rows = {}
        for name in self.profile.models:
            path, model, meta = self.model(name)
            # Found on disk when the attack stages ran elsewhere (--stage, --engine ray).
            artifacts = [self.results.get("attacks", {}).get((name, a)) or self._attack(name, a)
                         for a in ("fgsm", "deepfool")]
            rows[name] = evaluate(model, meta, path, artifacts, limit=self.profile.test_limit,
                                  seed=self.seed, data_dir=self.data_dir, distance=False,
                                  progress=self.progress).summary
            rows[name]["training_time_s"] = meta.get("training_time_s")
            rows[name]["clean_test_accuracy"] = meta.get("clean_test_accuracy")
        self.results["demo"] = rows

    def _toy(self, name: str):
        from advbench.paper.toy import run_toy

        result = self._saved_toy(name, run_toy)
        if result is None:
            result = run_toy(name, self.root, seed=self.seed, progress=self.progress)
        self.results.setdefault("toy", {})[name] = result

    def _saved_toy(self, name: str, run_toy: Callable[..., dict]) -> dict | None:
        """The finished ``toy-<name>.json`` of this seed and ``run_toy``'s settings, or None:
        a rerun, or the report after --stage or --engine ray, reuses it instead of training
        every panel again. An unreadable or partial file is recomputed."""
        from advbench.paper.toy import AUGMENTATIONS

        saved, figure = self.root / f"toy-{name}.json", self.root / f"toy-{name}.png"
        if not (saved.is_file() and figure.is_file()):
            return None
        try:
            result = json.loads(saved.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        settings = {key: parameter.default for key, parameter
                    in inspect.signature(run_toy).parameters.items()
                    if key in ("epochs", "n_train", "n_test")}
        if not (isinstance(result, dict) and result.get("seed") == self.seed
                and all(result.get(key) == value for key, value in settings.items())
                and isinstance(result.get("panels"), dict)
                and set(result["panels"]) == set(AUGMENTATIONS)):
            return None
        self.progress.log(f"{saved} is complete already; reused")
        return result
