"""advbench: a command-line benchmark for adversarial robustness of image classifiers.

Reproduces "Efficient Defenses Against Adversarial Attacks" (Zantedeschi, Nicolae, Rawat, 2017):
bounded ReLU and Gaussian data augmentation against FGSM, Random+FGSM, JSMA, DeepFool and
Carlini-Wagner L2, scored by accuracy, empirical robustness, training-set distance and loss
sensitivity.
"""

import os as _os

# Keep TensorFlow's C++ start-up chatter off the user's terminal; an explicit setting wins.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_os.environ.setdefault("KERAS_BACKEND", "tensorflow")

__version__ = "0.1.0"
