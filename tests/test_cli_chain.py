"""The command line end to end in a temporary folder: train -> attack -> evaluate -> transfer,
with exit codes, stdout, artifact contents, the --fail-under gate and one-line errors."""

import json
import os
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from advbench.cli import main
from advbench.run.artifacts import ATTACK_SCHEMA, EVALUATION_SCHEMA, read_arrays, write_arrays
from advbench.run.curves import read_curve


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def chain(fake_data_dir, trained_tiny_cnn, tmp_path_factory):
    """A folder with two models (a CLI-trained MLP and the tiny CNN) and an FGSM artifact."""
    folder = tmp_path_factory.mktemp("chain")
    models = folder / "models"
    models.mkdir()
    shutil.copy(trained_tiny_cnn[0], models / "mnist-cnn-relu-none.h5")
    trained = CliRunner().invoke(main, [
        "train", "--model", "mlp", "--epochs", "1", "--data-dir", str(fake_data_dir),
        "--models-dir", str(models), "--quiet"])
    assert trained.exit_code == 0, trained.output
    assert trained.stdout == f"{models / 'mnist-mlp-relu-none.h5'}\n"
    return folder


@pytest.fixture
def in_chain(chain, fake_data_dir, monkeypatch):
    monkeypatch.chdir(chain)
    monkeypatch.setenv("ADVBENCH_DATA", str(fake_data_dir))
    monkeypatch.setenv("ADVBENCH_MODELS", str(chain / "models"))
    return chain


def attack_fgsm():
    result = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--limit", 30, "-q")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def test_chain_attack_evaluate_transfer(in_chain):
    artifact = attack_fgsm()
    assert artifact.startswith("runs/mnist-cnn-relu-none-fgsm-") and "\n" not in artifact
    attrs, arrays = read_arrays(artifact, ATTACK_SCHEMA)
    assert attrs["attack"] == "fgsm" and attrs["attack_params"]["eps"] == 0.1
    assert arrays["x_adv"].shape == (30, 28, 28, 1)

    result = invoke("evaluate", "cnn", artifact, "--limit", 30, "--json", "-o", "eval.h5",
                    "--csv", "eval.csv", "--fail-under", "clean_accuracy=0.5")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["clean"]["samples"] == 30
    entry = summary["artifacts"][0]
    assert entry["setting"] == "white-box" and entry["path"] == artifact
    assert entry["adv_accuracy"] == pytest.approx(np.mean(arrays["pred_adv"] == arrays["y"]))
    assert summary["gate"] == {"thresholds": ["clean_accuracy>=0.5"], "missed": [],
                               "passed": True}
    eval_attrs, eval_arrays = read_arrays("eval.h5", EVALUATION_SCHEMA)
    assert eval_arrays["artifacts/0/success"].shape == (30,)
    assert "clean,,clean_accuracy," in open("eval.csv").read().replace("cnn,,,", "")

    plain = invoke("evaluate", "cnn", artifact, "--limit", 30, "-o", "eval2.h5", "-q")
    assert plain.exit_code == 0 and plain.stdout == "eval2.h5\n"

    result = invoke("transfer", "--source", "cnn", "--source", "mlp", "--target", "cnn",
                    "--target", "mlp", "--limit", 30, "--json", "--csv", "t.csv")
    assert result.exit_code == 0, result.output
    matrix = json.loads(result.stdout)
    assert matrix["reused"] == [True, False]  # the cnn artifact from `attack` is reused
    assert matrix["artifacts"][0] == artifact
    assert matrix["setting"][0] == ["white-box", "black-box"]
    assert matrix["accuracy"][0][0] == entry["adv_accuracy"]
    assert open("t.csv").read().splitlines()[0].startswith("source,target,setting,attack,eps")


def test_curves_from_attack_and_transfer(in_chain):
    result = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0:0.3:0.1", "--limit", 20,
                    "--plot", "curve.png", "-q")
    assert result.exit_code == 0, result.output
    path, plot = result.stdout.split()
    assert plot == "curve.png" and open(plot, "rb").read(4) == b"\x89PNG"
    curve = read_curve(path)
    assert list(curve.eps) == [0.0, 0.1, 0.2, 0.3] and curve.pred_adv.shape == (1, 4, 20)

    result = invoke("evaluate", "cnn", path, "--limit", 20, "--json", "--no-sensitivity")
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)["artifacts"][0]
    assert entry["kind"] == "curve" and entry["accuracy"] == list(curve.accuracy[0])

    result = invoke("transfer", "--source", "mlp", "--target", "cnn", "--target", "mlp",
                    "--attack", "fgsm", "--eps", "0.1,0.3", "--limit", 20, "--json")
    assert result.exit_code == 0, result.output
    targets = json.loads(result.stdout)["curves"][0]["targets"]
    assert [t["setting"] for t in targets] == ["black-box", "white-box"]
    assert len(targets[0]["accuracy"]) == 2


def test_fail_under_gate_exit_codes(in_chain):
    artifact = attack_fgsm()
    result = invoke("evaluate", "cnn", artifact, "--limit", 30, "-q",
                    "--fail-under", "adv_accuracy=0.99", "--fail-over", "success_rate=0.01",
                    "--fail-under", "clean_accuracy=0")
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("gate failed: adv_accuracy ") and "is under 0.99" in lines[0]
    assert lines[1].startswith("gate failed: success_rate ") and "is over 0.01" in lines[1]


@pytest.mark.parametrize("args, message", [
    (["--fail-under", "accuracy=0.5"], "unknown metric 'accuracy'"),
    (["--fail-under", "robustness=0.3"], "robustness is not available"),
    (["--fail-under", "adv_accuracy=50"], "Invalid value for --fail-under: threshold "
     "'adv_accuracy=50': adv_accuracy is a fraction in [0, 1]; give 0.5 for 50%"),
    (["--fail-over", "success_rate=-0.1"], "success_rate is a fraction in [0, 1]\n"),
    (["--fail-under", "robustness=-1"], "robustness is >= 0\n"),
    (["--eps", "1:0:0.1"], "ends (0.0) before it starts"),
    # stages.gate_options' OptionError names the flag: Click's "Invalid value for" form.
    (["--radii", "0.1,x"], "Error: Invalid value for --radii: '0.1,x' is not a "
     "comma-separated list of numbers\n"),
    (["--radii", "-1"], "Error: radius must be a finite number >= 0, got -1.0\n"),
])
def test_usage_errors_exit_2(in_chain, args, message):
    result = invoke("evaluate", "cnn", "--limit", 10, "-q", *args)
    assert result.exit_code == 2
    assert message in result.stderr


@pytest.mark.parametrize("args, error", [
    (["evaluate", "cnn", "--radii", "0.1,x"], "Error: Invalid value for --radii: '0.1,x' is not "
     "a comma-separated list of numbers"),
    (["attack", "cnn", "--attack", "fgsm", "--eps", "0.1,0.2", "--target", "random"],
     "Error: curves (an eps list) are untargeted; drop --target"),
])
def test_library_usage_errors_show_the_commands_usage(in_chain, args, error):
    """An OptionError the library raises reads as Click's own usage errors: the command's
    usage line, the help hint, then the one error line (exit 2)."""
    result = invoke(*args, "--limit", 10, "-q")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"Usage: main {args[0]} [OPTIONS] MODEL")
    assert lines[1] == f"Try 'main {args[0]} --help' for help."
    assert lines[2:] == ["", error]


def test_attack_eps_list_usage_errors(in_chain):
    result = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "0.1", "--plot", "x.png")
    assert result.exit_code == 2 and "--plot draws a curve" in result.stderr
    result = invoke("attack", "cnn", "--attack", "fgsm", "--eps", "a:b:c")
    assert result.exit_code == 2 and "is not start:stop:step" in result.stderr


def test_bad_inputs_are_one_line_errors(in_chain):
    artifact = attack_fgsm()
    attrs, arrays = read_arrays(artifact, ATTACK_SCHEMA)
    write_arrays("cifar.h5", ATTACK_SCHEMA, {**attrs, "dataset": "cifar10"},
                 {**arrays, "x_adv": np.zeros((30, 32, 32, 3), np.float32)})
    write_arrays("shape.h5", ATTACK_SCHEMA, attrs,
                 {**arrays, "x_adv": np.zeros((30, 14, 14, 1), np.float32)})
    shutil.copy(artifact, "cut.h5")
    with open("cut.h5", "r+b") as f:
        f.truncate(2000)
    for bad, message in (("cifar.h5", "holds cifar10 images but model"),
                         ("shape.h5", "holds images of shape (14, 14, 1)"),
                         ("cut.h5", "is not a readable HDF5 file")):
        result = invoke("evaluate", "cnn", bad, "--limit", 30, "-q")
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert len(result.stderr.strip().splitlines()) == 1
        assert result.stderr.startswith("Error: ") and message in result.stderr


def test_attack_json_prints_the_run_summary(in_chain):
    # Issue 14: a pipeline gets success both ways, norms and robustness without `evaluate`.
    result = invoke("attack", "cnn", "--attack", "fgsm-min", "--eps-step", "0.05", "--limit", 30,
                    "-q", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    attrs, arrays = read_arrays(summary["path"], ATTACK_SCHEMA)
    moved = arrays["pred_adv"] != arrays["pred_clean"]
    assert summary["attack"] == "fgsm-min" and summary["samples"] == 30
    assert summary["success_against"] == "prediction"
    assert summary["success_rate"] == summary["success_rate_prediction"] == moved.mean()
    assert summary["success_rate_label"] == np.mean(arrays["pred_adv"] != arrays["y"])
    assert summary["norms"]["count"] == moved.sum()
    assert summary["norms"]["linf_mean"] == pytest.approx(arrays["linf"][moved].mean(), rel=1e-6)
    # The same values `evaluate` finds for the artifact on its model.
    scored = json.loads(invoke("evaluate", "cnn", summary["path"], "--limit", 30, "--json",
                               "--no-sensitivity", "--no-distance", "-q").stdout)["artifacts"][0]
    for key in ("success_rate", "success_rate_label", "adv_accuracy", "clean_accuracy"):
        assert summary[key] == scored[key], key
    assert summary["robustness"]["value"] == pytest.approx(scored["robustness"]["value"],
                                                           rel=1e-6)
    assert summary["robustness"]["count"] == scored["robustness"]["count"]


def test_attack_search_authors_and_sensitivity_variant_flags(in_chain):
    # The authors' minimal-FGSM search (one call over the 30 samples) and their sensitivity.
    result = invoke("attack", "cnn", "--attack", "fgsm-min", "--search", "authors",
                    "--batch-size", 30, "--limit", 30, "-q", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    attrs, _ = read_arrays(summary["path"], ATTACK_SCHEMA)
    assert attrs["attack_params"]["search"] == "authors"
    result = invoke("evaluate", "cnn", "--limit", 30, "--json", "-q",
                    "--sensitivity-variant", "logit")
    assert result.exit_code == 0, result.output
    clean = json.loads(result.stdout)["clean"]
    assert clean["loss_sensitivity_variant"] == "logit" and clean["loss_sensitivity"] > 0
    result = invoke("attack", "cnn", "--attack", "fgsm", "--search", "authors", "--limit", 5)
    assert result.exit_code == 2
    assert result.stderr.rstrip().splitlines()[-1] == ("Error: --search does not apply to "
                                                       "--attack fgsm")


def test_tables_in_logs_are_full_width_and_plain(in_chain):
    # CliRunner's stderr is not a terminal, as in CI: no column cut to 80 characters.
    artifact = attack_fgsm()
    result = invoke("evaluate", "cnn", artifact, "--limit", 30, "--no-sensitivity")
    assert result.exit_code == 0, result.output
    assert "robustness" in result.stderr and "train dist" in result.stderr
    assert "…" not in result.stderr
    assert max(len(line) for line in result.stderr.splitlines()) > 80
    assert "\x1b[" not in result.stderr  # no styles in a log
    assert "success: prediction moved off the clean prediction" in result.stderr

    result = invoke("evaluate", "cnn", artifact, "--limit", 30, "--no-sensitivity",
                    "--format", "markdown", "--success", "label")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    header = next(line for line in lines if line.startswith("| attack |"))
    # Issue 19: robust accuracy over all samples, success over the correctly classified.
    assert header == ("| attack | crafted on | setting | n | clean % | robust % | success % | "
                      "clean errors | L1 | L2 | Linf | robustness | train dist |")
    assert ("**adversarial artifacts (robust %: label-based, all samples; success %: of the "
            "correctly classified samples, clean errors apart with how many the attack moved; "
            "norms, robustness and distance over the samples of success: prediction differs "
            "from the label)**") in lines

    result = invoke("transfer", "--source", "cnn", "--source", "mlp", "--target", "cnn",
                    "--limit", 30, "--format", "markdown")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stderr.splitlines() if line.startswith("| mnist-cnn")
            or line.startswith("| cnn") or line.startswith("| mlp")]
    # The accuracy matrix, then (issue 19) the success rate over the correct images.
    assert len(rows) == 4 and rows[0].endswith("\\* |") and not rows[1].endswith("\\* |")
    assert "*: white-box (crafted on the tested model); others: black-box" in result.stderr
    assert ("success rate (%) over the images each tested model classifies correctly (clean "
            "errors apart)") in result.stderr
    assert any(line.startswith("| (correct / clean errors) | ")
               for line in result.stderr.splitlines())


# -- outputs: full disks, read-only places, locks, replacing results (issue 14) --------------
ENOSPC_FIX = "No space left on device; free space on that disk or choose another output path (-o)"


def one_line_error(result, code=1):
    assert result.exit_code == code, result.output
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.output
    return result.stderr


@pytest.mark.parametrize("command", [
    ["train", "--model", "mlp", "--epochs", "1", "-q"],
    ["attack", "cnn", "--attack", "fgsm", "--limit", 10, "-q"],
    ["attack", "cnn", "--attack", "fgsm", "--eps", "0.1,0.2", "--limit", 10, "-q"],
])
def test_output_whose_parent_is_a_file_is_refused_before_work(in_chain, command):
    with open("afile", "w") as f:
        f.write("x")
    result = invoke(*command, "-o", "afile/out.h5")
    assert "afile is a file, not a folder; choose another output path (-o)" in \
        one_line_error(result)


@pytest.mark.parametrize("command, message", [
    (["reproduce", "--profile", "demo", "--out", "afile/results", "-q"],
     "Error: cannot write results folder afile/results/mnist/demo: afile is a file"),
    (["data", "fetch", "mnist", "--dest", "afile/data"],
     "Error: cannot write data folder afile/data/mnist: afile is a file"),
])
def test_result_folders_under_a_file_are_refused_before_work(in_chain, command, message):
    with open("afile", "w") as f:
        f.write("x")
    assert one_line_error(invoke(*command)).startswith(message)


@pytest.mark.parametrize("flag", ["-o", "--csv", "--plot"])
def test_evaluate_outputs_are_checked_before_work(in_chain, flag):
    with open("afile", "w") as f:
        f.write("x")
    result = invoke("evaluate", "cnn", "--limit", 10, "-q", "--eps", "0.1,0.2", flag,
                    "afile/out")
    assert one_line_error(result).startswith("Error: cannot write ")


def test_attack_on_a_full_disk_fails_and_leaves_nothing(in_chain, fill_disk):
    fill_disk()
    result = invoke("attack", "cnn", "--attack", "fgsm", "--limit", 10, "-q", "-o", "full.h5")
    assert one_line_error(result) == f"Error: cannot write artifact full.h5: {ENOSPC_FIX}\n"
    assert not any(p.name.startswith(("full.h5", ".full.h5.")) and not p.name.endswith("lock")
                   for p in in_chain.iterdir())


def test_evaluate_csv_on_a_full_disk_leaves_the_previous_file(in_chain, fill_disk):
    artifact = attack_fgsm()
    with open("eval.csv", "w") as f:
        f.write("previous\n")
    fill_disk()
    result = invoke("evaluate", "cnn", artifact, "--limit", 30, "-q", "--csv", "eval.csv")
    assert one_line_error(result) == f"Error: cannot write report eval.csv: {ENOSPC_FIX}\n"
    with open("eval.csv") as f:
        assert f.read() == "previous\n"


def test_train_does_not_replace_a_model_without_overwrite(in_chain):
    model = in_chain / "models" / "mnist-mlp-relu-none.h5"
    before = model.read_bytes()
    result = invoke("train", "--model", "mlp", "--epochs", "1", "-q")
    assert one_line_error(result) == (f"Error: {model} exists; pass --overwrite to replace it "
                                      "(attack artifacts made on it then no longer match it) "
                                      "or choose another -o\n")
    assert model.read_bytes() == before


def test_a_second_attack_on_the_same_output_is_refused(in_chain, monkeypatch):
    from advbench.core import files

    monkeypatch.setattr(files, "LOCK_WAIT_S", 0.05)
    with files.output_lock("held.h5"):
        result = invoke("attack", "cnn", "--attack", "fgsm", "--limit", 10, "-q", "-o",
                        "held.h5")
    assert one_line_error(result).startswith(f"Error: held.h5 is being written by process "
                                             f"{os.getpid()} (")
    assert not (in_chain / "held.h5").exists()
    artifact = attack_fgsm()
    with files.output_lock("eval.h5"):
        result = invoke("evaluate", "cnn", artifact, "--limit", 30, "-q", "-o", "eval.h5")
    assert "Error: eval.h5 is being written by process" in one_line_error(result)


def test_evaluate_on_something_that_is_not_hdf5(in_chain):
    with open("text.h5", "w") as f:
        f.write("not hdf5")
    result = invoke("evaluate", "cnn", "text.h5", "--limit", 10, "-q")
    assert one_line_error(result) == ("Error: text.h5 is not an HDF5 file, so not an advbench "
                                      "artifact; check the path\n")
    os.mkdir("dir.h5")  # Click refuses a folder as a usage error
    result = invoke("evaluate", "cnn", "dir.h5", "--limit", 10, "-q")
    assert result.exit_code == 2 and "'dir.h5' is a directory" in result.stderr


def test_ctrl_c_while_tensorflow_loads_is_one_line(in_chain, monkeypatch):
    import advbench.cli as cli

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_quiet_tensorflow_import", interrupted)
    result = invoke("models")
    assert result.exit_code == 130
    assert result.stderr == ("interrupted; the batches finished so far are saved (none before "
                             "the first checkpoint), rerun the command to resume\n")


def test_ctrl_c_during_an_audit_says_nothing_was_written(in_chain, monkeypatch):
    import advbench.cli as cli

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "_quiet_tensorflow_import", interrupted)
    result = invoke("audit", "cnn", "--eps", 0.1)
    assert result.exit_code == 130
    assert result.stderr == ("interrupted; an audit writes nothing until every check is done, "
                             "rerun the command to start it again\n")


def test_evaluate_output_of_other_inputs_is_refused_without_overwrite(in_chain):
    """An evaluation is derived from its inputs: a rerun replaces its own -o, an -o that holds
    another evaluation (or anything else) is refused unless --overwrite, and is left intact."""
    artifact = attack_fgsm()
    first = invoke("evaluate", "cnn", "--limit", 30, "-q", "-o", "ev.h5", "--no-sensitivity")
    assert first.exit_code == 0, first.output
    again = invoke("evaluate", "cnn", "--limit", 30, "-q", "-o", "ev.h5", "--no-sensitivity")
    assert again.exit_code == 0, again.output
    before = open("ev.h5", "rb").read()
    other = invoke("evaluate", "cnn", artifact, "--limit", 30, "-q", "-o", "ev.h5")
    assert one_line_error(other) == ("Error: ev.h5 exists and holds an evaluation of another "
                                     "model or other artifacts; choose another -o or pass "
                                     "--overwrite\n")
    assert open("ev.h5", "rb").read() == before
    forced = invoke("evaluate", "cnn", artifact, "--limit", 30, "-q", "-o", "ev.h5",
                    "--overwrite")
    assert forced.exit_code == 0, forced.output
    assert len(read_arrays("ev.h5", EVALUATION_SCHEMA)[0]["summary"]["artifacts"]) == 1
    open("notes.h5", "w").write("mine")
    other = invoke("evaluate", "cnn", "--limit", 30, "-q", "-o", "notes.h5")
    assert one_line_error(other) == ("Error: notes.h5 exists and is not an evaluation; choose "
                                     "another -o or pass --overwrite\n")
    assert open("notes.h5").read() == "mine"
