"""The commands' rules on options, called from Python (``advbench.stages``): the same
decisions and one-line messages as the command line's usage errors."""

import pytest

from advbench import stages
from advbench.core.errors import ParameterError


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
