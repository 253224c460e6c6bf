"""The settings of `advbench reproduce`: the paper's models, the profiles (how much of the grid
to run, at what size) and the data sets. TensorFlow-free, so the CLI lists the choices without
importing it; ``experiments`` runs them."""

from __future__ import annotations

import dataclasses
from typing import Any

# Model specs by zoo name: (architecture, activation, defense).
MODEL_SPECS = {
    "cnn": ("cnn", "relu", "none"),
    "cnn-brelu": ("cnn", "brelu", "none"),
    "resnet": ("resnet", "relu", "none"),
    "resnet-brelu": ("resnet", "brelu", "none"),
    "cnn-feature-squeezing": ("cnn", "relu", "feature-squeezing"),
    "cnn-label-smoothing": ("cnn", "relu", "label-smoothing"),
    "cnn-fgsm-at": ("cnn", "relu", "fgsm-at"),
    "cnn-vat": ("cnn", "relu", "vat"),
    "cnn-gda": ("cnn", "relu", "gda"),
    "cnn-brelu-gda": ("cnn", "brelu", "gda"),
    # Cohen et al.'s base classifier (train --defense gda-cohen): the certified section only.
    "cnn-gda-cohen": ("cnn", "relu", "gda-cohen"),
}


@dataclasses.dataclass(frozen=True)
class Profile:
    """How much of the paper's grid to run, and at what size.

    Training budget: undefended models run ``epochs`` epochs over ``train_limit`` images; FGSM
    adversarial training and VAT (static augmentation: a first phase over the images, a second
    over images + adversarials, 3 passes per epoch) run ``static_epochs``; GDA (1 + 10 copies,
    11 passes per epoch) runs ``gda_epochs``. ``patience`` (early stopping on validation
    accuracy, best weights kept) at least the epochs means every model runs every epoch, so
    equal-footing profiles give every model (nearly) the same number of processed samples.
    """

    name: str
    description: str
    models: tuple[str, ...]
    epochs: int
    train_limit: int | None          # training images (None: all)
    gda_epochs: int                  # GDA passes 1 + copies times over the data per epoch
    test_limit: int | None           # images for curves, FGSM tables and metrics
    expensive_limit: int | None      # images for DeepFool, JSMA, C&W and minimal FGSM
    eps_grid: str                    # curves (Figures 3-5)
    attack_params: dict[str, dict[str, Any]]
    experiments: tuple[str, ...]
    # Training seeds (--seed, --seed + 1, ...): every model, the black-box source included, is
    # trained once per seed and every experiment a claim rests on runs per seed.
    seeds: int = 1
    static_epochs: int | None = None  # FGSM-AT and VAT (None: ``epochs``)
    patience: int = 5
    # DeepFool, JSMA and C&W crafted on the black-box source of the seeds after the first
    # (None: ``expensive_limit``): the costliest stages, so fewer images there.
    seed_expensive_limit: int | None = None
    # Defense parameters beyond the paper's defaults, by defense name (``make_defense``).
    defense_params: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    # Images for the strong white-box attacks and the audit (paper.strong), None: all.
    strong_limit: int | None = None
    # The certified section (paper.certified, experiment "certified"): the GDA models
    # certified at their training sigma, on how many test images, with which CERTIFY
    # parameters (certify.CertifyRun: n0, n, alpha), beside which minimal L2 attack.
    certified_models: tuple[str, ...] = ("cnn-gda", "cnn-brelu-gda", "cnn-gda-cohen")
    certify_limit: int | None = 100
    certify_params: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"n0": 100, "n": 10_000, "alpha": 0.001})
    certify_attack: str = "cw-l2"

    def seed_list(self, first: int) -> tuple[int, ...]:
        return tuple(first + k for k in range(self.seeds))


PAPER_ATTACKS = {
    "fgsm": {"eps": 0.1},
    "rand-fgsm": {"eps": 0.1, "alpha": 0.05},
    "fgsm-min": {"eps_step": 0.05, "eps_max": 1.0},  # the paper code's grid
    "deepfool": {"max_iter": 100, "overshoot": 0.02},
    "jsma": {"theta": 0.1, "gamma": 1.0},
    "cw-l2": {"confidence": 2.3},
}
#: The paper's models (``MODEL_SPECS`` less the certified section's own).
PAPER_MODELS = tuple(name for name in MODEL_SPECS if name != "cnn-gda-cohen")

QUICK_CW = {"confidence": 2.3, "binary_search_steps": 5, "max_iter": 100, "learning_rate": 0.05,
            "initial_const": 0.1}

ALL_EXPERIMENTS = ("table1", "figure3", "figure4", "table2", "table3", "table4", "figure1",
                   "strong", "certified")

PROFILES = {
    "quick": Profile(
        "quick", "the paper's grid scaled for a 2-core CPU, every model trained with 5 seeds "
        "(the black-box source included) and every claim judged over them: 8,000 training "
        "images; equal footing by processed samples (undefended models 11 epochs = 88,000 "
        "samples, FGSM-AT and VAT 4 epochs = 96,000, GDA 1 epoch of 11 passes = 88,000; "
        "early stopping off); 1,000 test images for curves, FGSM and the metrics; 500 for "
        "minimal FGSM and, on the first seed's ResNet, DeepFool, JSMA and C&W (200 on the "
        "other seeds' ResNets); eps 0.02 to 1 by 0.02; C&W with 5 binary-search steps of 100 "
        "Adam iterations (learning rate 0.05, initial c 0.1); on the first seed, AutoAttack "
        "(standard parameters) and FGSM at three eps (MNIST 0.1, 0.2, 0.3) and the audit at "
        "0.3 (convergence check at 2x APGD-CE's iterations) on 100 test images per defense; "
        "randomized smoothing of GDA + RELU, GDA + BRELU and a GDA model trained as Cohen et "
        "al. (sigma 0.25, 11 epochs) on 100 test images (n0 100, n 10,000, alpha 0.001) "
        "beside C&W on the same images",
        PAPER_MODELS, epochs=11, train_limit=8000, gda_epochs=1, test_limit=1000,
        expensive_limit=500, eps_grid="0.02:1:0.02",
        attack_params={**PAPER_ATTACKS, "cw-l2": QUICK_CW,
                       # the audit's convergence check at 2x (not 4x) APGD-CE's budget
                       "audit": {"convergence_factor": 2}},
        experiments=ALL_EXPERIMENTS, seeds=5, static_epochs=4, patience=11,
        seed_expensive_limit=200, strong_limit=100),
    "paper": Profile(
        "paper", "the paper's settings: every model up to 20 epochs with early stopping "
        "(patience 5: trained to convergence, the authors' schedule), 5 seeds, the full test "
        "set, eps 0.01 to 1 by 0.01, the attacks' paper parameters; meant for a GPU",
        PAPER_MODELS, epochs=20, train_limit=None, gda_epochs=20, test_limit=None,
        expensive_limit=None, eps_grid="0.01:1:0.01", attack_params=PAPER_ATTACKS,
        experiments=ALL_EXPERIMENTS, seeds=5),
    "demo": Profile(
        "demo", "a few-minute slice: an undefended CNN (3 epochs on 6,000 images) and a "
        "GDA+BRELU CNN (1 epoch, i.e. 11 passes, on the same images), white-box FGSM (eps 0.1) "
        "and DeepFool on 300 test images; randomized smoothing of the GDA+BRELU CNN at its "
        "sigma on 50 test images (n0 100, n 1,000, alpha 0.001) beside DeepFool on them",
        ("cnn", "cnn-brelu-gda"), epochs=3, train_limit=6000, gda_epochs=1, test_limit=300,
        expensive_limit=300, eps_grid="0.1", attack_params=PAPER_ATTACKS,
        experiments=("demo", "certified"), certified_models=("cnn-brelu-gda",),
        # 50 images: the stage took 99 s for 100 under load 4-9 (the same run's DeepFool on
        # the CNN took 56 s, against about 20 s in a 5-minute `make demo`): about 20 s here.
        certify_limit=50, certify_params={"n0": 100, "n": 1000, "alpha": 0.001},
        certify_attack="deepfool"),
}

# The paper authors' code settings (history of IBM's ART, commit 735ead0c0 / tag 0.1) at the
# quick profile's sizes and seeds; advbench.paper.authors.AUTHORS_SETTINGS lists each setting,
# and the ones not applied.
PROFILES["authors"] = dataclasses.replace(
    PROFILES["quick"], name="authors",
    description="the paper authors' code settings (ART history, commit 735ead0c0 / tag 0.1) "
    "at the quick profile's sizes and seeds: JSMA theta 1.0, C&W confidence 10, DeepFool "
    "without overshoot, FGSM curves 0.1 to 1 by 0.1, GDA noise drawn once per image and "
    "copy, FGSM adversarial training by a fresh model on clean + adversarial data; the "
    "section on the authors' code lists the settings not applied",
    eps_grid="0.1:1:0.1",
    attack_params={**PROFILES["quick"].attack_params,
                   "jsma": {**PAPER_ATTACKS["jsma"], "theta": 1.0},
                   "cw-l2": {**PROFILES["quick"].attack_params["cw-l2"], "confidence": 10.0},
                   "deepfool": {**PAPER_ATTACKS["deepfool"], "overshoot": 0.0}},
    defense_params={"gda": {"noise": "once"}, "fgsm-at": {"mode": "fresh"}})

# Per-data-set sizes of a profile where one size does not fit both (CIFAR-10's models cost
# several times MNIST's per sample); the name and experiments stay those of PROFILES.
DATASET_PROFILES: dict[tuple[str, str], Profile] = {
    ("cifar10", "quick"): dataclasses.replace(
        PROFILES["quick"],
        description="the paper's CIFAR-10 experiments (Figure 5, Table 5: the seven defended "
        "CNNs and the undefended ResNet as black-box source) scaled for a 2-core CPU, every "
        "model trained with 5 seeds: 6,000 training images (a CIFAR-10 sample costs about "
        "1.5x an MNIST one here); equal footing by processed samples (undefended 11 epochs = "
        "66,000 samples, FGSM-AT and VAT 4 epochs = 72,000, GDA 1 epoch of 11 passes = "
        "66,000; early stopping off); 500 test images for the curves and FGSM; 200 for "
        "DeepFool, JSMA and C&W on each seed's ResNet; eps 0.01 to 0.3 by 0.01 (the paper "
        "plots CIFAR-10 up to 0.3); C&W with 5 binary-search steps of 100 Adam iterations "
        "(learning rate 0.05, initial c 0.1); randomized smoothing of GDA + RELU, GDA + "
        "BRELU (sigma 0.05) and a GDA model trained as Cohen et al. (sigma 0.25) on 100 test "
        "images (n0 100, n 10,000, alpha 0.001) beside C&W on the same images",
        models=("cnn", "resnet", "cnn-feature-squeezing", "cnn-label-smoothing", "cnn-fgsm-at",
                "cnn-vat", "cnn-gda", "cnn-brelu-gda"),
        train_limit=6000, test_limit=500, expensive_limit=200, seed_expensive_limit=None,
        eps_grid="0.01:0.3:0.01", experiments=("figure4", "table4", "certified")),
}
# CIFAR-10 with the authors' code settings: the CIFAR-10 quick grid (Figure 5, Table 5) with
# the attack and defense settings of PROFILES["authors"] (the paper plots CIFAR-10 to 0.3).
DATASET_PROFILES[("cifar10", "authors")] = dataclasses.replace(
    DATASET_PROFILES[("cifar10", "quick")], name="authors",
    description=DATASET_PROFILES[("cifar10", "quick")].description + "; with the paper "
    "authors' code settings (ART history, commit 735ead0c0 / tag 0.1): JSMA theta 1.0, C&W "
    "confidence 10, DeepFool without overshoot, FGSM curves 0.1 to 0.3 by 0.1, GDA noise drawn "
    "once per image and copy, FGSM adversarial training by a fresh model on clean + "
    "adversarial data",
    eps_grid="0.1:0.3:0.1",
    attack_params={**PROFILES["authors"].attack_params,
                   "cw-l2": {**DATASET_PROFILES[("cifar10", "quick")].attack_params["cw-l2"],
                             "confidence": 10.0}},
    defense_params=PROFILES["authors"].defense_params)


def profile_for(dataset: str, name: str) -> Profile:
    """The profile ``name`` sized for ``dataset`` (KeyError for an unknown name)."""
    return DATASET_PROFILES.get((dataset, name)) or PROFILES[name]


DATASETS = ("mnist", "cifar10", "toy")
