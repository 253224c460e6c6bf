"""`advbench reproduce`: the paper's experiments end to end, through the same code paths as
`train`, `attack`, `evaluate` and `transfer`, with a report of tables and figures.

The grid is a list of stages; each writes artifacts at deterministic paths (or finds them by
key), so a rerun skips finished stages and an interrupted attack resumes from its checkpoint.
Stage results that are cheap summaries (evaluations) are cached as JSON next to the artifacts,
keyed by the content of their inputs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import inspect
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from advbench import data
from advbench.artifacts import jsonable, load_model, read_model_metadata, save_model
from advbench.attacks import make_attack
from advbench.curves import CurveRun, parse_eps, read_curve, run_curve
from advbench.defenses import make_defense
from advbench.errors import ParameterError
from advbench.evaluate import evaluate, score_artifact, training_set
from advbench.models import models_dir as default_models_dir, zoo_path
from advbench.paper import published
from advbench.paper.profiles import DATASETS, MODEL_SPECS, PROFILES
from advbench.progress import Progress
from advbench.report import write_text
from advbench.runner import AttackRun
from advbench.shards import merge_shards
from advbench.train import TrainConfig, train
from advbench.transfer import craft_or_reuse, transfer
from advbench.types import PathLike

BLACKBOX_SOURCE = "resnet"


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
        self.dataset, self.profile = dataset, PROFILES[profile]
        self.root = Path(out) / dataset / self.profile.name
        self.runs_dir = self.root / "runs"
        self.data_dir = data_dir
        self.models_dir = models_dir
        self.seed = seed
        self.progress = progress or Progress(quiet=True)
        self.results: dict[str, Any] = {}
        self.models: dict[str, Path] = {}
        self.timings: dict[str, float] = {}
        self._training: np.ndarray | None = None  # training images, loaded once if needed

    # -- stages --------------------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        """The stages in an order that runs every stage after the ones it needs."""
        if self.dataset == "toy":
            return [Stage(f"toy {name}", functools.partial(self._toy, name), 2.0,
                          id=f"toy:{name}") for name in ("circles", "moons")]
        p = self.profile

        def train(*names: str) -> tuple[str, ...]:
            return tuple(f"train:{n}" for n in names)

        stages = [Stage(f"train {name}", functools.partial(self._train, name),
                        self._train_weight(name), id=f"train:{name}") for name in p.models]
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
            stages.append(Stage("table 1: FGSM transfer matrix", self._table1, 1.0,
                                id="table1", needs=train(*archs)))
        if "figure3" in experiments:
            for name in archs:
                stages.append(Stage(f"figure 3: FGSM curve on {name}",
                                    functools.partial(self._curve, name, [name], "fgsm"), 0.5,
                                    id=f"curve:fgsm:{name}", needs=train(name)))
            for seed in p.extra_seeds:
                for name in archs:
                    # Trains its own seeded model, which no other stage uses.
                    stages.append(Stage(f"figure 3, seed {seed}: train {name}, FGSM curve",
                                        functools.partial(self._seed_curve, name, seed),
                                        self._train_weight(name) + 0.5,
                                        id=f"seed{seed}:{name}"))
        if "figure4" in experiments:
            for name in defenses:
                for attack in ("fgsm", "rand-fgsm"):
                    # Figures 3 and 4 share the undefended CNN's white-box FGSM curve.
                    if any(s.id == f"curve:{attack}:{name}" for s in stages):
                        continue
                    stages.append(Stage(f"figure 4: white-box {attack} curve on {name}",
                                        functools.partial(self._curve, name, [name], attack),
                                        0.5, id=f"curve:{attack}:{name}", needs=train(name)))
            for attack in ("fgsm", "rand-fgsm"):
                stages.append(Stage(f"figure 4: black-box {attack} curves from "
                                    f"{BLACKBOX_SOURCE}", functools.partial(
                                        self._curve, BLACKBOX_SOURCE, defenses, attack), 1.0,
                                    id=f"blackbox-curve:{attack}",
                                    needs=train(BLACKBOX_SOURCE, *defenses)))
        if "table2" in experiments:
            for name in defenses:
                stages.append(Stage(f"table 2: minimal FGSM on {name}",
                                    functools.partial(self._table2_row, name), 1.0,
                                    id=f"table2:{name}", needs=train(name)))
        if "table3" in experiments:
            stages.append(Stage("table 3: loss sensitivity", self._table3, 0.5, id="table3",
                                needs=train(*defenses)))
        if "table4" in experiments:
            for attack in published.BLACKBOX_ATTACKS:
                stages.append(Stage(f"table 4: {attack} crafted on {BLACKBOX_SOURCE}",
                                    functools.partial(self._attack, BLACKBOX_SOURCE, attack),
                                    3.0 if attack in ("jsma", "cw-l2", "deepfool") else 0.5,
                                    id=f"attack:{attack}:{BLACKBOX_SOURCE}",
                                    needs=train(BLACKBOX_SOURCE)))
            stages.append(Stage("table 4: black-box scores", self._table4, 1.0, id="table4",
                                needs=(*train(*defenses), *(
                                    f"attack:{a}:{BLACKBOX_SOURCE}"
                                    for a in published.BLACKBOX_ATTACKS))))
        if "strong" in experiments:
            from advbench.paper.strong import strong_stages

            stages += strong_stages(self, defenses)
        if "figure1" in experiments:
            stages.append(Stage("figure 1: minimal perturbations", self._figure1, 0.5,
                                id="figure1", needs=train(*(
                                    n for n in ("cnn", "cnn-brelu-gda") if n in p.models))))
        return stages

    def run_stage(self, stage_id: str) -> None:
        """Run the one stage ``stage_id`` (its dependencies must have run: their artifacts
        are found on disk). ParameterError for an unknown id."""
        stages = {s.id: s for s in self.stages()}
        if stage_id not in stages:
            raise ParameterError(f"unknown stage {stage_id!r}; `advbench reproduce --plan` "
                                 "lists the stages")
        stages[stage_id].run()

    def _train_weight(self, name: str) -> float:
        _, _, defense = MODEL_SPECS[name]
        if defense == "gda":
            return 11.0 * self.profile.gda_epochs / max(self.profile.epochs, 1)
        return 2.5 if defense in ("fgsm-at", "vat") else 1.0

    def run(self) -> Path:
        """Run every stage not yet done, then write the report; returns the report path."""
        stages = self.stages()
        remaining = sum(s.weight for s in stages)
        # The time-left estimate learns its seconds-per-weight from stages that did work;
        # stages found complete from an earlier run take no time and would skew it.
        worked_weight = worked_seconds = 0.0
        started = time.perf_counter()
        self.root.mkdir(parents=True, exist_ok=True)
        for i, stage in enumerate(stages, 1):
            elapsed = time.perf_counter() - started
            left = worked_seconds / worked_weight * remaining if worked_weight else None
            self.progress.log(f"[{i}/{len(stages)}] {stage.name}  (elapsed {elapsed / 60:.1f} min"
                              + (f", about {left / 60:.0f} min left)" if left else ")"))
            began = time.perf_counter()
            stage.run()
            seconds = time.perf_counter() - began
            self.timings[stage.name] = seconds
            remaining -= stage.weight
            if seconds > 2.0:
                worked_weight += stage.weight
                worked_seconds += seconds
        from advbench.paper.report import write_report

        return write_report(self)

    # -- building blocks -------------------------------------------------------------------
    def _train_config(self, name: str, seed: int | None = None) -> tuple[TrainConfig, Any]:
        architecture, activation, defense = MODEL_SPECS[name]
        seed = self.seed if seed is None else seed
        gda = defense == "gda"
        epochs = self.profile.gda_epochs if gda else self.profile.epochs
        config = TrainConfig(dataset=self.dataset, architecture=architecture,
                             activation=activation, epochs=epochs, seed=seed,
                             limit=self.profile.train_limit, data_dir=self.data_dir)
        return config, make_defense(defense, self.dataset)

    @staticmethod
    def _matches(meta: dict, config: TrainConfig, defense) -> bool:
        return (meta.get("dataset") == config.dataset
                and meta.get("architecture") == config.architecture
                and meta.get("activation") == config.activation
                and meta.get("defense") == defense.name
                and meta.get("defense_params") == defense.params()
                and meta.get("epochs") == config.epochs and meta.get("limit") == config.limit
                and meta.get("seed") == config.seed
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
        model, meta = train(config, defense, progress=self.progress)
        save_model(candidates[0], model, meta)
        self.models[name + suffix] = candidates[0]
        return candidates[0]

    def model(self, name: str, seed: int | None = None) -> tuple[Path, Any, dict]:
        suffix = "" if seed is None or seed == self.seed else f"-seed{seed}"
        path = self.models.get(name + suffix) or self._train(name, seed)
        model, meta = load_model(path)
        return path, model, meta

    def _limit_for(self, attack: str) -> int | None:
        expensive = attack in ("deepfool", "jsma", "cw-l2", "fgsm-min")
        return self.profile.expensive_limit if expensive else self.profile.test_limit

    def _attack(self, source: str, attack_name: str) -> Path:
        """Craft (or resume, or reuse) an attack artifact on ``source``."""
        path, model, meta = self.model(source)
        attack = make_attack(attack_name, **self.profile.attack_params.get(attack_name, {}))
        run = AttackRun(model_path=str(path), dataset=self.dataset, split="test",
                        limit=self._limit_for(attack_name), batch_size=256, seed=self.seed,
                        data_dir=self.data_dir)
        output, _ = craft_or_reuse(run, attack, (path, model, meta), self.runs_dir,
                                   progress=self.progress)
        if isinstance(output, list):
            # Shards of this run (advbench attack --shard) found in runs_dir: merged once into
            # one artifact, which the stages below cache and score like any other.
            merged = Path(str(output[0]).rsplit("-shard", 1)[0] + ".h5")
            output, _ = merge_shards(output, merged, overwrite=True)
        self.results.setdefault("attacks", {})[(source, attack_name)] = output
        return output

    def _cached(self, name: str, inputs: list, compute: Callable[[], Any]) -> Any:
        """A JSON summary cached under ``name``, recomputed when its inputs changed."""
        digest = hashlib.sha256(json.dumps([str(i) for i in inputs]).encode())
        for item in inputs:
            item = Path(str(item))
            if item.exists():
                digest.update(str(item.stat().st_mtime_ns).encode())
        key = digest.hexdigest()
        path = self.root / "summaries" / f"{name}.json"
        if path.exists():
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                return cached["value"]
        value = compute()
        write_text(path, json.dumps({"key": key, "value": jsonable(value, strict=False)}))
        return json.loads(json.dumps(jsonable(value, strict=False)))

    # -- experiments -------------------------------------------------------------------------
    def _table1(self):
        names = [m for m in published.TABLE1_MODELS if m in self.profile.models]
        loaded = [self.model(n) for n in names]
        attack = make_attack("fgsm", **self.profile.attack_params["fgsm"])

        def compute():
            result = transfer(loaded, loaded, attack, dataset=self.dataset,
                              limit=self.profile.test_limit, seed=self.seed, batch_size=256,
                              data_dir=self.data_dir, runs_dir=self.runs_dir,
                              progress=self.progress)
            return result.summary
        summary = self._cached("table1", [m[0] for m in loaded], compute)
        self.results["table1"] = {"names": names, "summary": summary}

    def _curve(self, source: str, targets: list[str], attack: str):
        src = self.model(source)
        tgts = [self.model(t) for t in targets]
        run = CurveRun(dataset=self.dataset, limit=self.profile.test_limit, seed=self.seed,
                       batch_size=256, data_dir=self.data_dir)
        eps = parse_eps(self.profile.eps_grid)
        params = self.profile.attack_params.get(attack, {})
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
        curves = self.results.setdefault("curves", [])
        # Figures 3 and 4 share the white-box FGSM curve of the undefended CNN: keep it once.
        if not any(c["source"] == source and c["targets"] == targets and c["attack"] == attack
                   for c in curves):
            curves.append(entry)

    def _seed_curve(self, name: str, seed: int):
        """Figure 3's white-box FGSM curve for ``name`` retrained with another seed, on the
        same test images as the main run."""
        source = self.model(name, seed)
        run = CurveRun(dataset=self.dataset, limit=self.profile.test_limit, seed=self.seed,
                       batch_size=256, data_dir=self.data_dir)
        path, _ = run_curve(run, source, [source], parse_eps(self.profile.eps_grid),
                            attack="fgsm", runs_dir=self.runs_dir, progress=self.progress)
        curve = read_curve(path)
        self.results.setdefault("seed_study", {}).setdefault(name, {})[seed] = {
            "eps": [float(e) for e in curve.eps],
            "accuracy": [float(a) for a in curve.accuracy[0]],
            "clean": float(curve.clean_accuracy[0]),
        }

    def _training_images(self) -> np.ndarray:
        if self._training is None:
            self._training = training_set(self.dataset, self.data_dir)
        return self._training

    def _table2_row(self, name: str):
        artifact = self._attack(name, "fgsm-min")
        path, model, meta = self.model(name)

        def compute():
            return score_artifact(model, meta, path, artifact, data_dir=self.data_dir,
                                  training=self._training_images).summary
        self.results.setdefault("table2", {})[name] = self._cached(
            f"table2-{name}", [artifact, path], compute)

    def _table3(self):
        names = [m for m in published.DEFENSE_MODELS if m in self.profile.models]
        rows = {}
        for name in names:
            path, model, meta = self.model(name)

            def compute(model=model, meta=meta, path=path):
                return evaluate(model, meta, path, [], limit=self.profile.test_limit,
                                seed=self.seed, data_dir=self.data_dir, distance=False
                                ).summary["clean"]
            rows[name] = self._cached(f"table3-{name}", [path], compute)
        self.results["table3"] = rows

    def _table4(self):
        names = [m for m in published.DEFENSE_MODELS if m in self.profile.models]
        artifacts = {a: self._attack(BLACKBOX_SOURCE, a) for a in published.BLACKBOX_ATTACKS}
        rows = {}
        for name in names:
            path, model, meta = self.model(name)
            row = {}
            for attack, artifact in artifacts.items():
                def compute(model=model, meta=meta, path=path, artifact=artifact):
                    return score_artifact(model, meta, path, artifact, data_dir=self.data_dir,
                                          model_level=False).summary
                row[attack] = self._cached(f"table4-{name}-{attack}", [artifact, path], compute)
            rows[name] = row
        self.results["table4"] = rows

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
