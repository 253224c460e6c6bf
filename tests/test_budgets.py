"""Budgets per data set (advbench.attacks.budgets), eps fractions and ranges, the parameter
line that starts every attack run, and --help showing every default."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from advbench.attacks import ATTACK_SPECS, budgets
from advbench.attacks.budgets import attack_budget, parse_eps, parse_value
from advbench.cli import ATTACK_OPTIONS, main
from advbench.core.errors import ParameterError


def invoke(args):
    return CliRunner().invoke(main, [str(a) for a in args])


# -- fractions and ranges -------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("8/255", 8 / 255), ("0.3", 0.3), (" 16 / 255 ", 16 / 255), ("1e-2", 0.01), (0.5, 0.5),
])
def test_parse_value_takes_fractions(text, expected):
    assert parse_value(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("text, expected", [
    ("8/255", (8 / 255,)),
    ("2/255,8/255", (2 / 255, 8 / 255)),
    ("0:8/255:2/255", (0.0, round(2 / 255, 12), round(4 / 255, 12), round(6 / 255, 12),
                       round(8 / 255, 12))),
])
def test_parse_eps_takes_fractions_in_lists_and_ranges(text, expected):
    assert parse_eps(text) == expected


@pytest.mark.parametrize("text, message", [
    ("0:1e308:1e-300", "eps range '0:1e308:1e-300' has more than 10000 points; use a larger step"),
    ("0:1:1e-9", "eps range '0:1:1e-9' has more than 10000 points; use a larger step"),
    ("8/0", "eps '8/0' divides by zero; give a value such as 8/255"),
    ("1/2/3", "eps '1/2/3' is not a number; give one value (0.1 or 8/255), a list (0.1,0.2) or "
              "a range start:stop:step (0:8/255:1/255)"),
    ("0:1e400:1", "eps range '0:1e400:1' must have finite start, stop and step"),
])
def test_parse_eps_bounds_are_one_line_errors(text, message):
    with pytest.raises(ParameterError) as e:
        parse_eps(text)
    assert str(e.value) == message


@pytest.mark.parametrize("args, line", [
    (["--eps", "0:1e308:1e-300"],
     "Error: Invalid value for '--eps': eps range '0:1e308:1e-300' has more than 10000 points; "
     "use a larger step\n"),
    (["--eps", "8/0"], "Error: Invalid value for '--eps': eps '8/0' divides by zero; give a "
                       "value such as 8/255\n"),
    (["--step-size", "x/255"], "Error: Invalid value for '--step-size': --step-size 'x/255' is "
                               "not a number; give a value such as 0.03 or 8/255\n"),
])
def test_eps_errors_are_usage_errors_at_parse_time(args, line, tmp_path):
    # An existing file: a missing model is refused even earlier, before the flags are parsed.
    (tmp_path / "none.keras").touch()
    result = invoke(["attack", tmp_path / "none.keras", "--attack", "pgd", *args])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] + "\n" == line


def test_evaluate_eps_range_bound_is_a_usage_error(tmp_path):
    (tmp_path / "none.keras").touch()
    result = invoke(["evaluate", tmp_path / "none.keras", "--eps", "0:1e308:1e-300"])
    assert result.exit_code == 2
    assert result.output.endswith("has more than 10000 points; use a larger step\n")


# -- defaults per data set ------------------------------------------------------------------
@pytest.mark.parametrize("attack, dataset, norm, expected", [
    ("pgd", "mnist", "linf", {"eps": 0.3, "step_size": 0.01}),
    ("pgd", "cifar10", "linf", {"eps": 8 / 255, "step_size": 2 / 255}),
    ("pgd", "mnist", "l2", {"eps": 1.5, "step_size": 2.5 * 1.5 / 40}),
    ("pgd", "cifar10", "l2", {"eps": 0.5, "step_size": 2.5 * 0.5 / 40}),
    ("apgd-ce", "cifar10", "linf", {"eps": 8 / 255}),
    ("autoattack", "cifar10", "l2", {"eps": 0.5}),
    ("square", "mnist", "linf", {"eps": 0.3}),
    ("fgsm", "mnist", "linf", {"eps": 0.1}),
    ("fgsm", "cifar10", "linf", {"eps": 8 / 255}),
    ("fgsm", "cifar10", "l2", {"eps": 0.5}),
    ("rand-fgsm", "cifar10", None, {"eps": 8 / 255, "alpha": 4 / 255}),
    ("fgsm-min", "cifar10", None, {"eps_step": 1 / 255}),
    ("vat", "mnist", None, {"eps": 2.1}),
    ("deepfool", "cifar10", None, {}),
])
def test_defaults_come_from_the_data_set(attack, dataset, norm, expected):
    budget = attack_budget(attack, dataset, norm=norm)
    assert budget.values == pytest.approx(expected)
    assert budget.note == ""


def test_mnist_defaults_are_the_attack_classes_own():
    """The classes keep the MNIST defaults of their papers; the table agrees with them."""
    from advbench.attacks import make_attack

    for name in ("pgd", "fgsm", "rand-fgsm", "fgsm-min", "vat", "apgd-ce", "square",
                 "autoattack"):
        attack = make_attack(name)
        for param, value in attack_budget(name, "mnist").values.items():
            assert getattr(attack, param) == pytest.approx(value), (name, param)


def test_given_values_are_kept():
    assert attack_budget("pgd", "cifar10", given={"eps": 0.1}).values == \
        pytest.approx({"step_size": 2 / 255})
    assert attack_budget("pgd", "cifar10", given={"eps": 0.1, "step_size": 0.01}).values == {}


def test_own_data_of_a_known_size_borrows_and_says_so():
    budget = attack_budget("pgd", "/x/my.npz", input_shape=(32, 32, 3),
                           source_text="--data my.npz")
    assert budget.values == pytest.approx({"eps": 8 / 255, "step_size": 2 / 255})
    assert budget.source == "cifar10"
    assert budget.note == ("--data my.npz holds 32x32x3 images, cifar10's shape: pgd takes "
                           "cifar10's default --eps 8/255, --step-size 2/255 (give --eps to "
                           "change it)")


def test_own_data_of_another_size_needs_eps():
    with pytest.raises(ParameterError) as e:
        attack_budget("pgd", "/x/my.npz", input_shape=(64, 64, 3), source_text="--data my.npz")
    assert str(e.value) == (
        "--data my.npz holds 64x64x3 images, the shape of no built-in data set (mnist 28x28x1, "
        "cifar10 32x32x3), so pgd's --eps has no default; give it, e.g. --eps 8/255")
    # With --eps given, PGD's step follows Madry et al.'s rule, rand-fgsm's alpha is eps / 2.
    assert attack_budget("pgd", "/x/my.npz", input_shape=(64, 64, 3), given={"eps": 0.1},
                         steps=10).values == pytest.approx({"step_size": 0.025})
    assert attack_budget("rand-fgsm", "/x/my.npz", input_shape=(64, 64, 3),
                         given={"eps": 0.1}).values == pytest.approx({"alpha": 0.05})
    # Minimal attacks need no budget.
    assert attack_budget("deepfool", "/x/my.npz", input_shape=(64, 64, 3)).values == {}


def test_cli_refuses_own_data_of_another_size_without_eps(tmp_path):
    """A usage error (exit 2) before TensorFlow: the data's header gives the size."""
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", x=rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8),
             y=np.arange(4) % 2)
    (tmp_path / "none.keras").touch()  # a missing model is refused before the data is read
    result = invoke(["attack", tmp_path / "none.keras", "--attack", "pgd",
                     "--data", tmp_path / "big.npz"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: --data {tmp_path / 'big.npz'} holds 16x16x3 images, the shape of no built-in "
        "data set (mnist 28x28x1, cifar10 32x32x3), so pgd's --eps has no default; give it, "
        "e.g. --eps 8/255")


# -- the parameter line ---------------------------------------------------------------------
def test_parameter_line_names_every_parameter_and_the_source():
    budget = attack_budget("pgd", "cifar10")
    line = budgets.parameter_line("pgd", {"norm": "linf", "eps": 8 / 255, "step_size": 2 / 255,
                                          "steps": 40}, budget=budget, extra="untargeted",
                                  seed=0, samples="10 samples of cifar10 test")
    assert line == ("pgd: norm=linf eps=8/255 step_size=2/255 steps=40 (eps, step_size: "
                    "cifar10's defaults); untargeted; seed 0; 10 samples of cifar10 test")


def test_attack_run_prints_every_parameter(trained_tiny_cnn, fake_data_dir, tmp_path):
    path, _, _ = trained_tiny_cnn
    result = CliRunner().invoke(main, [
        "attack", str(path), "--attack", "pgd", "--steps", "2", "--limit", "4",
        "--data-dir", str(fake_data_dir), "-o", str(tmp_path / "pgd.h5")])
    assert result.exit_code == 0, result.output
    assert ("pgd: norm=linf eps=0.3 step_size=0.01 steps=2 random_start=True early_stop=False "
            "(eps, step_size: mnist's defaults); untargeted; seed 0; 4 samples (class-balanced) "
            "of mnist test (start 0, batch size 128)") in result.stderr.splitlines()
    from advbench.run.artifacts import ATTACK_SCHEMA, read_arrays

    attrs, _ = read_arrays(tmp_path / "pgd.h5", ATTACK_SCHEMA)
    assert attrs["attack_params"] == {"eps": 0.3, "step_size": 0.01, "steps": 2,
                                      "random_start": True, "norm": "linf",
                                      "early_stop": False}
    assert attrs["defaults_from"] == "eps, step_size: mnist"


# -- --help shows every default ------------------------------------------------------------
def test_every_attack_option_shows_its_default():
    missing = [flag for flag, _, _, text in ATTACK_OPTIONS if "[default:" not in text]
    assert missing == []
    result = invoke(["attack", "--help"])
    assert "[default: 0.3 on MNIST, 8/255 on CIFAR-10" in " ".join(result.output.split())


@pytest.mark.parametrize("name", sorted(ATTACK_SPECS))
def test_per_data_set_defaults_in_help_are_the_budgets(name):
    """A flag whose default depends on the data set (its help says so by hand) shows each
    built-in set's budget for every attack taking it: the help text cannot drift from
    ``advbench.attacks.budgets`` (the other defaults are derived from the declarations)."""
    from advbench.attacks.budgets import attack_budget, shown

    help_of = {param: text for _, param, _, text in ATTACK_OPTIONS}
    for dataset in ("mnist", "cifar10"):
        for param, value in attack_budget(name, dataset).values.items():
            assert shown(value) in help_of[param].split("[default:")[1], (name, dataset, param)


@pytest.mark.parametrize("name", sorted(n for n, spec in ATTACK_SPECS.items()
                                        if spec.defaults().get("eps") is not None))
def test_every_eps_attack_has_a_budget_on_every_data_set(name):
    """An attack with an eps takes the data set's budget, in either norm, without a line in
    advbench.attacks.budgets: a new eps attack gets one by its declaration (FAB's eps, None
    by default, stays None: minimal unless given)."""
    from advbench.attacks.budgets import BUDGETS, attack_budget

    for dataset in BUDGETS:
        for norm in ("linf", "l2"):
            assert "eps" in attack_budget(name, dataset, norm=norm).values, (dataset, norm)


@pytest.mark.parametrize("name", ["fab", "fab-t"])
def test_an_eps_none_by_default_takes_no_budget(name):
    from advbench.attacks.budgets import BUDGETS

    for dataset in BUDGETS:
        assert "eps" not in attack_budget(name, dataset).values


def test_help_defaults_match_the_attack_classes():
    """Each default a flag's help gives is the declared default (where the help's default is
    written by hand, ``Param.default_help``, it cannot drift either)."""
    import inspect

    from advbench.attacks import ATTACKS

    flag_of = {param: (flag, text) for flag, param, _, text in ATTACK_OPTIONS}
    per_data_set = {"eps", "step_size", "alpha", "eps_step"}
    for name, cls in ATTACKS.items():
        for param, p in inspect.signature(cls).parameters.items():
            if param == "target_mode" or param in per_data_set:
                continue
            flag, text = flag_of[param]
            default = p.default
            if default is None:
                # Derived from other parameters (fmn's alpha_final = alpha_init / 100): the
                # help says how, in words.
                assert "[default:" in text, (name, flag)
                continue
            shown = ("on" if default else "off") if isinstance(default, bool) else f"{default}"
            assert shown in "".join(text.split("[default:")[1:]), (name, flag, shown)


# -- train: the defense defaults of the data set ---------------------------------------------
def test_train_on_own_data_of_another_size_needs_the_sigma(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "big.npz", x=rng.integers(0, 255, (4, 16, 16, 3), dtype=np.uint8),
             y=np.arange(4) % 2)
    result = invoke(["train", "--data", tmp_path / "big.npz", "--defense", "gda",
                     "--models-dir", tmp_path])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        f"Error: --data {tmp_path / 'big.npz'} holds 16x16x3 images, the shape of no built-in "
        "data set (mnist 28x28x1, cifar10 32x32x3), so --gda-sigma has no default; give it")


def test_train_prints_every_parameter_and_the_borrowed_default(tmp_path):
    from conftest import write_digits_npz

    write_digits_npz(tmp_path / "digits.npz", 40, 10)
    result = CliRunner().invoke(main, [
        "train", "--data", str(tmp_path / "digits.npz"), "--defense", "fgsm-at", "--at-eps",
        "1/10", "--defense", "gda", "--at-eps", "0.1", "--epochs", "1", "-o",
        str(tmp_path / "m.h5")])
    assert result.exit_code == 2  # --at-eps with gda: the refusal still comes first
    result = CliRunner().invoke(main, [
        "train", "--data", str(tmp_path / "digits.npz"), "--defense", "gda", "--gda-copies",
        "1", "--epochs", "1", "-o", str(tmp_path / "m.h5")])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert (f"--data {tmp_path / 'digits.npz'} holds 28x28x1 images, mnist's shape: gda takes "
            "mnist's default --gda-sigma 0.3") in lines
    assert ("train cnn relu, defense gda: sigma=0.3 copies=1 clip=False noise=fresh; epochs 1, "
            "batch size 128, learning rate 0.001, patience 5; seed 0; digits.npz train split"
            ) in lines


def test_every_defense_option_shows_its_default():
    from advbench.cli import DEFENSE_OPTIONS

    assert [flag for flag, *_, text in DEFENSE_OPTIONS if "[default:" not in text] == []
    result = invoke(["train", "--help"])
    assert "[default: 0.3 on MNIST, 0.05 on CIFAR-10" in " ".join(result.output.split())


@pytest.mark.parametrize("args, line", [
    (["audit", "m.keras", "--eps", "8/0"],
     "Error: Invalid value for '--eps': --eps '8/0' divides by zero; give a value such as "
     "8/255\n"),
    (["train", "--defense", "gda", "--gda-sigma", "1/x"],
     "Error: Invalid value for '--gda-sigma': --gda-sigma '1/x' is not a number; give a value "
     "such as 0.03 or 8/255\n"),
])
def test_fractions_everywhere_and_their_errors(args, line, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("m.keras").touch()  # a missing model is refused before the flags are parsed
    result = invoke(args)
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] + "\n" == line


def test_audit_takes_a_fraction():
    from advbench.cli import EpsValue

    assert EpsValue().convert("8/255", None, None) == pytest.approx(8 / 255)


def test_rand_fgsm_curve_takes_the_data_sets_alpha(trained_tiny_cnn, fake_data_dir, tmp_path):
    path, _, _ = trained_tiny_cnn
    result = CliRunner().invoke(main, [
        "attack", str(path), "--attack", "rand-fgsm", "--eps", "0:0.04:0.02", "--limit", "4",
        "--data-dir", str(fake_data_dir), "--dataset", "mnist", "-o", str(tmp_path / "c.h5")])
    # MNIST's alpha 0.05 exceeds the largest eps: the library refuses, naming both.
    assert result.exit_code == 2
    assert "alpha (0.05) must be <= eps (0.04)" in result.output
    result = CliRunner().invoke(main, [
        "attack", str(path), "--attack", "rand-fgsm", "--eps", "0:0.2:0.1", "--limit", "4",
        "--data-dir", str(fake_data_dir), "-o", str(tmp_path / "c.h5")])
    assert result.exit_code == 0, result.output
    assert ("rand-fgsm curve: norm=linf eps=0,0.1,0.2 alpha=0.05 (alpha: mnist's default); "
            "untargeted; seed 0; 4 samples (class-balanced) of mnist test (start 0, batch size "
            "128)") in result.stderr.splitlines()


def test_eps_like_flags_leave_infinity_to_the_library(tmp_path):
    """--step-size inf reaches the attack's own check, whose message names the parameter."""
    (tmp_path / "m.h5").touch()  # a missing model is refused before the flags are parsed
    result = invoke(["attack", tmp_path / "m.h5", "--attack", "pgd", "--step-size", "inf"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: step_size must be a finite number, got inf"


def test_linf_eps_above_one_is_a_usage_error(tmp_path):
    """An eps in the model's pixel units (8 for 8/255) is refused, not run as a whole-box
    attack that turns every pixel into 0 or 1."""
    (tmp_path / "m.keras").touch()  # a missing model is refused before the flags are parsed
    result = invoke(["attack", tmp_path / "m.keras", "--attack", "fgsm", "--eps", "8"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (
        "Error: --eps 8 is above 1, the whole [0, 1] image box in L-inf: attacks perturb images "
        "in [0, 1] whatever range the model takes; give eps in those units, e.g. --eps 8/255")


def test_tables_show_eps_like_parameters_as_written():
    from advbench.score.report import param_text

    assert [param_text(v) for v in (8 / 255, 0.3, 40, "linf")] == ["8/255", "0.3", "40", "linf"]


@pytest.mark.parametrize("norm, eps, line", [
    ("l2", 400, "--eps 400 is above 28, the largest L2 distance between two 28x28x1 images in "
                "[0, 1]"),
    ("l1", 785, "--eps 785 is above 784, the largest L1 distance between two 28x28x1 images in "
                "[0, 1]"),
    ("l2", (1.0, 30.0), "--eps 30 is above 28, the largest L2 distance between two 28x28x1 "
                        "images in [0, 1]"),
])
def test_an_l2_or_l1_eps_beyond_the_image_box_is_refused(norm, eps, line):
    """An L2/L1 eps in the model's 0-255 units (the trial's --norm l2 --eps 400) asks for no
    budget at all; L-inf's --eps 8 is refused with the attack."""
    with pytest.raises(ParameterError) as e:
        attack_budget("apgd-ce", "mnist", norm=norm, given={"eps": eps})
    assert str(e.value) == (f"{line}: attacks perturb images in [0, 1] whatever range the "
                            "model takes; give eps in those units")
    # At the bound itself (and for a user's data of another size, from its shape) it is a
    # budget like any other.
    largest = 28.0 if norm == "l2" else 784.0
    assert attack_budget("apgd-ce", "mnist", norm=norm, given={"eps": largest}).values == {}
    with pytest.raises(ParameterError, match="above 3, the largest L2 distance between two "
                                             "3x3x1 images"):
        attack_budget("pgd", "/x/my.npz", norm="l2", input_shape=(3, 3, 1), given={"eps": 4})


def test_cli_refuses_an_l2_eps_in_pixel_units_before_tensorflow(tmp_path):
    (tmp_path / "none.keras").touch()
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.integers(0, 255, (4, 28, 28, 1), dtype=np.uint8),
             y=np.arange(4) % 2)
    result = invoke(["attack", tmp_path / "none.keras", "--attack", "apgd-ce", "--norm", "l2",
                     "--eps", "400", "--data", tmp_path / "d.npz"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[-1] == (
        "Error: --eps 400 is above 28, the largest L2 distance between two 28x28x1 images in "
        "[0, 1]: attacks perturb images in [0, 1] whatever range the model takes; give eps in "
        "those units")
