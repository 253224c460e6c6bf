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
# TensorFlow's x86 wheels turn their oneDNN kernels on only for CPUs with AVX-512 VNNI, BF16 or
# AMX; elsewhere (AVX2 machines like CI's) convolutions and their gradients run on Eigen, and
# an attack step on the paper's MNIST CNN took 1.3-1.7x as long (docs/performance.md). Takes
# effect only when advbench is imported before TensorFlow; an explicit setting wins ("0" turns
# it off). Results differ from Eigen's in float32 rounding only.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
