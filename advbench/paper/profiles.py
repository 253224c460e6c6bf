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
}


@dataclasses.dataclass(frozen=True)
class Profile:
    """How much of the paper's grid to run, and at what size."""

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
    # Extra training seeds for the claims that hinge on small differences (Figure 3's
    # architectures): each is retrained and its white-box FGSM curve measured per seed.
    extra_seeds: tuple[int, ...] = ()
    # Images for the strong white-box attacks (AutoAttack; paper.strong), None: all.
    strong_limit: int | None = None


PAPER_ATTACKS = {
    "fgsm": {"eps": 0.1},
    "rand-fgsm": {"eps": 0.1, "alpha": 0.05},
    "fgsm-min": {"eps_step": 0.05, "eps_max": 1.0},  # the paper code's grid
    "deepfool": {"max_iter": 100, "overshoot": 0.02},
    "jsma": {"theta": 0.1, "gamma": 1.0},
    "cw-l2": {"confidence": 2.3},
}

ALL_EXPERIMENTS = ("table1", "figure3", "figure4", "table2", "table3", "table4", "figure1",
                   "strong")

PROFILES = {
    "quick": Profile(
        "quick", "the paper's grid scaled for a 2-core CPU: 2 epochs on 20,000 training "
        "images (GDA: 1 epoch, i.e. 11 passes), 1,000 test images for curves, FGSM and the "
        "metrics, 500 for DeepFool, JSMA, C&W and minimal FGSM, eps 0.02 to 1 by 0.02, C&W "
        "with 5 binary-search steps of 100 Adam iterations (learning rate 0.05, initial c 0.1); "
        "the four Figure 3 architectures also trained with seeds 1 and 2; AutoAttack (standard "
        "parameters) and FGSM at three eps (MNIST 0.1, 0.2, 0.3) on 200 test images per "
        "defense",
        tuple(MODEL_SPECS), epochs=2, train_limit=20000, gda_epochs=1, test_limit=1000,
        expensive_limit=500, eps_grid="0.02:1:0.02",
        attack_params={**PAPER_ATTACKS,
                       "cw-l2": {"confidence": 2.3, "binary_search_steps": 5, "max_iter": 100,
                                 "learning_rate": 0.05, "initial_const": 0.1}},
        experiments=ALL_EXPERIMENTS, extra_seeds=(1, 2), strong_limit=200),
    "paper": Profile(
        "paper", "the paper's settings: every model at 20 epochs (early stopping), the full "
        "test set, eps 0.01 to 1 by 0.01, the attacks' paper parameters; meant for a GPU",
        tuple(MODEL_SPECS), epochs=20, train_limit=None, gda_epochs=20, test_limit=None,
        expensive_limit=None, eps_grid="0.01:1:0.01", attack_params=PAPER_ATTACKS,
        experiments=ALL_EXPERIMENTS, extra_seeds=(1, 2)),
    "demo": Profile(
        "demo", "a few-minute slice: an undefended CNN (3 epochs on 6,000 images) and a "
        "GDA+BRELU CNN (1 epoch, i.e. 11 passes, on the same images), white-box FGSM (eps 0.1) "
        "and DeepFool on 300 test images",
        ("cnn", "cnn-brelu-gda"), epochs=3, train_limit=6000, gda_epochs=1, test_limit=300,
        expensive_limit=300, eps_grid="0.1", attack_params=PAPER_ATTACKS,
        experiments=("demo",)),
}

DATASETS = ("mnist", "cifar10", "toy")
