"""Scoring: evaluation of attack artifacts (``evaluate``), transfer between models
(``transfer``), the robustness audit (``audit``), randomized-smoothing certification
(``certify``) and tables and plots (``report``).

This ``__init__`` holds the CLI's choices and the audit's defaults without importing
TensorFlow, so that ``--help`` shows them.
"""

from advbench.core.params import Param
from advbench.run import DISTANCE_VARIANTS, SENSITIVITY_VARIANTS, SUCCESS_DEFINITIONS

#: --format: how tables are written to stderr (``report``): "table", rich's boxes (plain and
#: at full width when stderr is not a terminal), or "markdown", for CI summaries and reports.
TABLE_FORMATS = ("table", "markdown")

#: ``advbench audit``'s checks (``advbench.audit``), in the order of Carlini et al. 2019's
#: checklist as issue 10 lists them: --checks name -> what the check asks.
AUDIT_CHECKS: dict[str, str] = {
    "logits-and-gradients": "the model gives logits, deterministic outputs and input "
                            "gradients that are neither zero nor NaN",
    "iterative-vs-single-step": "iterative attacks (PGD, APGD-CE) are at least as strong as "
                                "FGSM",
    "white-box-vs-transfer": "white-box attacks are at least as strong as transfer from a "
                             "surrogate",
    "unbounded-attack": "an attack with an unbounded eps fools every sample",
    "accuracy-vs-eps": "accuracy does not rise with eps (FGSM and PGD curves)",
    "gradient-free-vs-gradient": "the gradient-free Square attack is not much stronger than "
                                 "the gradient attacks",
    "attack-vs-random-noise": "random noise of the same norm is weaker than the attack",
    "attack-convergence": "more iterations and restarts do not keep lowering accuracy",
}

#: An audit check's verdicts, mildest first; --fail-on takes the last two.
VERDICTS = ("pass", "warn", "fail")

#: --fail-on: the verdicts at or above which `advbench audit` exits with code 4.
FAIL_ON = VERDICTS[1:]

#: The budgets and thresholds of ``audit.AuditSettings``, each declared once (type, default,
#: bounds, flag and its help): the settings' defaults and validation, `advbench audit`'s flags
#: and their help derive from them; kept here so that `advbench audit --help` shows them
#: without importing TensorFlow. The reasons for the defaults are in ``AuditSettings`` and
#: docs/audit.md. The surrogate's and check 4's flags are written in the CLI (their defaults
#: are said in their help, and --surrogate excludes them): ``flag=None`` here.
AUDIT_PARAMS: tuple[Param, ...] = (
    Param("tolerance", float, 0.02, low=0.0, high=1.0,
          help="Checks 2, 3, 5, 7, 8: by how much (a fraction of the samples) the attack "
               "expected to be weaker may win, accuracy may rise along the eps curve, or more "
               "budget may lower it."),
    Param("square_lead", float, 0.05, low=0.0, high=1.0,
          help="Check 6: the fraction of samples Square may fool that every gradient attack "
               "missed."),
    Param("min_unbounded_success", float, 0.99, low=0.0, high=1.0,
          help="Check 4: success the unbounded attack must reach on correctly classified "
               "samples."),
    Param("max_bad_gradients", float, 0.1, low=0.0, high=1.0,
          help="Check 1: the fraction of samples whose input gradient may be zero or not "
               "finite."),
    Param("pgd_steps", int, 40, low=1, help="PGD steps (step size 2.5 eps / steps, random "
                                            "start)."),
    Param("n_iter", int, 100, low=1, help="APGD-CE iterations."),
    Param("convergence_factor", int, 4, low=2,
          help="Check 8 reruns APGD-CE with this many times the iterations and as many "
               "restarts."),
    Param("square_queries", int, 5000, low=1, help="Square's queries per sample."),
    Param("curve_points", int, 5, low=1,
          help="Check 5: eps values of the FGSM and PGD curves (eps * k / points), beside 0."),
    Param("unbounded_eps", float, None, low=0.0, low_inclusive=False, optional=True,
          flag=None),
    Param("noise_draws", int, 10, low=1, help="Check 7: random perturbations per sample."),
    Param("surrogate_epochs", int, 2, low=1, flag=None),
    Param("surrogate_limit", int, 5000, low=10, flag=None),
    Param("surrogate_architecture", str, "cnn", flag=None),
)

#: `advbench evaluate`'s choices of what to score, declared once with their flags and help (the
#: command's flags derive from them; ``evaluate.evaluate``'s keyword defaults are the same,
#: which a test holds).
EVALUATE_PARAMS: tuple[Param, ...] = (
    Param("distance_variant", str, "l2", choices=DISTANCE_VARIANTS,
          help="Training-set distance: L2, or the paper's ||d||^2/||x||."),
    Param("success_against", str, "prediction", choices=SUCCESS_DEFINITIONS, flag="--success",
          help="An untargeted attack succeeds when it changes the model's clean prediction (as "
               "ART and the paper's authors) or when the output differs from the label; success "
               "rate, norms and robustness use it, JSON has both rates."),
    Param("distance", bool, True, help="Training-set distance for white-box minimal artifacts."),
    Param("sensitivity", bool, True, help="Loss sensitivity on the clean split."),
    Param("sensitivity_variant", str, "loss", choices=SENSITIVITY_VARIANTS,
          help="What loss sensitivity differentiates: the loss at the label (the paper's text), "
               "or the predicted class's softmax output / logit (the authors' code, ART "
               "735ead0c0 / tag 0.1)."),
)

#: The defaults of ``audit.AuditSettings`` (``AUDIT_PARAMS``').
AUDIT_DEFAULTS: dict[str, object] = {p.name: p.default for p in AUDIT_PARAMS}

#: The checks that use each budget or threshold flag of `advbench audit` (numbers of
#: ``AUDIT_CHECKS``, from ``advbench.audit``: checks 6 and 7 compare against FGSM, PGD and
#: APGD-CE together, so they use those attacks' budgets): `advbench audit` refuses a flag that
#: none of the chosen checks uses.
AUDIT_SETTING_CHECKS: dict[str, tuple[int, ...]] = {
    "tolerance": (2, 3, 5, 7, 8), "square_lead": (6,), "min_unbounded_success": (4,),
    "max_bad_gradients": (1,), "pgd_steps": (2, 3, 5, 6, 7), "n_iter": (2, 3, 4, 6, 7, 8),
    "convergence_factor": (8,), "square_queries": (6,), "curve_points": (2, 5, 6, 7),
    "noise_draws": (7,),
}

#: How many test samples `advbench audit` attacks when --limit is not given.
AUDIT_SAMPLES = 500
#: --norm of `advbench audit`: the norms of the FGSM and PGD it compares (not l1, which they
#: lack).
AUDIT_NORMS = ("linf", "l2")
