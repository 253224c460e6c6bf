"""Scoring: evaluation of attack artifacts (``evaluate``), transfer between models
(``transfer``), the robustness audit (``audit``), randomized-smoothing certification
(``certify``) and tables and plots (``report``).

This ``__init__`` holds the CLI's choices and the audit's defaults without importing
TensorFlow, so that ``--help`` shows them.
"""

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

#: The defaults of ``audit.AuditSettings`` (budgets and thresholds), kept here so that
#: `advbench audit --help` shows them without importing TensorFlow; the reasons are in
#: ``AuditSettings`` and docs/audit.md.
AUDIT_DEFAULTS: dict[str, object] = {
    "tolerance": 0.02, "square_lead": 0.05, "min_unbounded_success": 0.99,
    "max_bad_gradients": 0.1, "pgd_steps": 40, "n_iter": 100, "convergence_factor": 4,
    "square_queries": 5000, "curve_points": 5, "unbounded_eps": None, "noise_draws": 10,
    "surrogate_epochs": 2, "surrogate_limit": 5000, "surrogate_architecture": "cnn",
}

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
