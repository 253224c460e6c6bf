"""Type aliases for the package's signatures. TensorFlow and Keras ship no type stubs that
mypy can use, so their objects are ``Any`` under names that say what is expected."""

from __future__ import annotations

import os
from typing import Any, Union

#: A file or folder path.
PathLike = Union[str, "os.PathLike[str]"]
#: A Keras model mapping float32 NHWC images in [0, 1] to logits (batch, classes).
Model = Any
#: A TensorFlow tensor (or anything ``tf.convert_to_tensor`` takes).
Tensor = Any
