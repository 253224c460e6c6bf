"""--engine ray: one Ray task per shard, retried when its worker dies, merged bit-identical to
one process; reproduce's stages as Ray tasks in dependency order, equal to the sequential run
(skipped without Ray, an optional extra)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from advbench.attacks import make_attack
from advbench.core.errors import ArtifactError, OutputError, ParameterError
from advbench.paper import experiments, profiles
from advbench.paper.plan import base_command, plan
from advbench.run.artifacts import ATTACK_SCHEMA, load_model, read_arrays
from advbench.run.loading import open_model
from advbench.run.runner import AttackRun, attack_split

ray = pytest.importorskip("ray")

from advbench.paper.plan import reproduce_with_ray, run_stage  # noqa: E402
from advbench.run.ray_engine import attack_shard, attack_with_ray  # noqa: E402

#: The demo profile cut to seconds (its graph: two trainings, four attacks, evaluate).
TINY_DEMO = dataclasses.replace(
    experiments.PROFILES["demo"], epochs=1, train_limit=60, gda_epochs=1, test_limit=20,
    expensive_limit=10, attack_params={**profiles.PAPER_ATTACKS, "deepfool": {"max_iter": 20}})


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_shards_with_a_crashed_task_equal_one_process(local_ray, trained_tiny_cnn,
                                                          fake_data_dir, tmp_path):
    path, model, meta = trained_tiny_cnn
    run = AttackRun(model_path=str(path), dataset="mnist", limit=40, batch_size=8,
                    data_dir=str(fake_data_dir), seed=3)
    attack = make_attack("pgd", eps=0.2, steps=3)
    marker = tmp_path / "crashed"

    def crash_once(source, run, name, params, output, index, count):
        # The first attempt of shard 1 kills its worker process: Ray must retry the task.
        if index == 1 and not marker.exists():
            marker.touch()
            os._exit(1)
        return attack_shard(source, run, name, params, output, index, count)

    loaded = open_model(str(path))
    merged = attack_with_ray(run, attack, tmp_path / "ray.h5", model=loaded, workers=2,
                             shard_task=crash_once)
    assert marker.exists()
    whole = attack_split(run, attack, model, meta, tmp_path / "whole.h5")
    one, two = read_arrays(whole, ATTACK_SCHEMA)[1], read_arrays(merged, ATTACK_SCHEMA)[1]
    assert sorted(one) == sorted(two)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    # Done already: returned as it is; another run's artifact is not replaced.
    assert attack_with_ray(run, attack, merged, model=loaded, workers=2) == merged
    with pytest.raises(ArtifactError, match="ray.h5 holds a run with other parameters, model or "
                                            "samples; pass --overwrite"):
        attack_with_ray(run, make_attack("pgd", eps=0.1, steps=3), merged, model=loaded,
                        workers=2)


def test_certify_as_ray_tasks_with_a_crashed_task_equals_one_process(
        local_ray, dense_mnist_model, fake_data_dir, tmp_path):
    from advbench.run.artifacts import CERTIFICATION_SCHEMA
    from advbench.score import certify

    path, model, meta = dense_mnist_model
    run = certify.CertifyRun(model_path=str(path), dataset="mnist", limit=12, sigma=0.25, n0=10,
                             n=200, batch_size=500, data_dir=str(fake_data_dir))
    marker = tmp_path / "crashed"

    def crash_once(source, run, output, index, count, mismatch_ok):
        if index == 1 and not marker.exists():  # the worker dies: Ray retries the task
            marker.touch()
            os._exit(1)
        return certify.certify_shard(source, run, output, index, count, mismatch_ok)

    merged = certify.certify_with_ray(run, open_model(str(path)), tmp_path / "ray.h5",
                                      workers=3, shard_task=crash_once)
    assert marker.exists()
    whole = certify.certify_split(run, model, meta, tmp_path / "whole.h5")
    one, two = read_arrays(whole, CERTIFICATION_SCHEMA)[1], read_arrays(merged,
                                                                        CERTIFICATION_SCHEMA)[1]
    assert sorted(one) == sorted(two)
    for name in one:
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
        assert one[name].dtype == two[name].dtype, name


def test_a_tasks_own_error_is_one_line(local_ray, trained_tiny_cnn, fake_data_dir, tmp_path):
    """A shard that meets a full disk (or any advbench error) ends the run with its own one
    line, not Ray's wrapper with the worker's traceback."""
    path, _, _ = trained_tiny_cnn
    run = AttackRun(model_path=str(path), dataset="mnist", limit=16, batch_size=8,
                    data_dir=str(fake_data_dir))
    message = (f"cannot write artifact {tmp_path / 'ray-shard1of2.h5'}: No space left on "
               "device; free space on that disk or choose another output path (-o)")

    def full_disk(source, run, name, params, output, index, count):
        raise OutputError(message)

    with pytest.raises(OutputError) as info:
        attack_with_ray(run, make_attack("fgsm", eps=0.1), tmp_path / "ray.h5",
                        model=open_model(str(path)), workers=2, shard_task=full_disk)
    assert str(info.value) == message and type(info.value) is OutputError


def test_reproduce_stages_as_ray_tasks_equal_the_sequential_run(local_ray, fake_data_dir,
                                                                tmp_path, monkeypatch):
    monkeypatch.setitem(experiments.PROFILES, "demo", TINY_DEMO)
    log, crashed = tmp_path / "done.log", tmp_path / "crashed"

    def tiny_stage(settings, stage_id, *needs):
        experiments.PROFILES["demo"] = TINY_DEMO  # this worker's registry, not the test's
        # The first attempt of one attack kills its worker: Ray must retry the task.
        if stage_id == "attack:deepfool:cnn" and not crashed.exists():
            crashed.touch()
            os._exit(1)
        done = run_stage(settings, stage_id, *needs)
        with log.open("a") as f:
            f.write(f"{stage_id}\n")
        return done

    def settings(name):
        return {"dataset": "mnist", "profile": "demo", "out": str(tmp_path / name),
                "data_dir": str(fake_data_dir), "models_dir": str(tmp_path / f"zoo-{name}"),
                "seed": 0}

    ray_repro = experiments.Reproduction(**settings("ray"))
    nodes = plan(ray_repro, base_command(ray_repro, str(tmp_path / "ray")))
    ran = reproduce_with_ray(settings("ray"), nodes, stage_task=tiny_stage)
    assert crashed.exists()
    assert ran == [n["id"] for n in nodes[:-1]]
    # Each stage finished after every stage it needs (the retried one exactly once).
    order = log.read_text().split()
    assert sorted(order) == sorted(ran)
    for node in nodes[:-1]:
        assert all(order.index(n) < order.index(node["id"]) for n in node["needs"]), node["id"]
    ray_repro.run()  # the report, from the finished stages

    sequential = experiments.Reproduction(**settings("seq"))
    sequential.run()
    ray_root, seq_root = ray_repro.root, sequential.root
    assert (ray_root / "report.md").exists()
    for folder in ("models", "runs"):
        names = sorted(p.name for p in (seq_root / folder).glob("*.h5"))
        assert names and names == sorted(p.name for p in (ray_root / folder).glob("*.h5"))
    for model in TINY_DEMO.models:
        one, two = load_model(sequential.models[model])[0], load_model(ray_repro.models[model])[0]
        for a, b in zip(one.get_weights(), two.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=model)
    for name in sorted(p.name for p in (seq_root / "runs").glob("*.h5")):
        one = read_arrays(seq_root / "runs" / name, ATTACK_SCHEMA)[1]
        two = read_arrays(ray_root / "runs" / name, ATTACK_SCHEMA)[1]
        assert sorted(one) == sorted(two)
        for array in one:
            np.testing.assert_array_equal(one[array], two[array], err_msg=f"{name}:{array}")
    for model in TINY_DEMO.models:
        one, two = sequential.results["demo"][model], ray_repro.results["demo"][model]
        one.pop("training_time_s"), two.pop("training_time_s")
        # The same numbers (gradient sums to float32 rounding: a Ray worker runs TensorFlow
        # on its one CPU); only the folders in the artifacts' paths differ.
        two = json.loads(json.dumps(two, default=str).replace(str(tmp_path / "ray"),
                                                              str(tmp_path / "seq")))
        one, two = _leaves(json.loads(json.dumps(one, default=str))), _leaves(two)
        assert sorted(one) == sorted(two), model
        floats = [k for k, v in one.items() if isinstance(v, float)]
        assert {k: two[k] for k in floats} == pytest.approx({k: one[k] for k in floats},
                                                            rel=1e-6), model
        assert {k: v for k, v in two.items() if k not in floats} == \
            {k: v for k, v in one.items() if k not in floats}, model


def _leaves(tree, prefix=""):
    """{"a.b.0": leaf} of nested dicts and lists."""
    items = tree.items() if isinstance(tree, dict) else \
        enumerate(tree) if isinstance(tree, list) else None
    if items is None:
        return {prefix: tree}
    return {k: v for key, value in items for k, v in _leaves(value, f"{prefix}.{key}").items()}


def test_a_stage_error_is_raised_as_it_is(local_ray, tmp_path):
    settings = {"dataset": "mnist", "profile": "demo", "out": str(tmp_path), "seed": 0}
    with pytest.raises(ParameterError, match="^unknown stage 'nope'; `advbench reproduce --plan` "
                                             "lists the stages$"):
        reproduce_with_ray(settings, [{"id": "nope", "needs": []}], retries=0)
    with pytest.raises(ParameterError, match="^workers must be >= 1, got 0$"):
        reproduce_with_ray(settings, [], workers=0)


def test_ray_attacks_a_users_keras_model_with_its_reading_flags(local_ray, tmp_path,
                                                                monkeypatch):
    """`advbench attack own.keras --data own.npz --engine ray --workers 2` failed with "own.keras
    is not an HDF5 file": each task reopened the model with the advbench .h5 reader. Each task
    now opens it as the command read it (loading.ModelSource), flags included."""
    import keras
    from click.testing import CliRunner

    from advbench.cli import main
    from conftest import write_digits_npz

    monkeypatch.chdir(tmp_path)
    write_digits_npz(tmp_path / "own.npz", 40, 24)
    inputs = keras.Input((28, 28, 1))
    keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs))).save("own.keras")
    args = ["attack", "own.keras", "--data", "own.npz", "--input-range", "0:255", "--attack",
            "fgsm", "--eps", "0.1", "--limit", "12", "--batch-size", "4", "-q"]
    result = CliRunner().invoke(main, [*args, "--engine", "ray", "--workers", "2", "-o",
                                       "ray.h5"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "ray.h5\n"
    result = CliRunner().invoke(main, [*args, "-o", "one.h5"])
    assert result.exit_code == 0, result.output
    one, two = read_arrays("one.h5", ATTACK_SCHEMA), read_arrays("ray.h5", ATTACK_SCHEMA)
    assert one[0]["key"] == two[0]["key"]
    for name in one[1]:
        np.testing.assert_array_equal(one[1][name], two[1][name], err_msg=name)
