"""Gaussian data augmentation, the paper's GDA (Zantedeschi et al. 2017,
https://arxiv.org/abs/1707.06728, section 3.2)."""

from __future__ import annotations

import tensorflow as tf

from advbench.defenses.base import Defense


class GaussianAugmentation(Defense):
    """Gaussian data augmentation (the paper's GDA): each epoch sees every image plus
    ``copies`` noisy versions x + N(0, sigma^2), drawn on the fly.

    Args:
        sigma: noise standard deviation (paper: 0.3 MNIST, 0.05 CIFAR-10).
        copies: noisy copies per image per epoch (paper: 10).
        clip: clip x + noise to [0, 1] (the paper's authors did not; default off to match).
        noise: "fresh" (default: new noise every epoch) or "once": each (image, copy) gets
            the same noise every epoch, as the authors' code (ART history, commit 735ead0c0,
            ``train_with_noise.py``) drew its copies once and stacked them before training.
            Drawn per row from the training seed and the row's key, never stored.
    """

    name = "gda"

    def perturb_batch(self, x: tf.Tensor, noisy: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        if self.noise == "once":
            # One draw per row from (training seed, row key): the same noise for an image's
            # copy in every epoch, whatever batch it lands in.
            keys = tf.cast(noisy, tf.int32)
            noise = tf.map_fn(
                lambda key: tf.random.stateless_normal(tf.shape(x)[1:], seed=tf.stack(
                    [seed[0], key]), stddev=self.sigma, dtype=x.dtype),
                keys, fn_output_signature=x.dtype)
        else:
            noise = tf.random.stateless_normal(tf.shape(x), seed=seed, stddev=self.sigma)
        mask = tf.reshape(tf.cast(tf.cast(noisy, tf.bool), x.dtype), [-1, 1, 1, 1])
        x = x + mask * noise
        return tf.clip_by_value(x, 0.0, 1.0) if self.clip else x


class CohenGaussianAugmentation(GaussianAugmentation):
    """The base-classifier training of randomized smoothing (Cohen, Rosenfeld and Kolter 2019,
    https://arxiv.org/abs/1902.02918, section 4 and their ``train.py``): each epoch sees every
    image once, always noisy: one fresh copy x + N(0, sigma^2) per image per step, no clean
    pass, never clipped. Train at the sigma ``advbench certify`` will use.

    Args:
        sigma: noise standard deviation (Cohen et al.: 0.12, 0.25, 0.5 or 1.0; default 0.25).
    """

    name = "gda-cohen"

    def __post_init__(self) -> None:
        # One noisy pass per image (perturb_batch), none clean: no copies, never clipped.
        self.copies, self.clip, self.noise = 0, False, "fresh"

    def perturb_batch(self, x: tf.Tensor, noisy: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        # Every row of every step: the epoch's one pass over each image is its noisy copy.
        return x + tf.random.stateless_normal(tf.shape(x), seed=seed, stddev=self.sigma)
