"""Running attacks and training: the one attack driver (``runner``), shards and Ray tasks
(``shards``, ``ray_engine``), accuracy-vs-eps curves (``curves``), the training loop
(``train``, ``distribute``), the measures a run records (``metrics``), opening models
(``loading``) and the HDF5 artifacts every stage writes (``artifacts``).

This ``__init__`` holds the CLI's choices of these modules without importing TensorFlow.
"""

from advbench.core.params import Param

#: `advbench train`'s training parameters, declared once: ``train.TrainConfig``'s defaults and
#: the command's flags come from here (``TrainConfig.validate`` checks their values).
TRAIN_PARAMS: tuple[Param, ...] = (
    Param("epochs", int, 20),
    Param("batch_size", int, 128),
    Param("learning_rate", float, 1e-3),
    Param("patience", int, 5, help="Early stopping patience in epochs (validation accuracy)."),
    Param("seed", int, 0),
    Param("limit", int, None, help="Train on a class-balanced subset of this many images."),
)
#: The defaults of ``train.TrainConfig`` (``TRAIN_PARAMS``').
TRAIN_DEFAULTS: dict[str, object] = {p.name: p.default for p in TRAIN_PARAMS}

#: --curve-attack: the attacks whose accuracy-vs-eps curves ``advbench.run.curves`` computes from
#: one direction per sample.
CURVE_ATTACKS = ("fgsm", "rand-fgsm")

#: attack --from (``runner.AttackRun.start_from``): where an untargeted minimal attack
#: (deepfool, cw-l2, jsma, fmn) starts: "prediction", the model's clean prediction, as IBM ART
#: and the authors' code (a misclassified sample is moved off its prediction too), or "label",
#: the true label (a misclassified sample is returned unchanged).
START_FROM = ("prediction", "label")
#: The minimal attacks whose starting class ``START_FROM`` chooses (JSMA untargeted picks its
#: target among the other classes). fgsm-min always searches from the prediction, as ART.
START_FROM_ATTACKS = ("deepfool", "cw-l2", "jsma", "fmn")

#: --success: what an untargeted attack must change to succeed on a sample (``metrics``):
#: "prediction", the model's prediction on the clean image (IBM ART's ``empirical_robustness``
#: and the paper's code: a sample the model already misclassifies is fooled only once its
#: prediction moves), or "label", the true label (any misclassified output counts, so a
#: misclassified sample is "fooled" at no cost). Targeted success is the target being
#: predicted, either way.
SUCCESS_DEFINITIONS = ("prediction", "label")

#: --distance-variant: the variants of ``metrics.nearest_training_distance``.
DISTANCE_VARIANTS = ("l2", "paper")

#: --sensitivity-variant: what ``metrics.loss_sensitivity`` differentiates: "loss", the
#: per-sample cross-entropy at the label (the paper's text, section 4.1); "softmax", the
#: predicted class's softmax output (the authors' code, ART commit 735ead0c0, which printed
#: Table 3); "logit", the predicted class's logit (the same code at ART tag 0.1).
SENSITIVITY_VARIANTS = ("loss", "softmax", "logit")

#: --strategy (``distribute``): one device (TensorFlow's default placement, or the one
#: ``--devices`` entry), the devices of one host, or workers on several hosts.
STRATEGIES = ("none", "mirrored", "multi-worker")

#: attack and reproduce --engine (``shards``, ``advbench.run.ray_engine``): this process (the
#: whole run, or the one ``--shard`` or ``--stage`` a job gives it), or Ray tasks: one per
#: attack shard, then the merge; one per reproduction stage, then the report.
ENGINES: dict[str, str] = {
    "local": "this process",
    "ray": "Ray tasks: one per attack shard or reproduction stage",
}
