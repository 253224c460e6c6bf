"""Sharded attack runs (``--shard I/N``) and their merge equal the one-process run."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from advbench.attacks import make_attack
from advbench.cli import main
from advbench.core import files
from advbench.core.errors import ArtifactError, OutputError, ParameterError
from advbench.run.artifacts import ATTACK_SCHEMA, read_arrays, write_arrays
from advbench.run.runner import AttackRun, attack_split
from advbench.run.shards import (Shard, find_shards, merge_attack_runs, merge_shards, parse_shard,
                                 read_attack_run, shard_output)
from advbench.score import evaluate as evaluate_module
from advbench.score.evaluate import evaluate
from advbench.score.transfer import craft_or_reuse

# A deterministic attack, a randomised one (random start and steps from the batch seed) and
# a targeted one (targets drawn from the batch seed).
CASES = {
    "deepfool": (("deepfool", {"max_iter": 5}), None),
    "pgd": (("pgd", {"eps": 0.2, "steps": 3}), None),
    "rand-fgsm": (("rand-fgsm", {"eps": 0.3, "alpha": 0.05}), None),
    "fgsm-targeted": (("fgsm", {"eps": 0.3}), "random"),
}


@pytest.fixture
def run(trained_tiny_cnn, fake_data_dir):
    path, _, _ = trained_tiny_cnn
    # 40 samples in 5 batches of 8: shards of 2 and 3 get unequal numbers of batches.
    return AttackRun(model_path=str(path), dataset="mnist", limit=40, batch_size=8,
                     data_dir=str(fake_data_dir), seed=5)


def _shards(run, attack, model, meta, folder, count):
    return [attack_split(run, attack, model, meta, shard_output(folder / "run.h5", shard),
                         shard=shard) for shard in (Shard(i, count) for i in range(count))]


def _assert_same_arrays(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("count", [2, 3])
def test_merged_shards_equal_the_one_process_run(case, count, run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    (name, params), target_mode = CASES[case]
    run.target_mode = target_mode
    attack = make_attack(name, **params)
    whole = attack_split(run, attack, model, meta, tmp_path / "whole.h5")
    shards = _shards(run, attack, model, meta, tmp_path, count)
    for i, path in enumerate(shards):
        attrs, arrays = read_arrays(path, ATTACK_SCHEMA)
        assert (attrs["shard_index"], attrs["shard_count"]) == (i, count)
        assert not attrs["complete"] and attrs["device"]
        assert arrays["completed"].sum() == 8 * len(range(i, 5, count))
    merged, attrs = merge_shards(shards, tmp_path / "merged.h5")
    whole_attrs, whole_arrays = read_arrays(whole, ATTACK_SCHEMA)
    merged_attrs, merged_arrays = read_arrays(merged, ATTACK_SCHEMA)
    _assert_same_arrays(merged_arrays, whole_arrays)
    assert merged_attrs["complete"] and merged_attrs["key"] == whole_attrs["key"]
    assert "shard_index" not in merged_attrs and len(merged_attrs["shard_devices"]) == count
    # The merge is a finished run: the plain command finds nothing to do.
    assert attack_split(run, attack, model, meta, merged) == merged


def test_partial_merge_is_finished_by_the_plain_command(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    attack = make_attack("rand-fgsm", eps=0.3)
    whole = attack_split(run, attack, model, meta, tmp_path / "whole.h5")
    shards = _shards(run, attack, model, meta, tmp_path, 3)
    merged, attrs = merge_shards([shards[0], shards[2]], tmp_path / "merged.h5")
    assert not attrs["complete"]
    with pytest.raises(ArtifactError, match=r"hold 24 of 40 samples of their run; give every "
                                            r"shard or run the missing ones"):
        read_attack_run([shards[0], shards[2]])
    attack_split(run, attack, model, meta, merged)
    _assert_same_arrays(read_arrays(merged, ATTACK_SCHEMA)[1],
                        read_arrays(whole, ATTACK_SCHEMA)[1])


def test_merge_refuses_other_runs_and_overlaps(run, trained_tiny_cnn, tmp_path, monkeypatch):
    _, model, meta = trained_tiny_cnn
    shards = _shards(run, make_attack("fgsm", eps=0.3), model, meta, tmp_path, 2)
    other = attack_split(run, make_attack("fgsm", eps=0.1), model, meta, tmp_path / "other.h5",
                         shard=Shard(1, 2))
    with pytest.raises(ArtifactError, match=rf"^{other} is a run of other parameters, model or "
                                            rf"samples than {shards[0]} \(run keys differ\)"):
        merge_attack_runs([shards[0], other])
    whole = attack_split(run, make_attack("fgsm", eps=0.3), model, meta, tmp_path / "whole.h5")
    with pytest.raises(ArtifactError, match=rf"^{whole} and {shards[0]} both hold 24 samples; "
                                            "merge each shard once$"):
        merge_attack_runs([shards[0], whole])
    with pytest.raises(ArtifactError, match="is one of the shards; write the merge to another"):
        merge_shards(shards, shards[0])
    merge_shards(shards, tmp_path / "m.h5")
    before = (tmp_path / "m.h5").read_bytes()
    with pytest.raises(OutputError, match="m.h5 exists; choose another -o or pass --overwrite"):
        merge_shards(shards, tmp_path / "m.h5")
    # Two merges to one output: the second waits for the first's lock, then refuses.
    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.1)
    with files.output_lock(tmp_path / "m.h5"):
        with pytest.raises(OutputError, match=rf"m.h5 is being written by process {os.getpid()} "):
            merge_shards(shards, tmp_path / "m.h5", overwrite=True)
    assert (tmp_path / "m.h5").read_bytes() == before
    with pytest.raises(ParameterError, match="give at least one attack artifact to merge"):
        merge_attack_runs([])


def _forge(path, out, attrs_change=None, arrays_change=None):
    """A copy of the shard at ``path`` at ``out`` with edited attrs and arrays."""
    attrs, arrays = read_arrays(path, ATTACK_SCHEMA)
    attrs.update(attrs_change or {})
    for name, change in (arrays_change or {}).items():
        arrays[name] = change(arrays[name].copy())
    write_arrays(out, ATTACK_SCHEMA, attrs, arrays)
    return out


def _set(index, value):
    def change(array):
        array[index] = value
        return array
    return change


def test_merge_compares_the_shards(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    attack = make_attack("fgsm", eps=0.3)
    shards = _shards(run, attack, model, meta, tmp_path, 2)
    shard0 = read_arrays(shards[0], ATTACK_SCHEMA)[1]
    ours = int(np.flatnonzero(shard0["completed"])[0])  # a sample shard 0 attacked
    fix = "merge shards of one run only (was one edited?)"
    forged = tmp_path / "forged.h5"
    cases = [
        ({}, {"y": _set(ours, (shard0["y"][ours] + 1) % 10)},
         f"differs from {shards[0]} in y (labels) at 1 samples; {fix}"),
        ({}, {"indices": _set(3, 9999)},
         f"differs from {shards[0]} in indices (sample indices) at 1 samples; {fix}"),
        ({}, {"pred_clean": _set(ours, (shard0["pred_clean"][ours] + 1) % 10)},
         f"differs from {shards[0]} in pred_clean (clean predictions) at 1 samples; {fix}"),
        ({"seed": 6}, {}, f"differs from {shards[0]} in attribute seed; {fix}"),
        ({"attack_params": {"eps": 0.5}}, {},
         f"differs from {shards[0]} in attribute attack_params; {fix}"),
        ({"num_samples": 24}, {name: (lambda a: a[:24]) for name in
                               read_arrays(shards[1], ATTACK_SCHEMA)[1]},
         f"holds 24 samples where {shards[0]} holds 40; {fix}"),
    ]
    for attrs_change, arrays_change, message in cases:
        _forge(shards[1], forged, attrs_change, arrays_change)
        with pytest.raises(ArtifactError) as info:
            merge_attack_runs([shards[0], forged])
        assert str(info.value) == f"{forged} {message}"
    # Unedited shards from other places and times merge: device, created, wall time and
    # model path may differ.
    _forge(shards[1], forged, {"device": "elsewhere:/device:GPU:0", "wall_time_s": 99.0,
                               "model_path": "/elsewhere/model.h5"})
    attrs, _ = merge_attack_runs([shards[0], forged])
    assert attrs["complete"] and attrs["shard_devices"][1] == "elsewhere:/device:GPU:0"


def test_merge_of_a_forged_shard_is_one_line(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    shards = _shards(run, make_attack("fgsm", eps=0.3), model, meta, tmp_path, 2)
    forged = _forge(shards[1], tmp_path / "forged.h5", {"num_samples": 24},
                    {name: (lambda a: a[:24]) for name in
                     read_arrays(shards[1], ATTACK_SCHEMA)[1]})
    result = CliRunner().invoke(main, ["merge", str(shards[0]), str(forged), "-o",
                                       str(tmp_path / "m.h5")])
    assert result.exit_code == 1
    assert result.output == (f"Error: {forged} holds 24 samples where {shards[0]} holds 40; "
                             "merge shards of one run only (was one edited?)\n")
    assert not (tmp_path / "m.h5").exists()


@pytest.mark.parametrize("name, value, message", [
    ("payload", np.arange(40), "holds an array payload that advbench does not write in "
     "advbench.attack artifacts; merge only the shards advbench wrote (was one edited?)"),
    ("extras/payload", np.zeros(40, np.float32), None),
], ids=["unknown-array", "extra-one-shard-lacks"])
def test_merge_refuses_an_array_it_does_not_know(run, trained_tiny_cnn, tmp_path, name, value,
                                                 message):
    """A merge writes what it reads: an edited shard's extra dataset must not reach the
    merged artifact."""
    _, model, meta = trained_tiny_cnn
    shards = _shards(run, make_attack("fgsm", eps=0.3), model, meta, tmp_path, 2)
    attrs, arrays = read_arrays(shards[1], ATTACK_SCHEMA)
    forged = tmp_path / "forged.h5"
    write_arrays(forged, ATTACK_SCHEMA, attrs, {**arrays, name: value})
    message = message or (f"lacks extras/payload, which {forged} holds, though both attacked "
                          "samples; merge shards of one run only (was one edited?)")
    culprit = forged if name == "payload" else shards[0]
    result = CliRunner().invoke(main, ["merge", str(shards[0]), str(forged), "-o",
                                       str(tmp_path / "m.h5")])
    assert result.exit_code == 1
    assert result.output == f"Error: {culprit} {message}\n"
    assert not (tmp_path / "m.h5").exists()


def test_a_shard_refuses_another_shards_artifact(run, trained_tiny_cnn, tmp_path):
    _, model, meta = trained_tiny_cnn
    attack = make_attack("fgsm", eps=0.3)
    out = attack_split(run, attack, model, meta, tmp_path / "a.h5", shard=Shard(0, 2))
    with pytest.raises(ArtifactError, match=r"a.h5 holds shard 0/2 of this run, not shard 1/2; "
                                            r"give each shard its own -o"):
        attack_split(run, attack, model, meta, out, shard=Shard(1, 2))
    with pytest.raises(ArtifactError, match=r"holds shard 0/2 of this run, not the whole run"):
        attack_split(run, attack, model, meta, out)


def test_evaluate_and_transfer_take_the_shards(run, trained_tiny_cnn, tmp_path):
    path, model, meta = trained_tiny_cnn
    attack = make_attack("deepfool", max_iter=5)
    whole = attack_split(run, attack, model, meta, tmp_path / "whole" / "run.h5")
    shards = _shards(run, attack, model, meta, tmp_path / "runs", 2)
    kwargs = dict(data_dir=run.data_dir, limit=20, sensitivity=False)
    one = evaluate(model, meta, path, [whole], **kwargs)
    two = evaluate(model, meta, path, shards, **kwargs)
    assert len(two.summary["artifacts"]) == 1
    assert two.summary["artifacts"][0]["name"] == "run"
    assert two.summary["metrics"] == one.summary["metrics"]
    for name, values in one.per_sample.items():
        np.testing.assert_array_equal(two.per_sample[name], values)
    assert find_shards(tmp_path / "runs", read_arrays(whole, ATTACK_SCHEMA)[0]["key"]) == shards
    # Trial 4: one shard alone said "an interrupted run; rerun its attack command".
    with pytest.raises(ArtifactError, match="^" + re.escape(
            f"{shards[0]} is shard 0/2 of a run (24 of 40 samples); pass all 2 shards' files "
            "together, or `advbench merge` them first") + "$"):
        evaluate(model, meta, path, shards[:1], **kwargs)
    found, reused = craft_or_reuse(run, attack, trained_tiny_cnn, tmp_path / "runs")
    assert reused and found == shards
    # A missing shard is not a whole run: transfer crafts it again.
    shards[1].unlink()
    assert find_shards(tmp_path / "runs", read_arrays(whole, ATTACK_SCHEMA)[0]["key"]) is None


@pytest.mark.parametrize("text, environ, expected", [
    ("0/1", {}, Shard(0, 1)),
    (" 3 / 4 ", {}, Shard(3, 4)),
    ("auto/4", {"SLURM_ARRAY_TASK_ID": "2"}, Shard(2, 4)),
    ("auto/4", {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1"}, Shard(3, 4)),
    ("auto/4", {"JOB_COMPLETION_INDEX": "0"}, Shard(0, 4)),
    ("auto/4", {"CI_NODE_INDEX": "1"}, Shard(0, 4)),
    ("auto/4", {"CI_NODE_INDEX": "4", "JOB_COMPLETION_INDEX": "1"}, Shard(1, 4)),
])
def test_parse_shard(text, environ, expected):
    assert parse_shard(text, environ) == expected


@pytest.mark.parametrize("text, environ, message", [
    ("1", {}, "--shard must be I/N (0 <= I < N, e.g. 0/4) or auto/N, got '1'"),
    ("a/2", {}, "--shard must be I/N (0 <= I < N, e.g. 0/4) or auto/N, got 'a/2'"),
    ("0/0", {}, "--shard needs at least one shard (N >= 1), got '0/0'"),
    ("auto/0", {"CI_NODE_INDEX": "1"},
     "--shard needs at least one shard (N >= 1), got 'auto/0'"),
    ("2/2", {}, "--shard index I must be in 0..1 for 2 shards, got '2/2'"),
    ("-1/2", {}, "--shard must be I/N (0 <= I < N, e.g. 0/4) or auto/N, got '-1/2'"),
    ("3/1e20", {}, "--shard must be I/N (0 <= I < N, e.g. 0/4) or auto/N, got '3/1e20'"),
    ("3/100000000000000000000", {}, "--shard allows at most 10000000 shards (N), got "
     "'3/100000000000000000000'; one shard per batch is the most that helps"),
    ("0/" + "9" * 5000, {}, "--shard allows at most 10000000 shards (N), got "
     "'0/99999999999999999999999999999999999999...'; one shard per batch is the most that helps"),
    ("9" * 5000 + "/4", {}, "--shard index I must be in 0..3 for 4 shards, got "
     "'9999999999999999999999999999999999999999...'"),
    ("auto/2", {}, "--shard auto/2 reads SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX, "
                   "CI_NODE_INDEX, and none is set; give the index yourself: --shard I/N"),
    ("auto/2", {"CI_NODE_INDEX": "3"}, "CI_NODE_INDEX=3 gives shard index 2, outside 0..1; "
                                       "launch 2 tasks or change N in --shard auto/2"),
    ("auto/2", {"CI_NODE_INDEX": "0"}, "CI_NODE_INDEX=0 gives shard index -1, outside 0..1; "
                                       "launch 2 tasks or change N in --shard auto/2"),
    ("auto/2", {"JOB_COMPLETION_INDEX": "x"}, "JOB_COMPLETION_INDEX must be an integer, got 'x'"),
])
def test_parse_shard_errors(text, environ, message):
    with pytest.raises(ParameterError) as info:
        parse_shard(text, environ)
    assert str(info.value) == message


@pytest.mark.parametrize("command, text, message", [
    (["attack", "m.keras", "--attack", "fgsm"], "3/100000000000000000000",
     "--shard allows at most 10000000 shards (N), got '3/100000000000000000000'; one shard "
     "per batch is the most that helps"),
    (["attack", "m.keras", "--attack", "fgsm"], "0/0",
     "--shard needs at least one shard (N >= 1), got '0/0'"),
    (["attack", "m.keras", "--attack", "fgsm"], "-1/4",
     "--shard must be I/N (0 <= I < N, e.g. 0/4) or auto/N, got '-1/4'"),
    (["attack", "m.keras", "--attack", "fgsm"], "4/4",
     "--shard index I must be in 0..3 for 4 shards, got '4/4'"),
    (["evaluate", "m.keras", "runs/df.h5", "-o", "part.h5"], "5/3",
     "--distance-shard index I must be in 0..2 for 3 shards, got '5/3'"),
    (["evaluate", "m.keras", "runs/df.h5", "-o", "part.h5"], "0/100000000000000000000",
     "--distance-shard allows at most 10000000 shards (N), got '0/100000000000000000000'; "
     "one shard per batch is the most that helps"),
])
def test_shard_bounds_are_usage_errors_before_tensorflow(command, text, message, tmp_path):
    # A fresh process: the refusal comes while parsing, before TensorFlow is imported.
    flag = "--shard" if command[0] == "attack" else "--distance-shard"
    # An existing model file: a missing one is refused even earlier, before the flags.
    (tmp_path / "m.keras").touch()
    probe = ("import sys; from advbench.cli import main\n"
             "try:\n    main(sys.argv[1:], prog_name='advbench')\n"
             "finally:\n    print('tensorflow' in sys.modules, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", probe, *command, flag, text],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert result.returncode == 2
    assert result.stderr.splitlines()[-2:] == [f"Error: {message}", "False"]


# 28 s on an idle core (two TensorFlow starts); test_merged_shards_equal_the_one_process_run
# guards the merge.
@pytest.mark.slow
def test_two_cli_processes_and_merge_equal_one_process(trained_tiny_cnn, fake_data_dir, tmp_path):
    path, _, _ = trained_tiny_cnn
    command = [sys.executable, "-m", "advbench", "attack", str(path), "--attack", "pgd",
               "--eps", "0.2", "--steps", "3", "--limit", "40", "--batch-size", "8",
               "--data-dir", str(fake_data_dir), "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    workers = [subprocess.Popen([*command, "--shard", "auto/2", "-o", str(tmp_path / "s.h5")],
                                stdout=subprocess.PIPE, text=True,
                                env={**env, "JOB_COMPLETION_INDEX": str(i)}) for i in range(2)]
    outputs = [w.communicate(timeout=300)[0].strip() for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    assert outputs == [str(tmp_path / "s-shard0of2.h5"), str(tmp_path / "s-shard1of2.h5")]
    merged = subprocess.run([sys.executable, "-m", "advbench", "merge", *outputs, "-o",
                             str(tmp_path / "merged.h5")], capture_output=True, text=True, env=env,
                            timeout=300)
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout == f"{tmp_path / 'merged.h5'}\n"
    # The one-process run in this process (a third TensorFlow start-up costs ~10 s).
    run = AttackRun(model_path=str(path), dataset="mnist", limit=40, batch_size=8,
                    data_dir=str(fake_data_dir))
    whole = attack_split(run, make_attack("pgd", eps=0.2, steps=3), trained_tiny_cnn[1],
                         trained_tiny_cnn[2], tmp_path / "whole.h5")
    _assert_same_arrays(read_arrays(tmp_path / "merged.h5", ATTACK_SCHEMA)[1],
                        read_arrays(whole, ATTACK_SCHEMA)[1])


def test_cli_shard_and_merge_errors(trained_tiny_cnn, fake_data_dir, tmp_path):
    path, _, _ = trained_tiny_cnn
    runner = CliRunner()
    base = ["attack", str(path), "--data-dir", str(fake_data_dir), "--limit", "16", "-q"]
    result = runner.invoke(main, [*base, "--attack", "fgsm", "--shard", "auto/2"])
    assert result.exit_code == 2
    assert result.output.endswith("\nError: --shard auto/2 reads SLURM_ARRAY_TASK_ID, "
                                  "JOB_COMPLETION_INDEX, CI_NODE_INDEX, and none is set; give "
                                  "the index yourself: --shard I/N\n")
    result = runner.invoke(main, [*base, "--attack", "fgsm", "--eps", "0.1,0.2", "--shard", "0/2"])
    assert result.exit_code == 2
    assert ("--shard and --engine ray split attack runs, not curves; give one --eps value"
            in result.output)
    for flags, message in [(["--engine", "ray", "--shard", "0/2"], "--engine ray makes its own "
                            "shards: give --workers N, not --shard"),
                           (["--workers", "2"], "--workers is for --engine ray; a job array "
                            "gives --shard I/N")]:
        result = runner.invoke(main, [*base, "--attack", "fgsm", *flags])
        assert result.exit_code == 2 and message in result.output
    shard = runner.invoke(main, [*base, "--attack", "fgsm", "--shard", "1/2", "-o",
                                 str(tmp_path / "a.h5")])
    assert shard.exit_code == 0 and shard.output == f"{tmp_path / 'a-shard1of2.h5'}\n"
    result = runner.invoke(main, ["merge", str(tmp_path / "a-shard1of2.h5"), "-o",
                                  str(tmp_path / "m.h5")])
    assert result.exit_code == 0
    assert result.stdout == f"{tmp_path / 'm.h5'}\n"
    assert "is incomplete (shards are missing); rerun the attack command" in result.stderr
    result = runner.invoke(main, ["merge", str(tmp_path / "a-shard1of2.h5"), "-o",
                                  str(tmp_path / "m.h5")])
    assert result.exit_code == 1
    assert result.output == (f"Error: {tmp_path / 'm.h5'} exists; choose another -o or pass "
                             "--overwrite\n")



def test_distance_parts_of_attack_shards_combine_with_the_merged_run(run, trained_tiny_cnn,
                                                                     tmp_path, monkeypatch):
    path, model, meta = trained_tiny_cnn
    monkeypatch.setattr(evaluate_module, "DISTANCE_BLOCK", 8)
    attack = make_attack("deepfool", max_iter=5)
    whole = attack_split(run, attack, model, meta, tmp_path / "whole.h5")
    shards = _shards(run, attack, model, meta, tmp_path, 2)
    # Parts computed from the attack shards; the combination given the merged artifact.
    parts = [evaluate_module.write_evaluation(
        tmp_path / f"part{i}.h5", evaluate_module.distance_part(
            meta, path, shards, Shard(i, 3), data_dir=run.data_dir),
        kind=evaluate_module.DISTANCE_PART) for i in range(3)]
    kwargs = dict(data_dir=run.data_dir, limit=40, seed=5, sensitivity=False)
    one = evaluate(model, meta, path, [whole], **kwargs)
    combined = evaluate(model, meta, path, [whole, *parts], **kwargs)
    assert combined.summary == one.summary
    for name, values in one.per_sample.items():
        np.testing.assert_array_equal(combined.per_sample[name], values)


def test_cli_distance_shards_and_their_combination(run, trained_tiny_cnn, tmp_path, monkeypatch):
    path, model, meta = trained_tiny_cnn
    monkeypatch.setattr(evaluate_module, "DISTANCE_BLOCK", 8)  # 40 queries in 5 blocks
    whole = attack_split(run, make_attack("deepfool", max_iter=5), model, meta,
                         tmp_path / "df.h5")
    runner = CliRunner()
    base = ["evaluate", str(path), str(whole), "--data-dir", run.data_dir, "--limit", "40",
            "--seed", "5", "-q"]
    outputs = []
    for index in range(2):
        result = runner.invoke(main, [*base, "--distance-shard", "auto/2", "-o",
                                      str(tmp_path / "part.h5")],
                               env={"SLURM_ARRAY_TASK_ID": str(index)})
        assert result.exit_code == 0, result.output
        outputs.append(result.stdout.strip())
    assert outputs == [str(tmp_path / "part-shard0of2.h5"), str(tmp_path / "part-shard1of2.h5")]
    one = runner.invoke(main, [*base, "--json"])
    combined = runner.invoke(main, [*base, *outputs, "--json"])
    assert one.exit_code == 0 and combined.exit_code == 0, combined.output
    assert combined.stdout == one.stdout
    assert json.loads(one.stdout)["artifacts"][0]["training_distance"]["count"] > 0
    # One line and exit 1 for a missing part; usage errors exit 2.
    result = runner.invoke(main, [*base, outputs[1]])
    assert result.exit_code == 1
    assert result.output == (f"Error: the distance parts of {whole} hold 16 of 40 rows; give "
                             "every part (missing: 0/2)\n")
    result = runner.invoke(main, [*base, "--distance-shard", "auto/2", "-o",
                                  str(tmp_path / "p.h5")])
    assert result.exit_code == 2
    assert result.output.endswith("\nError: --distance-shard auto/2 reads SLURM_ARRAY_TASK_ID, "
                                  "JOB_COMPLETION_INDEX, CI_NODE_INDEX, and none is set; give "
                                  "the index yourself: --distance-shard I/N\n")
    for flags, message in [
            ([], "--distance-shard writes its part to -o PART.h5 (as PART-shard<I>of<N>.h5)"),
            (["-o", "p.h5", "--no-distance"], "--distance-shard computes the training-set "
                                              "distance; drop --no-distance"),
            (["-o", "p.h5", "--fail-under", "adv_accuracy=0.5", "--csv", "p.csv"],
             "--fail-under, --csv do not apply to --distance-shard: it only computes a part "
             "of the training-set distance")]:
        result = runner.invoke(main, [*base, "--distance-shard", "0/2", *flags])
        assert result.exit_code == 2 and message in result.output, result.output
