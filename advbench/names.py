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
