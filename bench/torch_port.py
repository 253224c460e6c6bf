"""A Keras model of advbench's zoo as an equivalent PyTorch module, for running the PyTorch
reference implementations (fra31/auto-attack, Foolbox 3) on the very same weights.

Only the layers advbench's builders use are ported (``advbench.models``: Conv2D with "same" or
"valid" padding, ReLU and bounded ReLU, Dense, Flatten, MaxPooling2D, Dropout, Add), through
the functional graph, so the CNN, ResNet, CIFAR CNN and MLP of the zoo all port; any other
layer raises ``ValueError`` naming it. The torch module takes NCHW float32 images in [0, 1]
(the layout the references expect) and gives the logits of the Keras model on the same images
in NHWC.

Two layout details keep the logits equal (``check_logits`` holds them to 1e-4):
- TensorFlow's "same" padding of a strided convolution puts the odd pixel after the image
  (pad_before = total // 2); torch's ``padding="same"`` refuses strides, so the padding is
  explicit, per side.
- Keras flattens NHWC (channel fastest); the port permutes NCHW back to NHWC before its
  Flatten, so the Dense kernels are used as Keras stores them (transposed only).

Usage (bench/ on the path, as the benchmarks run)::

    from torch_port import port_keras_model, check_logits
    net = port_keras_model(keras_model)          # torch.nn.Module, eval mode
    check_logits(keras_model, net, x_nhwc)       # max |difference| of logits, or ValueError
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: The largest absolute difference between Keras' and the port's logits ``check_logits``
#: accepts (float32 sums in a different order differ by ~1e-6 on these models).
LOGIT_TOLERANCE = 1e-4


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's "same" along one axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _activation(name: str) -> Any:
    import torch

    if name == "linear":
        return None
    if name == "relu":
        return torch.relu
    raise ValueError(f"activation {name!r} inside a layer is not ported; "
                     "supported: linear, relu")


def port_keras_model(model: Any) -> Any:
    """A ``torch.nn.Module`` computing ``model``'s logits on NCHW images.

    Args:
        model: a built Keras 3 functional model of advbench's zoo (float32 NHWC input).
    Returns:
        the module in eval mode, float32, on the CPU; input (N, C, H, W) float32, output
        (N, num_classes) float32 logits.
    Raises:
        ValueError: a layer type or setting the port does not know (named in the message).
    """
    import keras
    import torch
    from torch import nn

    class Ported(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.steps: list[tuple[str, list[int], int, Any]] = []
            self.params = nn.ModuleDict()
            self.input_id = id(model.inputs[0])
            self.output_id = id(model.outputs[0])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values = {self.input_id: x}
            for kind, inputs, output, fn in self.steps:
                args = [values[i] for i in inputs]
                values[output] = fn(*args)
            return values[self.output_id]

    net = Ported()

    def add(kind: str, layer: Any, fn: Any) -> None:
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        net.steps.append((kind, [id(t) for t in inputs], id(layer.output), fn))

    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        name = layer.name
        if type(layer) is keras.layers.Conv2D:
            if layer.data_format != "channels_last" or tuple(layer.dilation_rate) != (1, 1) \
                    or layer.groups != 1:
                raise ValueError(f"layer {name!r}: only channels_last, undilated, ungrouped "
                                 "Conv2D is ported")
            kernel, bias = (w.numpy() if hasattr(w, "numpy") else np.asarray(w)
                            for w in (layer.kernel, layer.bias))
            kh, kw, cin, cout = kernel.shape
            conv = nn.Conv2d(cin, cout, (kh, kw), stride=tuple(layer.strides), padding=0)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(kernel).permute(3, 2, 0, 1))
                conv.bias.copy_(torch.from_numpy(bias))
            net.params[name] = conv
            pad: tuple[int, ...] = (0, 0, 0, 0)
            if layer.padding == "same":
                _, h, w, _ = layer.input.shape
                top, bottom = _same_padding(h, kh, layer.strides[0])
                left, right = _same_padding(w, kw, layer.strides[1])
                pad = (left, right, top, bottom)
            act = _activation(layer.activation.__name__)

            def conv_fn(x, conv=conv, pad=pad, act=act):
                y = conv(nn.functional.pad(x, pad) if any(pad) else x)
                return act(y) if act else y
            add("conv", layer, conv_fn)
        elif type(layer) is keras.layers.Dense:
            kernel = np.asarray(layer.kernel.numpy())
            dense = nn.Linear(kernel.shape[0], kernel.shape[1])
            with torch.no_grad():
                dense.weight.copy_(torch.from_numpy(kernel).T)
                dense.bias.copy_(torch.from_numpy(np.asarray(layer.bias.numpy())))
            net.params[name] = dense
            act = _activation(layer.activation.__name__)
            add("dense", layer, lambda x, d=dense, act=act: act(d(x)) if act else d(x))
        elif type(layer) is keras.layers.ReLU:
            if layer.negative_slope != 0 or layer.threshold != 0:
                raise ValueError(f"layer {name!r}: only ReLU(max_value=...) is ported")
            top = layer.max_value
            if top is None:
                add("relu", layer, torch.relu)
            else:
                add("brelu", layer, lambda x, t=float(top): torch.clamp(x, 0.0, t))
        elif type(layer) is keras.layers.Activation:
            act = _activation(layer.activation.__name__)
            add("activation", layer, act if act else (lambda x: x))
        elif type(layer) is keras.layers.Flatten:
            # NCHW -> NHWC first: Keras' order, so Dense kernels need no row permutation.
            add("flatten", layer,
                lambda x: (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(len(x), -1))
        elif type(layer) is keras.layers.MaxPooling2D:
            if layer.padding != "valid":
                raise ValueError(f"layer {name!r}: only valid MaxPooling2D is ported")
            pool = nn.MaxPool2d(tuple(layer.pool_size), stride=tuple(layer.strides))
            add("maxpool", layer, pool)
        elif type(layer) is keras.layers.Dropout:
            add("dropout", layer, lambda x: x)  # inference: identity
        elif type(layer) is keras.layers.Add:
            add("add", layer, lambda *xs: sum(xs[1:], xs[0]))
        else:
            raise ValueError(f"layer {name!r} of type {type(layer).__name__} is not ported; "
                             "supported: Conv2D, Dense, ReLU, Activation, Flatten, "
                             "MaxPooling2D, Dropout, Add")
    return net.eval()


def check_logits(model: Any, net: Any, x: np.ndarray, *,
                 tolerance: float = LOGIT_TOLERANCE, batch_size: int = 500) -> float:
    """The largest absolute logit difference between the Keras ``model`` and its port ``net``
    on images ``x`` (float32 NHWC in [0, 1]).

    Raises:
        ValueError: the difference exceeds ``tolerance`` (the port is wrong), or the two
            predict different classes on any image.
    """
    import torch

    from advbench.models.zoo import predict_logits

    keras_logits = predict_logits(model, x, batch_size)
    with torch.no_grad():
        torch_logits = np.concatenate([
            net(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size].transpose(0, 3, 1, 2))))
            .numpy() for i in range(0, len(x), batch_size)])
    diff = float(np.abs(keras_logits - torch_logits).max())
    if diff > tolerance:
        raise ValueError(f"ported logits differ from Keras' by {diff:.3g} > {tolerance:g}")
    mismatch = int((keras_logits.argmax(1) != torch_logits.argmax(1)).sum())
    if mismatch:
        raise ValueError(f"ported model predicts another class on {mismatch} image(s)")
    return diff


def main() -> None:
    """Ports models given on the command line and checks their logits on real test images."""
    import argparse
    import os
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from advbench import data
    from advbench.run.artifacts import load_model

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("models", nargs="+", help="Keras model files (.h5 / .keras)")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--data-dir", default=os.environ.get("ADVBENCH_DATA"))
    args = parser.parse_args()
    x, _, _ = data.load(args.dataset, "test", data_dir=args.data_dir)
    x = x[:args.limit]
    for path in args.models:
        model, _ = load_model(path)
        diff = check_logits(model, port_keras_model(model), x)
        print(f"{path}: {len(x)} {args.dataset} test images, max |logit difference| "
              f"{diff:.2e} (tolerance {LOGIT_TOLERANCE:g})")


if __name__ == "__main__":
    main()
