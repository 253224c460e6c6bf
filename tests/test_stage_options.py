"""The commands' rules on options, called from Python (``advbench.stages``): the same
decisions and one-line messages as the command line's usage errors."""

import pytest

from advbench import stages
from advbench.core.errors import OptionError, ParameterError


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(ParameterError) as error:
        call(*args, **kwargs)
    return str(error.value)


def test_build_attack_takes_values_by_parameter_name():
    attack = stages.build_attack("pgd", {"eps": 0.1, "steps": 5, "alpha": None})
    assert (attack.eps, attack.steps) == (0.1, 5)
    assert refused(stages.build_attack, "fgsm", {"steps": 5, "eps": 0.1}) == \
        "--steps does not apply to --attack fgsm"
    assert refused(stages.build_attack, "fgsm", {"eps": 8.0}) == (
        "--eps 8 is above 1, the whole [0, 1] image box in L-inf: attacks perturb images in "
        "[0, 1] whatever range the model takes; give eps in those units, e.g. --eps 8/255")


def test_build_defense_takes_values_by_flag_name():
    assert stages.build_defense("gda", "mnist", {"gda_sigma": 0.2}).sigma == 0.2
    assert refused(stages.build_defense, "none", "mnist", {"gda_sigma": 0.2}) == \
        "--gda-sigma does not apply to --defense none"


def test_audit_settings_refuse_what_no_chosen_check_uses():
    checks, settings, limit = stages.audit_settings(
        ["logits-and-gradients"], eps=0.3, norm="linf", values={"tolerance": 0.05})
    assert checks == ("logits-and-gradients",) and settings.tolerance == 0.05 and limit == 500
    assert refused(stages.audit_settings, ["logits-and-gradients"], eps=0.3, norm="linf",
                   values={"square_queries": 10}, given=["square_queries"]) == (
        "--square-queries (check 6) does not apply to the checks chosen by --checks (1); "
        "drop it or add its checks")
    assert refused(stages.audit_settings, None, eps=0.3, norm="linf", values={},
                   surrogate=True, surrogate_values={"--surrogate-limit": 100}) == (
        "--surrogate-limit shapes the surrogate advbench trains; drop it with --surrogate")
    assert refused(stages.audit_settings, None, eps=2.0, norm="linf", values={}) == \
        "eps must be <= 1.0, got 2.0"


def test_option_checks():
    assert refused(stages.check_engine, "ray", None) == \
        "--engine ray makes its own shards: give --workers N, not --shard"
    assert refused(stages.check_train_options, "cnn", fine_tune=True) == \
        "--fine-tune applies to --model FILE (your own architecture)"
    assert stages.check_train_options("own.keras", fine_tune=True) is True
    assert refused(stages.check_evaluate_options, None, alpha=0.1) == \
        "--source and --alpha shape the --eps curve; give --eps too"
    assert stages.check_evaluate_options(0.1) == (0.1,)
    attack = stages.build_attack("fgsm", {"eps": 0.1})
    assert refused(stages.check_attack_options, attack, "fgsm", start_from="label") == (
        "--from applies to untargeted deepfool, cw-l2, jsma and fmn (fgsm-min always starts "
        "from the prediction, bounded attacks from the label)")


# -- the decisions the commands make between parsing and their stage call (issue 21) -------
def option_refusal(call, *args, **kwargs) -> tuple[str, str | None]:
    """(message, flag) of the OptionError (the command's usage error) ``call`` raises."""
    from advbench.core.errors import OptionError

    with pytest.raises(OptionError) as error:
        call(*args, **kwargs)
    return str(error.value), error.value.flag


def test_curve_options_say_which_flags_a_curve_refuses(tmp_path):
    from advbench.run.shards import Shard

    eps = (0.1, 0.2)
    assert stages.check_curve_options(eps) is True
    assert stages.check_curve_options(0.1) is False
    assert option_refusal(stages.check_curve_options, eps, shard=Shard(0, 2)) == (
        "--shard and --engine ray split attack runs, not curves; give one --eps value", None)
    assert option_refusal(stages.check_curve_options, eps, engine="ray")[0].startswith(
        "--shard and --engine ray split attack runs")
    assert option_refusal(stages.check_curve_options, eps, target_mode="random") == (
        "curves (an eps list) are untargeted; drop --target", None)
    assert option_refusal(stages.check_curve_options, 0.1, plot=tmp_path / "c.png") == (
        "--plot draws a curve: give an eps list, e.g. --eps 0.01:1:0.01", None)
    assert option_refusal(stages.check_curve_options, eps, command="transfer",
                          output=tmp_path / "m.h5", runs_dir="mine") == (
        "-o writes the matrix artifact of one eps; curve artifacts are written to --runs-dir "
        "(mine)", None)
    # attack writes a curve to -o: a folder there is refused before any work.
    from advbench.core.errors import OutputError

    with pytest.raises(OutputError, match="it is a folder"):
        stages.check_curve_options(eps, output=tmp_path)


def test_gate_options_name_the_flag_of_a_bad_value():
    thresholds, radii = stages.gate_options(["adv_accuracy=0.6"],
                                            ["certified_accuracy@0.3=0.9"], "0.5,0")
    assert [(t.name, t.bound, t.value) for t in thresholds] == [
        ("adv_accuracy", "under", 0.6), ("certified_accuracy", "over", 0.9)]
    assert radii == (0.0, 0.3, 0.5)  # the thresholds' radii joined, sorted
    message, flag = option_refusal(stages.gate_options, ["adv_accuracy"])
    assert (message, flag) == ("threshold 'adv_accuracy' is not NAME=VALUE (e.g. "
                               "adv_accuracy=0.6)", "--fail-under")
    assert option_refusal(stages.gate_options, (), ["nope=1"])[1] == "--fail-over"
    assert option_refusal(stages.gate_options, radii="0.1,x") == (
        "'0.1,x' is not a comma-separated list of numbers", "--radii")
    assert option_refusal(stages.gate_options, radii="-1") == (
        "radius must be a finite number >= 0, got -1.0", None)


def test_data_source_takes_one_of_a_name_or_a_file(tmp_path):
    from conftest import write_digits_npz

    assert stages.data_source() is None
    assert stages.data_source("mnist") == "mnist"
    assert option_refusal(stages.data_source, "mnist", "own.npz") == (
        "Use just one of --dataset or --data", None)
    path = write_digits_npz(tmp_path / "own.npz", 20, 20)
    said: list[str] = []
    assert stages.data_source(None, path, said.append) == str(path.resolve())
    assert said == stages.data_source.__globals__["data"].notes(str(path.resolve()))


def test_reading_options_parse_the_preprocessing_flags():
    reading = stages.reading_options(input_range="0:255", mean="0.5")
    assert reading["preprocessing"].input_range == (0.0, 255.0)
    assert reading["preprocessing"].mean == (0.5,) and reading["preprocessing"].std == (1.0,)
    assert stages.reading_options()["preprocessing"] is None
    assert refused(stages.reading_options, input_range="0-255") == \
        "--input-range '0-255' is not LOW:HIGH (e.g. 0:255)"


def test_sample_and_certify_values_are_refused_as_options():
    assert option_refusal(stages.check_samples, limit=0)[0].startswith("limit must be")
    assert option_refusal(stages.check_samples, batch_size=0)[0].startswith("batch size")
    assert option_refusal(stages.check_certify_options, sigma=0.0, n0=1, n=1,
                          alpha=0.001)[0].startswith("sigma must be")
    stages.check_certify_options(sigma=0.25, n0=10, n=100, alpha=0.001)


def test_attack_with_budget_fills_the_data_sets_defaults():
    attack, budget = stages.attack_with_budget("pgd", {"eps": None, "steps": 5})
    assert budget is None  # no data set yet: the constructor's defaults, values checked
    attack, budget = stages.attack_with_budget("pgd", {"eps": None, "steps": 5},
                                               dataset="mnist")
    assert budget.source == "mnist" and attack.eps == budget.values["eps"]
    assert attack.steps == 5
    assert option_refusal(stages.attack_with_budget, "fgsm", {"steps": 5},
                          dataset="mnist") == ("--steps does not apply to --attack fgsm", None)


def test_train_config_checks_the_defense_and_the_run():
    from advbench.run.train import TrainConfig

    defense, config = stages.train_config("gda", "mnist", {"gda_sigma": 0.2},
                                          architecture="own.keras", epochs=1)
    assert defense.sigma == 0.2 and isinstance(config, TrainConfig)
    assert config.architecture == "cnn" and config.brelu_t == 1.0  # own file; t's default
    assert option_refusal(stages.train_config, "none", "mnist", {"gda_sigma": 0.2}) == (
        "--gda-sigma does not apply to --defense none", None)
    assert option_refusal(stages.train_config, "none", "mnist", {},
                          epochs=0)[0].startswith("epochs must be")


def test_export_refuses_a_savedmodel_and_a_wrong_suffix_before_loading(tmp_path):
    """Trial 4: `export my_sm` first asked for --outputs (the model was read), then said a
    SavedModel cannot be exported. Both refusals now come before the model loads: a folder
    of a bare saved_model.pb would fail to load."""
    folder = tmp_path / "served"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ParameterError, match="^a SavedModel cannot be written as a .keras "
                       r"file \(Keras stores layers, not compiled graphs\); it is already a "
                       "standard format$"):
        stages.export(str(folder), tmp_path / "out.keras", dataset="mnist")
    with pytest.raises(ParameterError, match="^export writes a Keras 3 file; name it "
                       r"\*.keras, not out.h5$"):
        stages.export(str(folder), tmp_path / "out.h5", dataset="mnist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["served"]


def test_a_missing_ray_is_said_before_anything_runs(monkeypatch):
    """Trial 4: without Ray, `attack --engine ray` printed its start lines and "2 Ray tasks"
    before the error. The check comes first now (exit 1: not a usage error)."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ParameterError, match=r"^--engine ray needs Ray: pip install "
                       r"'advbench\[ray\]'$") as error:
        stages.require_engine("ray")
    assert not isinstance(error.value, OptionError)
    stages.require_engine("local")
