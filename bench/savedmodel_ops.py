"""Regenerate advbench/models/savedmodel_ops.json: the ops a SavedModel may run.

The list is ``COMPUTE_OPS`` (pure computation, named by hand) and every op found in the
SavedModels (``model.export(path)``, Keras' default
``tf_saved_model`` format) of
  - every keras.applications architecture (``weights=None``, 10 classes, the smallest input
    each accepts: 32x32x3, 75x75x3 for the Inception ones, 71x71x3 for Xception),
  - every zoo architecture (both activations, with and without feature squeezing) and a
    foreign model adapted to advbench's convention (Rescaling, Normalization,
    LogProbabilities),
  - one model of Keras' standard layers and activations (recurrent, attention, normalisation,
    pooling, resizing, every built-in activation),
in every function of their graphs, saver functions included except the checkpoint ops
(``foreign.CHECKPOINT_OPS``, allowed in the saver's functions only). Any op that reads or
writes files, prints, talks to the network or runs Python would have to come from one of
these models to enter the list; the script refuses to write a list that has one of the ops
named in ``NEVER``.

By default it exports the smallest architecture of each keras.applications family (one
builder, different widths and depths: the same ops; the slow test in tests/test_foreign.py
checks every architecture against the list); ``--all`` exports them all.

Usage:
    python bench/savedmodel_ops.py [--all] [--only ResNet50,VGG16] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Ops that touch files, print, talk to the network or run Python: a sanity check on the
#: generated list (the loader refuses whatever is not listed, these included).
NEVER = frozenset({
    "WriteFile", "ReadFile", "MatchingFiles", "DeleteFile", "PrintV2", "Print", "PyFunc",
    "PyFuncStateless", "EagerPyFunc", "SaveDataset", "SaveDatasetV2", "SnapshotDataset",
    "SnapshotDatasetV2", "TFRecordDataset", "TFRecordDatasetV2", "CSVDataset", "CSVDatasetV2",
    "ImmutableConst", "DecodeProtoV2", "CreateSummaryFileWriter", "DatasetToTFRecord",
    "InitializeTableFromTextFileV2", "Save", "Restore", "SaveSlices", "RestoreSlice",
})
#: The smallest architecture of each family (else the first by name).
SMALLEST = frozenset({"ConvNeXtTiny", "DenseNet121", "EfficientNetB0", "EfficientNetV2B0",
                      "MobileNetV3Small", "NASNetMobile", "ResNet50", "ResNet50V2", "VGG16"})
#: Ops that only compute, named by hand: the elementwise math, comparisons, reductions, array,
#: image, control-flow, variable and stateless-random ops Keras' ops and layers emit, beyond
#: those the exported models happen to hold. None reads or writes a file, prints, talks to the
#: network or runs Python.
COMPUTE_OPS = frozenset("""
Abs Acos Acosh Add AddN AddV2 Asin Asinh Atan Atan2 Atanh Ceil ClipByValue Cos Cosh DivNoNan
Elu Erf Erfc Exp Expm1 Floor FloorDiv FloorMod IsFinite IsInf IsNan LeakyRelu Log Log1p
LogSoftmax Maximum Minimum Mod Mul MulNoNan Neg Pow RealDiv Reciprocal Relu Relu6 Rint Round
Rsqrt Selu Sigmoid Sign Sin Sinh Softmax Softplus Softsign Sqrt Square SquaredDifference Sub
Tan Tanh TruncateDiv TruncateMod Xdivy Xlog1py Xlogy
Equal NotEqual Greater GreaterEqual Less LessEqual LogicalAnd LogicalOr LogicalNot Select
SelectV2 Where
All Any ArgMax ArgMin Cumprod Cumsum EuclideanNorm Max Mean Min Prod Sum TopKV2
BroadcastArgs BroadcastTo Cast ConcatV2 Const EnsureShape ExpandDims Fill Gather GatherNd
GatherV2 Identity IdentityN MirrorPad OneHot OnesLike Pack Pad PadV2 Placeholder
PlaceholderWithDefault PreventGradient Range Rank Reshape ReverseV2 ScatterNd Shape ShapeN Size
Slice Split SplitV Squeeze StopGradient StridedSlice TensorScatterUpdate Tile Transpose Unpack
ZerosLike
BatchMatMul BatchMatMulV2 BatchMatMulV3 BiasAdd Conv2D Conv2DBackpropInput Conv3D
Conv3DBackpropInputV2 DepthwiseConv2dNative Einsum FusedBatchNorm FusedBatchNormV3 MatMul
AvgPool AvgPool3D MaxPool MaxPool3D MaxPoolV2 BatchToSpaceND DepthToSpace ResizeArea
ResizeBicubic ResizeBilinear ResizeNearestNeighbor SpaceToBatchND SpaceToDepth
If StatelessIf While StatelessWhile PartitionedCall StatefulPartitionedCall NoOp
AssignAddVariableOp AssignSubVariableOp AssignVariableOp DisableCopyOnRead ReadVariableOp
ResourceGather VarHandleOp VarIsInitializedOp
TensorListElementShape TensorListFromTensor TensorListGetItem TensorListLength
TensorListPopBack TensorListPushBack TensorListReserve TensorListSetItem TensorListStack
StatelessRandomGetKeyCounter StatelessRandomNormalV2 StatelessRandomUniformV2
""".split())
#: Input sizes smaller than the 32x32 the others accept: (height, width) by name prefix.
MIN_INPUT = {"InceptionV3": 75, "InceptionResNetV2": 75, "Xception": 71}


def application_names(every: bool = True) -> list[str]:
    """The architecture constructors of keras.applications (sorted): every one, or the
    smallest of each family of one builder (ConvNeXtTiny for ConvNeXt*, ...), which differ
    from the others of their family in widths and depths only."""
    import keras

    names = sorted(name for name in dir(keras.applications)
                   if name[0].isupper() and callable(getattr(keras.applications, name)))
    if every:
        return names
    families: dict[str, str] = {}
    for name in names:
        family = getattr(keras.applications, name).__module__
        if family not in families or name in SMALLEST:
            families[family] = name
    return sorted(families.values())


def build_application(name: str):
    """keras.applications.<name> with weights=None, 10 classes, its smallest input."""
    import keras

    size = MIN_INPUT.get(name, 32)
    return getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                             classes=10)


def zoo_models():
    """(name, model) for the zoo's architectures and an adapted foreign model."""
    import keras

    from advbench.models.zoo import ARCHITECTURES, build_model
    from advbench.models.adapt import Preprocessing, adapt

    for arch in sorted(ARCHITECTURES):
        for activation in ("relu", "brelu"):
            for squeeze in (None, 4):
                shape = (32, 32, 3) if arch == "cifar-cnn" else (28, 28, 1)
                yield (f"zoo-{arch}-{activation}-{squeeze}",
                       build_model(arch, shape, 10, activation=activation, squeeze_bits=squeeze))
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    probabilities = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    adapted = adapt(probabilities, (28, 28, 1), 10, outputs="probabilities",
                    preprocessing=Preprocessing(input_range=(0.0, 255.0), mean=(0.5,),
                                                std=(0.25,)), name="adapted")
    yield "adapted-foreign", adapted.model


def standard_layers_model():
    """One model running Keras' standard layers and every built-in activation."""
    import keras

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Normalization(mean=0.5, variance=0.25)(x)
    x = keras.layers.Resizing(12, 12)(x)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same")(x)
    x = keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.UpSampling2D(2)(x)
    x = keras.layers.ZeroPadding2D(1)(x)
    x = keras.layers.Cropping2D(1)(x)
    x = keras.layers.LayerNormalization()(x)
    x = keras.layers.GroupNormalization(groups=2)(x)
    x = keras.layers.SpatialDropout2D(0.1)(x)
    x = keras.layers.GaussianNoise(0.1)(x)
    x = keras.layers.Reshape((144, 8))(x)
    x = keras.layers.Conv1D(8, 3, padding="same")(x)
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    x = keras.layers.LSTM(8, return_sequences=True)(x)
    x = keras.layers.GRU(8, return_sequences=True)(x)
    x = keras.layers.SimpleRNN(8, return_sequences=True)(x)
    x = keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True))(x)
    pooled = [keras.layers.GlobalAveragePooling1D()(x), keras.layers.GlobalMaxPooling1D()(x)]
    x = keras.layers.Concatenate()(pooled)
    branches = []
    for activation in ("relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "softplus",
                       "softsign", "elu", "selu", "gelu", "silu", "hard_silu", "mish",
                       "leaky_relu", "log_softmax", "softmax", "exponential", "linear"):
        branches.append(keras.layers.Dense(4, activation=activation)(x))
    branches.append(keras.layers.PReLU()(keras.layers.Dense(4)(x)))
    branches.append(keras.layers.ELU()(keras.layers.Dense(4)(x)))
    branches.append(keras.layers.LeakyReLU()(keras.layers.Dense(4)(x)))
    x = keras.layers.Add()([keras.layers.Multiply()([branches[0], branches[1]]),
                            keras.layers.Subtract()([branches[2], branches[3]]),
                            keras.layers.Maximum()(branches[4:8]),
                            keras.layers.Minimum()(branches[8:12]),
                            keras.layers.Average()(branches[12:])])
    x = keras.layers.Dropout(0.5)(x)
    x = keras.layers.UnitNormalization()(x)
    outputs = keras.layers.Dense(10)(x)
    return keras.Model(inputs, outputs, name="standard_layers")


def all_models(only: set[str] | None = None, every: bool = False):
    """(name, builder) of every model the list is derived from."""
    for name in application_names(every or bool(only)):
        if not only or name in only:
            yield name, lambda name=name: build_application(name)
    if not only or "zoo" in only:
        for name, model in zoo_models():
            yield name, lambda model=model: model
    if not only or "standard" in only:
        yield "standard-layers", standard_layers_model


def exported_ops(model, folder: Path) -> set[str]:
    """The ops of ``model.export(folder)``, checkpoint ops excluded where they are allowed
    (the saver's functions); raises if a checkpoint op is anywhere else."""
    from advbench.models.foreign import (CHECKPOINT_OPS, ops_by_function,
                                         read_savedmodel_proto)

    model.export(str(folder), verbose=False)
    found: set[str] = set()
    for graph in read_savedmodel_proto(folder).meta_graphs:
        functions, saver = ops_by_function(graph)
        for function, ops in functions.items():
            if function not in saver and ops & CHECKPOINT_OPS:
                raise RuntimeError(f"{folder}: checkpoint ops {sorted(ops & CHECKPOINT_OPS)} in "
                                   f"{function}, outside the saver")
            found |= ops - CHECKPOINT_OPS if function in saver else ops
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated names (keras.applications names, "
                        "'zoo', 'standard'); the output is then not written unless --out")
    parser.add_argument("--all", action="store_true", help="every keras.applications "
                        "architecture, not only the smallest of each family (hours on two "
                        "cores; the slow test checks them all against the list)")
    parser.add_argument("--out", type=Path, help="where to write the list (default: the "
                        "package's savedmodel_ops.json when every model was exported)")
    args = parser.parse_args(argv)
    import keras
    import tensorflow as tf

    from advbench.models.foreign import ALLOWED_OPS_FILE

    only = set(args.only.split(",")) if args.only else None
    sources: dict[str, list[str]] = {}
    ops: set[str] = set()
    for name, build in all_models(only, args.all):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="savedmodel-ops-") as tmp:
            keras.backend.clear_session()
            model_ops = exported_ops(build(), Path(tmp) / "model")
        new = sorted(model_ops - ops)
        ops |= model_ops
        sources[name] = new
        print(f"{name}: {len(model_ops)} ops, {len(new)} new ({time.perf_counter() - start:.1f} s)"
              + (f": {', '.join(new)}" if new else ""), flush=True)
    unknown = sorted(op for op in COMPUTE_OPS if not hasattr(tf.raw_ops, op))
    if unknown:
        print(f"refused: COMPUTE_OPS names ops TensorFlow does not have: {unknown}",
              file=sys.stderr)
        return 1
    ops |= COMPUTE_OPS
    bad = sorted(ops & NEVER)
    if bad:
        print(f"refused: the models use {bad}", file=sys.stderr)
        return 1
    out = args.out or (None if only else ALLOWED_OPS_FILE)
    if out is None:
        print(f"{len(ops)} ops (not written: pass --out with --only)")
        return 0
    document = {
        "about": "Ops advbench runs in a SavedModel; generated by bench/savedmodel_ops.py: its "
                 "COMPUTE_OPS and the ops of the SavedModels named in 'models'. Checkpoint ops "
                 "(SaveV2, RestoreV2, MergeV2Checkpoints) are allowed in the saver's functions "
                 "only and are not listed.",
        "tensorflow": tf.__version__, "keras": keras.__version__,
        "models": sorted(sources),
        "ops": sorted(ops),
    }
    out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"{len(ops)} ops -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
