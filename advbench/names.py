"""Names of CLI choices whose implementing modules import TensorFlow or h5py (the models
package, curves, metrics, report, distribute, shards), kept here without them so that every
``--help`` lists the choices without importing TensorFlow. The implementing modules take their
names from here; attacks, defenses and the paper's profiles keep theirs in their own
TensorFlow-free modules."""

#: --model name -> the builder function of ``advbench.models`` (``models.ARCHITECTURES``).
ARCHITECTURE_BUILDERS: dict[str, str] = {
    "cnn": "build_cnn",
    "resnet": "build_resnet",
    "cifar-cnn": "build_cifar_cnn",
    "mlp": "build_mlp",
}

#: --act: the activations of ``models.build_model`` (BReLU: the paper's bounded ReLU).
ACTIVATIONS = ("relu", "brelu")

#: --curve-attack: the attacks whose accuracy-vs-eps curves ``advbench.curves`` computes from
#: one direction per sample.
CURVE_ATTACKS = ("fgsm", "rand-fgsm")

#: --distance-variant: the variants of ``metrics.nearest_training_distance``.
DISTANCE_VARIANTS = ("l2", "paper")

#: --sensitivity-variant: what ``metrics.loss_sensitivity`` differentiates: "loss", the
#: per-sample cross-entropy at the label (the paper's text, section 4.1); "softmax", the
#: predicted class's softmax output (the authors' code, ART commit 735ead0c0, which printed
#: Table 3); "logit", the predicted class's logit (the same code at ART tag 0.1).
SENSITIVITY_VARIANTS = ("loss", "softmax", "logit")

#: --success: what an untargeted attack must change to succeed on a sample (``metrics``):
#: "prediction", the model's prediction on the clean image (IBM ART's ``empirical_robustness``
#: and the paper's code: a sample the model already misclassifies is fooled only once its
#: prediction moves), or "label", the true label (any misclassified output counts, so a
#: misclassified sample is "fooled" at no cost). Targeted success is the target being
#: predicted, either way.
SUCCESS_DEFINITIONS = ("prediction", "label")

#: attack --from (``runner.AttackRun.start_from``): where an untargeted minimal attack
#: (deepfool, cw-l2, jsma, fmn) starts: "prediction", the model's clean prediction, as IBM ART
#: and the authors' code (a misclassified sample is moved off its prediction too), or "label",
#: the true label (a misclassified sample is returned unchanged).
START_FROM = ("prediction", "label")
#: The minimal attacks whose starting class ``START_FROM`` chooses (JSMA untargeted picks its
#: target among the other classes). fgsm-min always searches from the prediction, as ART.
START_FROM_ATTACKS = ("deepfool", "cw-l2", "jsma", "fmn")

#: --outputs: how to read a model's outputs (``models.adapt``): "auto" refuses outputs that
#: look like probabilities.
OUTPUTS = ("auto", "logits", "probabilities")

#: --format: how tables are written to stderr (``report``): "table", rich's boxes (plain and
#: at full width when stderr is not a terminal), or "markdown", for CI summaries and reports.
TABLE_FORMATS = ("table", "markdown")

#: --strategy (``distribute``): one device (TensorFlow's default placement, or the one
#: ``--devices`` entry), the devices of one host, or workers on several hosts.
STRATEGIES = ("none", "mirrored", "multi-worker")

#: attack and reproduce --engine (``shards``, ``advbench.ray_engine``): this process (the
#: whole run, or the one ``--shard`` or ``--stage`` a job gives it), or Ray tasks: one per
#: attack shard, then the merge; one per reproduction stage, then the report.
ENGINES: dict[str, str] = {
    "local": "this process",
    "ray": "Ray tasks: one per attack shard or reproduction stage",
}

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
