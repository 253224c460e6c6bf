"""The stages as Python calls (advbench.stages, docs/python.md): the documented example runs
and writes what the command line writes; one output-claim rule (outputs.claim_output: reuse,
resume, refuse, overwrite, lock) held by every stage that writes; the model travels as one
object (loading.ModelSource), so a shard task reopens a user's .keras as it was read."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from advbench import stages
from advbench.run import outputs
from advbench.attacks import make_attack
from advbench.cli import main
from advbench.core import files
from advbench.core.errors import ArtifactError, OutputError
from advbench.run.artifacts import ATTACK_SCHEMA, read_arrays, write_arrays
from advbench.run.shards import Shard

from conftest import write_digits_npz

DOCS = Path(__file__).resolve().parent.parent / "docs" / "python.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.S)


# -- the documented example ------------------------------------------------------------------
def test_the_documented_example_runs_and_writes_what_the_cli_writes(tmp_path, monkeypatch,
                                                                    capsys):
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks(DOCS.read_text())
    assert len(blocks) == 1
    namespace: dict = {}
    exec(compile(blocks[0], str(DOCS), "exec"), namespace)
    path = namespace["run"].path
    assert path.parent == Path("runs") and path.name.startswith("digits-pgd-")
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == str(path)
    clean, adversarial = map(float, printed[1].split())
    assert clean > 0.8 and adversarial < clean
    # The command line's run of the same arguments has the same key: it finds the artifact
    # complete and prints its path (the same bytes stay on disk).
    before = path.read_bytes()
    result = CliRunner().invoke(main, ["attack", "digits.keras", "--data", "digits.npz",
                                       "--attack", "pgd", "--eps", "0.1", "--steps", "10",
                                       "--limit", "50", "-q"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}\n"
    assert path.read_bytes() == before


# -- the claim rule ---------------------------------------------------------------------------
def _artifact(path, key="k", complete=True, shard=None, n=4):
    attrs = {"key": key, "complete": complete, "num_samples": n}
    if shard is not None:
        attrs.update(shard_index=shard.index, shard_count=shard.count)
    write_arrays(path, ATTACK_SCHEMA, attrs, {"completed": np.array([True, False] * (n // 2))})


CLAIM = dict(what="attack artifact", schema=ATTACK_SCHEMA, key="k", noun="a run",
             kind="an attack artifact")


def test_claim_output_reuses_resumes_refuses_and_overwrites(tmp_path):
    path = tmp_path / "a.h5"
    with outputs.claim_output(path, **CLAIM) as claim:
        assert claim.state == "new"
    _artifact(path)
    with outputs.claim_output(path, **CLAIM) as claim:
        assert claim.state == "complete" and claim.attrs["key"] == "k"
    _artifact(path, complete=False)
    with outputs.claim_output(path, **CLAIM) as claim:
        assert claim.state == "partial" and claim.arrays["completed"].tolist() == [
            True, False, True, False]
    with pytest.raises(ArtifactError) as error:
        with outputs.claim_output(path, resume=False, **CLAIM):
            pass
    assert str(error.value) == (f"{path} holds an interrupted run; pass --resume to continue "
                                "it or --overwrite to start again")
    with pytest.raises(ArtifactError) as error:
        with outputs.claim_output(path, shard=Shard(1, 2), **CLAIM):
            pass
    assert str(error.value) == (f"{path} holds the whole run of this run, not shard 1/2; give "
                                "each shard its own -o (or merge the shards with `advbench "
                                "merge`)")
    with pytest.raises(ArtifactError) as error:
        with outputs.claim_output(path, **{**CLAIM, "key": "other"}):
            pass
    assert str(error.value) == (f"{path} holds a run with other parameters, model or samples; "
                                "pass --overwrite to replace it or choose another -o")
    with pytest.raises(ArtifactError) as error:
        with outputs.claim_output(path, num_samples=5, **CLAIM):
            pass
    assert str(error.value) == (f"{path} holds 4 samples where this run has 5; pass "
                                "--overwrite to start again")
    with outputs.claim_output(path, overwrite=True, **{**CLAIM, "key": "other"}) as claim:
        assert claim.state == "new"
    text = tmp_path / "t.h5"
    text.write_text("not an artifact")
    with pytest.raises(OutputError) as error:
        with outputs.claim_output(text, **CLAIM):
            pass
    assert str(error.value) == (f"{text} exists and is not an attack artifact; choose another "
                                "-o or pass --overwrite")
    with pytest.raises(OutputError) as error:
        with outputs.claim_output(text, what="model artifact", refusal="pass --overwrite"):
            pass
    assert str(error.value) == f"{text} exists; pass --overwrite"


def test_claim_output_holds_the_lock(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.05)
    path = tmp_path / "a.h5"
    with outputs.claim_output(path, **CLAIM):
        with pytest.raises(OutputError, match=rf"^{re.escape(str(path))} is being written by "
                                              f"process {os.getpid()} "):
            with outputs.claim_output(path, **CLAIM):
                pass
    with outputs.claim_output(path, **CLAIM):  # released
        pass


def test_run_key_is_the_digest_of_the_payload_and_the_indices():
    indices = np.arange(5)
    assert outputs.run_key({"a": 1, "b": (2, 3)}) == outputs.run_key({"b": [2, 3], "a": 1})
    assert outputs.run_key({"a": 1}, indices) != outputs.run_key({"a": 1}, indices[::-1])
    assert re.fullmatch(r"[0-9a-f]{64}", outputs.run_key({"a": float("nan")}))


# -- every stage that writes follows it -------------------------------------------------------
@pytest.fixture(scope="module")
def dense(dense_mnist_model):
    from advbench.run.loading import open_model

    return open_model(str(dense_mnist_model[0]))


SAMPLES = dict(limit=8, batch_size=4)


def _attack(dense, data, out, eps=0.1, **kw):
    return stages.attack(dense, make_attack("fgsm", eps=eps), data_dir=data, output=out,
                         **SAMPLES, **kw).path


def _certify(dense, data, out, eps=0.1, **kw):
    return stages.certify(dense, sigma=eps, n0=4, n=8, data_dir=data, output=out,
                          sigma_mismatch_ok=True, **SAMPLES, **kw)


def _curve(dense, data, out, eps=0.1, **kw):
    return stages.curves([dense], [dense], [0.0, eps], data_dir=data, output=out,
                         runs_dir=Path(out).parent / "none", **SAMPLES, **kw)[0].path


def _audit(dense, data, out, eps=0.1, **kw):
    stages.audit(dense, eps=eps, checks=["logits-and-gradients"], data_dir=data, output=out,
                 **SAMPLES, **kw)
    return Path(out)


# (stage, what its refusal of another run says after the path)
STAGES = {
    "attack": (_attack, " holds a run with other parameters, model or samples; pass "
                        "--overwrite to replace it or choose another -o"),
    "certify": (_certify, " holds a certification with other parameters, model or samples; "
                          "pass --overwrite to replace it or choose another -o"),
    "curves": (_curve, " holds a curve with other parameters, model or samples; pass "
                       "--overwrite to replace it or choose another -o"),
    "audit": (_audit, " holds an audit with other parameters, model or samples; pass "
                      "--overwrite to replace it or choose another -o"),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_reuses_refuses_overwrites_and_locks(stage, dense, fake_data_dir,
                                                         tmp_path, monkeypatch):
    run, refusal = STAGES[stage]
    data = str(fake_data_dir)
    out = tmp_path / f"{stage}.h5"
    assert run(dense, data, out) == out
    written = out.read_bytes()
    assert run(dense, data, out) == out and out.read_bytes() == written  # reused
    with pytest.raises(ArtifactError) as error:
        run(dense, data, out, eps=0.2)
    assert str(error.value) == f"{out}{refusal}"
    assert out.read_bytes() == written
    assert run(dense, data, out, eps=0.2, overwrite=True) == out
    assert out.read_bytes() != written
    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.05)
    with files.output_lock(tmp_path / "held.h5"):
        with pytest.raises(OutputError, match="held.h5 is being written by process"):
            run(dense, data, tmp_path / "held.h5")


def test_attack_resumes_an_interrupted_run(dense, fake_data_dir, tmp_path):
    out = tmp_path / "a.h5"
    whole = _attack(dense, str(fake_data_dir), tmp_path / "whole.h5")
    attrs, arrays = read_arrays(whole, ATTACK_SCHEMA)
    arrays["completed"][4:] = False  # the second batch was interrupted
    write_arrays(out, ATTACK_SCHEMA, {**attrs, "complete": False}, arrays)
    assert _attack(dense, str(fake_data_dir), out, resume=True) == out
    assert read_arrays(out, ATTACK_SCHEMA)[0]["complete"]
    with pytest.raises(ArtifactError, match="holds an interrupted run; pass --resume"):
        write_arrays(out, ATTACK_SCHEMA, {**attrs, "complete": False}, arrays)
        _attack(dense, str(fake_data_dir), out, resume=False)


def test_train_refuses_an_existing_model_and_holds_the_lock(fake_data_dir, tmp_path,
                                                            monkeypatch):
    from advbench.defenses import make_defense
    from advbench.run.train import TrainConfig

    out = tmp_path / "m.h5"
    out.write_bytes(b"a model")
    config = TrainConfig(epochs=1, limit=20, data_dir=str(fake_data_dir), architecture="mlp")
    with pytest.raises(OutputError) as error:
        stages.train(config, make_defense("none", "mnist"), output=out)
    assert str(error.value) == (f"{out} exists; pass --overwrite to replace it (attack "
                                "artifacts made on it then no longer match it) or choose "
                                "another -o")
    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.05)
    with files.output_lock(out):
        with pytest.raises(OutputError, match="m.h5 is being written by process"):
            stages.train(config, make_defense("none", "mnist"), output=out, overwrite=True)
    assert out.read_bytes() == b"a model"


def test_evaluate_and_transfer_and_the_writers_take_the_lock(dense, fake_data_dir, tmp_path,
                                                             monkeypatch):
    from advbench.score.audit import AuditResult, write_audit
    from advbench.score.evaluate import Score, write_evaluation

    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.05)
    held = tmp_path / "held.h5"
    with files.output_lock(held):
        for call in (
                lambda: stages.evaluate(dense, [], data_dir=str(fake_data_dir), output=held,
                                        **SAMPLES),
                lambda: stages.transfer([dense], [dense], make_attack("fgsm", eps=0.1),
                                        data_dir=str(fake_data_dir), runs_dir=tmp_path,
                                        output=held, **SAMPLES),
                lambda: write_evaluation(held, Score({}, {})),
                lambda: write_audit(held, AuditResult({}, {}), {})):
            with pytest.raises(OutputError, match="held.h5 is being written by process"):
                call()
    assert not held.exists()
    score = stages.evaluate(dense, [], data_dir=str(fake_data_dir), output=tmp_path / "e.h5",
                            **SAMPLES)
    assert score.summary["gate"] == {"thresholds": [], "missed": [], "passed": True}


# -- the model travels as one object ----------------------------------------------------------
@pytest.fixture
def own_model(tmp_path):
    """A user's .keras (taking 0-255 pixels) and .npz of the synthetic digits."""
    import keras

    npz = write_digits_npz(tmp_path / "digits.npz", 40, 24)
    inputs = keras.Input((28, 28, 1))
    net = keras.Model(inputs, keras.layers.Dense(10)(keras.layers.Flatten()(inputs)))
    net.save(tmp_path / "own.keras")
    return tmp_path / "own.keras", npz


def test_a_shard_task_reopens_a_users_keras_model_as_it_was_read(own_model, tmp_path):
    """``advbench attack own.keras --data own.npz --engine ray``: each Ray task runs
    ``attack_shard``, which reopened the model with the advbench .h5 reader ("own.keras is
    not an HDF5 file") and without its reading flags. Called here without Ray."""
    from advbench.models.adapt import Preprocessing
    from advbench.run.ray_engine import attack_shard
    from advbench.run.runner import AttackRun
    from advbench.run.shards import merge_shards

    keras_file, npz = own_model
    model = stages.open_model(str(keras_file), dataset=str(npz),
                              preprocessing=Preprocessing(input_range=(0.0, 255.0)))
    assert model.source.preprocessing == Preprocessing(input_range=(0.0, 255.0))
    run = AttackRun(model_path=str(model.path), dataset=model.meta["dataset"], limit=12,
                    batch_size=4)
    attack = make_attack("fgsm", eps=0.1)
    paths = [attack_shard(model.source, run, "fgsm", attack.params(),
                          str(tmp_path / f"s{i}.h5"), i, 2) for i in range(2)]
    merged, _ = merge_shards(paths, tmp_path / "merged.h5")
    whole = stages.attack(model, attack, limit=12, batch_size=4, output=tmp_path / "w.h5").path
    one, two = read_arrays(whole, ATTACK_SCHEMA), read_arrays(merged, ATTACK_SCHEMA)
    assert one[0]["key"] == two[0]["key"]
    for name in one[1]:
        np.testing.assert_array_equal(one[1][name], two[1][name], err_msg=name)
    # Reopened without the flags, it is another model (the reading is part of its identity).
    plain = stages.open_model(str(keras_file), dataset=str(npz))
    assert plain.meta["content_hash"] != model.meta["content_hash"]


def test_the_cli_refusal_of_another_run_is_one_exact_line(dense_mnist_model, fake_data_dir,
                                                         tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["attack", str(dense_mnist_model[0]), "--attack", "fgsm", "--limit", "8",
            "--data-dir", str(fake_data_dir), "-q", "-o", "a.h5"]
    assert CliRunner().invoke(main, args).exit_code == 0
    result = CliRunner().invoke(main, [*args, "--eps", "0.2"])
    assert result.exit_code == 1
    assert result.output == ("Error: a.h5 holds a run with other parameters, model or samples; "
                             "pass --overwrite to replace it or choose another -o\n")
