"""The paper's published numbers (Zantedeschi et al., 2017), to print beside ours.

Accuracies in percent, as printed in the paper. Figures 3-5 are plots without tables; the
paper's claims, in its words, are in ``advbench.paper.claims``.
"""

from __future__ import annotations

# Table 1 (MNIST, FGSM eps 0.1): rows crafted on, columns tested on.
TABLE1_MODELS = ("cnn", "cnn-brelu", "resnet", "resnet-brelu")
TABLE1_LABELS = {"cnn": "CNN + RELU", "cnn-brelu": "CNN + BRELU", "resnet": "ResNet + RELU",
                 "resnet-brelu": "ResNet + BRELU"}
TABLE1 = {
    "cnn": {"cnn": 73.88, "cnn-brelu": 90.16, "resnet": 89.49, "resnet-brelu": 88.26},
    "cnn-brelu": {"cnn": 94.00, "cnn-brelu": 87.74, "resnet": 90.73, "resnet-brelu": 90.02},
    "resnet": {"cnn": 94.46, "cnn-brelu": 93.65, "resnet": 61.88, "resnet-brelu": 75.94},
    "resnet-brelu": {"cnn": 94.21, "cnn-brelu": 93.91, "resnet": 78.70, "resnet-brelu": 58.51},
}

# The defended CNNs of Tables 2-5, by advbench zoo name, in the paper's row order.
DEFENSE_MODELS = ("cnn", "cnn-feature-squeezing", "cnn-label-smoothing", "cnn-fgsm-at",
                  "cnn-vat", "cnn-gda", "cnn-brelu-gda")
DEFENSE_LABELS = {
    "cnn": "CNN (no defense)", "cnn-feature-squeezing": "Feature squeezing",
    "cnn-label-smoothing": "Label smoothing", "cnn-fgsm-at": "FGSM adversarial training",
    "cnn-vat": "VAT", "cnn-gda": "GDA + RELU", "cnn-brelu-gda": "GDA + BRELU",
}

# Table 2 (MNIST, white-box minimal FGSM): accuracy %, robustness, training-set distance.
TABLE2 = {
    "cnn": (52.07, 0.202, 3.90),
    "cnn-feature-squeezing": (35.61, 0.143, 3.01),
    "cnn-label-smoothing": (37.06, 0.152, 3.18),
    "cnn-fgsm-at": (56.44, 0.226, 4.33),
    "cnn-vat": (73.32, 0.308, 6.64),
    "cnn-gda": (73.96, 0.440, 10.36),
    "cnn-brelu-gda": (69.56, 0.471, 9.31),
}

# Table 3 (MNIST): local loss sensitivity.
TABLE3 = {
    "cnn": 0.0609, "cnn-feature-squeezing": 0.1215, "cnn-label-smoothing": 0.2289,
    "cnn-fgsm-at": 0.0748, "cnn-vat": 0.0741, "cnn-gda": 0.0244, "cnn-brelu-gda": 0.0753,
}

# Tables 4 (MNIST) and 5 (CIFAR-10): black-box accuracy %, crafted on the undefended ResNet.
BLACKBOX_ATTACKS = ("fgsm", "rand-fgsm", "deepfool", "jsma", "cw-l2")
BLACKBOX_LABELS = {"fgsm": "FGSM", "rand-fgsm": "Rand + FGSM", "deepfool": "DeepFool",
                   "jsma": "JSMA", "cw-l2": "C&W"}
TABLE4 = {
    "cnn": (94.46, 40.70, 92.95, 97.95, 93.10),
    "cnn-feature-squeezing": (96.31, 91.09, 96.68, 97.48, 96.75),
    "cnn-label-smoothing": (86.79, 20.28, 84.58, 95.86, 84.81),
    "cnn-fgsm-at": (91.86, 49.77, 85.91, 98.62, 97.71),
    "cnn-vat": (97.53, 74.35, 96.03, 98.26, 96.11),
    "cnn-gda": (98.47, 80.25, 97.84, 98.96, 97.87),
    "cnn-brelu-gda": (98.08, 75.50, 98.00, 98.88, 98.03),
}
TABLE5 = {
    "cnn": (51.55, 57.22, 77.76, 76.85, 77.79),
    "cnn-feature-squeezing": (52.98, 61.83, 73.82, 73.28, 73.75),
    "cnn-label-smoothing": (49.90, 56.68, 75.80, 74.78, 75.66),
    "cnn-fgsm-at": (51.94, 63.25, 71.17, 70.48, 71.02),
    "cnn-vat": (44.16, 56.47, 68.94, 68.21, 68.47),
    "cnn-gda": (59.96, 71.93, 76.80, 76.45, 76.61),
    "cnn-brelu-gda": (55.65, 69.43, 74.97, 74.73, 74.78),
}
