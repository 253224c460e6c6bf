"""Model files advbench did not write: Keras 3 ``.keras``, legacy Keras ``.h5`` full models and
TensorFlow SavedModel directories, loaded without running code from the file.

The kind is read from the content (a zip with ``config.json``; an HDF5 file with Keras'
``model_config`` attribute and none of advbench's ``schema``; a folder with
``saved_model.pb``), not from the suffix.

Safety. Keras models are rebuilt from their configuration in Keras' safe mode, after a scan
of the configuration that refuses ``Lambda`` layers (their Python bytecode is in the file)
and any class that is neither Keras' own nor given by the user: a user who trusts their own
layers passes ``custom_objects`` as an importable module name (``--custom-objects
my_package.layers``), whose import registers them; that import is the only code that runs,
and it is theirs. A SavedModel holds TensorFlow graphs rather than Python; every function of
its graph (nested ones included) must hold only ops of an allow-list of ops that compute
(``ALLOWED_OPS_FILE``), checked before anything of it runs. Sizes a file declares (zip
members, layer sizes against the stored weights) are checked against ``advbench.core.limits``
before anything is inflated or built. A SavedModel's graph can also allocate as it runs
(``tf.zeros([60000, 60000])`` is an allowed op): before advbench's process loads it, a child
process under a memory limit bounds every op output whose shape TensorFlow infers statically
(``check_savedmodel_memory``), then loads it and runs its first forward pass, for the shapes
computed from data or grown in loops that no static check bounds (``probe_savedmodel``).

What a SavedModel loses: it is a compiled graph, so advbench can run it and differentiate
through it (every attack works) but cannot train it (``train --model``), convert its
activations (``--act brelu``), export it, or give it the attack twin's faster gradient.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import h5py
import keras
import numpy as np

from advbench.core.errors import ArtifactError, ParameterError
from advbench.core.limits import (MAX_CONFIG_BYTES, MEMORY_BUDGET, GiB, check_zip_members,
                                  deferred_variables, read_zip_member, size_text)
from advbench.core.types import Model, PathLike
from advbench.models import MODEL_KINDS

if TYPE_CHECKING:
    from advbench.models.adapt import Preprocessing

FOREIGN_KINDS = ("keras", "h5", "savedmodel")
_LAMBDA_CLASSES = ("Lambda", "TFOpLambda", "SlicingOpLambda", "__lambda__")
_KERAS_MODULES = ("layers", "models", "initializers", "regularizers", "constraints",
                  "activations", "losses", "metrics", "optimizers", "dtype_policies",
                  "mixed_precision")
#: The ops a SavedModel may run: a JSON file beside this module (``ops``: op names), generated
#: by ``bench/savedmodel_ops.py`` from the SavedModels of every keras.applications
#: architecture, the zoo and Keras' standard layers (``model.export``). Ops that compute only
#: (math, nn, array, control flow, variables); any other op is refused.
ALLOWED_OPS_FILE = Path(__file__).with_name("savedmodel_ops.json")
#: Checkpoint ops every SavedModel has in its saver functions, and nowhere else.
CHECKPOINT_OPS = frozenset({"SaveV2", "RestoreV2", "MergeV2Checkpoints"})


def accepted_kinds() -> str:
    return ", ".join(MODEL_KINDS.values())


# -- what a file is ----------------------------------------------------------------------------
def detect_kind(path: PathLike) -> str:
    """The kind of model at ``path``: a key of ``MODEL_KINDS``, read from the content.

    Raises ArtifactError (one line) for anything else: another advbench artifact, a Keras
    weights-only file, a folder without ``saved_model.pb``, any other file.
    """
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"model {path} does not exist; pass {accepted_kinds()}, or a zoo "
                            "name")
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise ArtifactError(f"{path} is a folder without saved_model.pb; a model is "
                            f"{accepted_kinds()}")
    try:
        return _file_kind(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise ArtifactError(f"{path} is not a readable {'HDF5' if h5py.is_hdf5(path) else 'zip'} "
                            f"file ({e.__class__.__name__}); it is truncated or corrupt: delete "
                            "it and run the stage again") from None


def _file_kind(path: Path) -> str:
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if "config.json" in archive.namelist():
                return "keras"
    elif h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            schema = f.attrs.get("schema")
            schema = schema.decode() if isinstance(schema, bytes) else schema
            if schema == "advbench.model":
                return "advbench"
            if schema:
                raise ArtifactError(f"{path} is a {schema!r} artifact, not a model; pass "
                                    f"{accepted_kinds()}")
            if "model_config" in f.attrs:
                return "h5"
            # Keras 2 weights (layer_names / model_weights) or Keras 3 ones (layers + vars).
            if "layer_names" in f.attrs or "model_weights" in f or {"layers", "vars"} <= set(f):
                raise ArtifactError(f"{path} holds Keras weights without the architecture; "
                                    "save the whole model (model.save('model.keras'))")
    raise ArtifactError(f"{path} is not a model file advbench reads; pass {accepted_kinds()}")


def content_hash(path: PathLike) -> str:
    """SHA-256 of a file's bytes, or of a folder's files (relative paths and bytes, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# -- custom objects ----------------------------------------------------------------------------
def load_custom_objects(module_name: str | None) -> dict:
    """Import the user's module of custom Keras objects (its import registers them) and
    return its Keras classes by name. The one place where code of the user's runs."""
    if not module_name:
        return {}
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or any error raised by the module's own code
        raise ParameterError(f"--custom-objects {module_name}: cannot import it "
                             f"({e.__class__.__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); "
                             "pass an importable module (on PYTHONPATH) that defines your "
                             "layers") from None
    bases = (keras.layers.Layer, keras.Model, keras.losses.Loss, keras.metrics.Metric,
             keras.initializers.Initializer, keras.regularizers.Regularizer,
             keras.constraints.Constraint)
    return {name: obj for name, obj in vars(module).items()
            if isinstance(obj, type) and issubclass(obj, bases)}


# -- the configuration scan ----------------------------------------------------------------------
def _builtin(name: str) -> bool:
    if name in ("Functional", "Sequential", "Model"):
        return True
    return any(hasattr(getattr(keras, module, None), name) for module in _KERAS_MODULES)


def check_config_safe(config: Any, path: PathLike, custom_objects: dict | None = None) -> None:
    """ArtifactError naming the first layer or object that would run code from the file (a
    Lambda) or that is neither Keras' own nor in ``custom_objects`` / Keras' registry."""
    custom_objects = custom_objects or {}

    def known_custom(cls, registered):
        return cls in custom_objects or (registered and keras.saving.get_registered_object(
            registered, custom_objects) is not None)

    def check(obj):
        cls, module = obj["class_name"], obj.get("module")
        inner = obj.get("config")
        name = (inner.get("name") if isinstance(inner, dict) else None) or obj.get("name") or cls
        if cls in _LAMBDA_CLASSES:
            raise ArtifactError(f"{path}: layer {name!r} is a {cls} layer, whose code is stored "
                                "in the file and never run by advbench; replace it by a "
                                "registered custom layer and pass --custom-objects MODULE")
        if cls.startswith("__") and cls.endswith("__"):
            return  # serialized tensors, arrays and type specs: data, not code
        if known_custom(cls, obj.get("registered_name")):
            return
        if module == "builtins" and cls == "function":
            if isinstance(inner, str) and _builtin(inner):
                return
            cls, module = f"function {inner!r}", "an unknown module"
        elif module is None and _builtin(cls):
            return
        elif module and (module == "keras" or module.startswith("keras.")):
            return
        raise ArtifactError(f"{path}: layer {name!r} uses {cls} from "
                            f"{module or 'an unknown module'}, which is not Keras' own; if you "
                            "trust it, pass --custom-objects MODULE (your module that defines it)")

    def walk(value):
        if isinstance(value, dict):
            if isinstance(value.get("class_name"), str) and "config" in value:
                check(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(config)


def read_keras_config(path: PathLike, kind: str) -> dict:
    """The model configuration stored in a .keras or legacy .h5 file (JSON, no code)."""
    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as archive:
                # Sizes declared in the zip directory, checked before anything is inflated.
                check_zip_members(path, archive, {"config.json": MAX_CONFIG_BYTES},
                                  error=ArtifactError)
                return json.loads(read_zip_member(path, archive, "config.json",
                                                  MAX_CONFIG_BYTES, error=ArtifactError))
        with h5py.File(path, "r") as f:
            text = f.attrs["model_config"]
        return json.loads(text.decode() if isinstance(text, bytes) else text)
    except ArtifactError:
        raise
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as e:
        raise ArtifactError(f"{path}: cannot read its model configuration "
                            f"({e.__class__.__name__}); save the model again") from None


def stored_weight_bytes(path: Path, kind: str) -> int:
    """The bytes a .keras file's ``model.weights.h5`` member or a legacy .h5 file holds (its
    size: Keras stores weights uncompressed)."""
    if kind == "keras":
        with zipfile.ZipFile(path) as archive:
            return sum(i.file_size for i in archive.infolist() if i.filename.endswith(".h5"))
    return path.stat().st_size


def declared_weight_bytes(path: Path, kind: str) -> int:
    """The bytes the weight arrays of a .keras file's weights member or of a legacy .h5 file
    declare (their shapes and dtypes, from the HDF5 headers; nothing is read)."""
    def total(f: h5py.File) -> int:
        found = []
        f.visititems(lambda _, obj: found.append(math.prod(obj.shape) * obj.dtype.itemsize)
                     if isinstance(obj, h5py.Dataset) else None)
        return sum(found)

    if kind == "h5":
        with h5py.File(path, "r") as f:
            return total(f)
    with zipfile.ZipFile(path) as archive:
        count = 0
        for name in archive.namelist():
            if name.endswith(".h5"):
                with archive.open(name) as member, h5py.File(member, "r") as f:
                    count += total(f)
        return count


def check_declared_weights(path: Path, kind: str, config: Any, custom_objects: dict) -> None:
    """ArtifactError (one line) when the architecture in ``config`` needs more weight bytes
    than the file stores or than ``budget.MEMORY_BUDGET``: the model is built with deferred
    variables (shapes, no memory), so a Dense(2,700,000) in a 30 KB file is refused before
    anything of its size is allocated. A config that cannot be built is refused with Keras'
    own message."""
    if not isinstance(config, dict):
        raise ArtifactError(f"{path}: its model configuration is a JSON "
                            f"{type(config).__name__}, not a Keras model; save the model again")
    # The optimizer of a compiled model is not loaded (compile=False), nor built here.
    config = {key: value for key, value in config.items() if key != "compile_config"}
    try:
        with deferred_variables(restore_random=True), \
                keras.saving.custom_object_scope(custom_objects):
            if kind == "keras":
                model = keras.saving.deserialize_keras_object(config, safe_mode=True)
            else:  # Keras' own reader of legacy .h5 files
                from keras.src.legacy.saving import saving_utils

                model = saving_utils.model_from_config(config, custom_objects)
            sizes = {layer.name: sum(math.prod(w.shape) * np.dtype(w.dtype).itemsize
                                     for w in layer.weights)
                     for layer in getattr(model, "layers", [])}
    except Exception as e:
        if "stateless scope" in str(e):
            return  # a (custom) layer that cannot defer its variables: Keras loads it as usual
        # What Keras' loader would say; it is not run, as it would build the layers.
        raise ArtifactError(f"{path}: Keras cannot load it ({e.__class__.__name__}: "
                            f"{(str(e).splitlines() or [''])[0][:200]})") from None
    stored = stored_weight_bytes(path, kind)
    try:
        declared = declared_weight_bytes(path, kind)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{path}: its weights are not readable HDF5 "
                            f"({e.__class__.__name__}); save the model again") from None
    # Keras reads every stored array whole: their declared sizes, not the file's, would be
    # allocated (an HDF5 array of 10^12 elements takes no space until written).
    limit, what = min((stored, "the file stores"), (MEMORY_BUDGET, "advbench allows"))
    if declared > limit:
        raise ArtifactError(f"{path}: its weight arrays declare {size_text(declared)}, more "
                            f"than the {size_text(limit)} {what}; the file was edited or is "
                            "corrupt")
    if not sizes:
        return
    needed = sum(sizes.values())
    largest = max(sizes, key=lambda name: sizes[name])
    limit, what = min((stored, "the file stores"), (MEMORY_BUDGET, "advbench allows"))
    if needed > limit:
        raise ArtifactError(f"{path}: its configuration declares {size_text(needed)} of "
                            f"weights (layer {largest!r}: {size_text(sizes[largest])}), more "
                            f"than the {size_text(limit)} {what}; the file was edited or is "
                            "corrupt")


# -- loading -----------------------------------------------------------------------------------
def load_foreign(path: PathLike, kind: str | None = None,
                 custom_objects: str | dict | None = None,
                 model_output: str | None = None, probe: np.ndarray | None = None) -> Model:
    """A foreign model as a Keras model, as stored (outputs, preprocessing and all; see
    ``models.adapt`` for putting it into advbench's convention).

    Args:
        path: a .keras file, a legacy .h5 full-model file or a SavedModel directory.
        kind: its ``detect_kind`` (detected when None).
        custom_objects: a module name (see ``load_custom_objects``) or its classes by name.
        model_output: for a SavedModel, which of its endpoint's outputs holds the class
            scores: a key of the dict it returns, or a 0-based index (``output_0``,
            ``output_1``, ... name a list's entries, as its ``serving_default`` signature
            does). Keras files pick theirs in ``models.adapt.select_output``.
        probe: for a SavedModel, images as its endpoint takes them for ``probe_savedmodel``
            (which runs before it loads; default: uniform ones).

    Returns a ``keras.Model``; for a SavedModel, one whose only layer after the input is a
    ``keras.layers.TFSMLayer`` on the SavedModel's ``serve`` (else ``serving_default``)
    endpoint. Raises ArtifactError on unsafe or unreadable files, or a SavedModel of several
    outputs without ``model_output``; ParameterError for a ``model_output`` it does not have.
    """
    path = Path(path)
    kind = kind or detect_kind(path)
    if isinstance(custom_objects, str) or custom_objects is None:
        custom_objects = load_custom_objects(custom_objects)
    importlib.import_module("advbench.models.layers")  # our layers in exported files
    if kind == "savedmodel":
        return _load_savedmodel(path, model_output, probe)
    if kind not in ("keras", "h5"):
        raise ArtifactError(f"{path} is {MODEL_KINDS.get(kind, kind)}, not a foreign model")
    config = read_keras_config(path, kind)
    check_config_safe(config, path, custom_objects)
    check_declared_weights(path, kind, config, custom_objects)
    suffix = ".keras" if kind == "keras" else ".h5"
    with tempfile.TemporaryDirectory() as tmp:
        # Keras picks its reader by the suffix; the kind was read from the content.
        target = path if path.suffix == suffix else Path(tmp) / f"model{suffix}"
        if target != path:
            os.symlink(path.resolve(), target)
        try:
            model = keras.saving.load_model(str(target), custom_objects=custom_objects,
                                            compile=False, safe_mode=True)
        except Exception as e:
            raise ArtifactError(f"{path}: Keras cannot load it ({e.__class__.__name__}: "
                                f"{(str(e).splitlines() or [''])[0][:200]})") from None
    if not isinstance(model, keras.Model):
        raise ArtifactError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def _load_savedmodel(path: Path, model_output: str | None = None,
                     probe: np.ndarray | None = None):
    check_savedmodel_safe(path)
    probe_savedmodel(path, probe)
    try:
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        endpoint = "serve" if hasattr(loaded, "serve") else "serving_default"
        if endpoint not in ("serve",) and endpoint not in loaded.signatures:
            raise ArtifactError(f"{path} has neither a 'serve' endpoint nor a "
                                "'serving_default' signature; export it with model.export()")
        del loaded
        layer = _SavedModelLayer(str(path), call_endpoint=endpoint, trainable=False,
                                 name="savedmodel")
        shape = _endpoint_input_shape(layer.call_endpoint_fn, path)
        inputs = keras.Input(shape=shape, name="image")
        # Traced on a symbolic input (nothing runs): the names of what the endpoint returns.
        layer.pick = _pick_output(path, _output_names(layer(inputs)), model_output)
        outputs = layer(inputs)
    except (ArtifactError, ParameterError):
        raise
    except Exception as e:
        raise ArtifactError(f"{path}: TensorFlow cannot load the SavedModel "
                            f"({e.__class__.__name__}: {(str(e).splitlines() or [''])[0][:200]})"
                            ) from None
    return keras.Model(inputs, outputs, name=path.name)


class _SavedModelLayer(keras.layers.TFSMLayer):
    """A SavedModel endpoint as a layer with one output tensor: the entry ``pick`` (a dict
    key or a list index; None: everything the endpoint returns, as it returns it, to read
    its names). Never saved."""

    pick: str | int | None = None

    def call(self, inputs, training=False, **kwargs):
        outputs = super().call(inputs, training=training, **kwargs)
        if self.pick is None:
            return outputs
        if isinstance(outputs, dict):
            return outputs[self.pick]
        if isinstance(outputs, (list, tuple)):
            return outputs[int(self.pick)]
        return outputs  # one tensor


def _output_names(outputs) -> tuple[list[str], bool]:
    """The names of what a SavedModel endpoint returns, and whether they are a dict's keys:
    the keys sorted (``tf.nest``'s order: the order the loaded dict comes in varies with
    what the process loaded before, so an index must not depend on it), else ``output_I``
    per list entry (as ``serving_default`` names them; one tensor is ``output_0``)."""
    if isinstance(outputs, dict):
        return sorted(str(k) for k in outputs), True
    count = len(outputs) if isinstance(outputs, (list, tuple)) else 1
    return [f"output_{i}" for i in range(count)], False


def _pick_output(path: Path, named: tuple[list[str], bool], choice: str | None) -> str | int:
    """Which entry of a SavedModel's outputs ``_SavedModelLayer`` returns (a dict key or a
    list index): its only one, or ``choice`` (a name or a 0-based index), with the errors
    of ``models.adapt.select_output``."""
    names, keyed = named
    if choice is None:
        if len(names) > 1:
            raise ArtifactError(f"{path.name} has {len(names)} outputs ({', '.join(names)}); "
                                "pick the class scores with --model-output NAME|INDEX")
        index = 0
    else:
        index = int(choice) if choice.isdigit() else (names.index(choice) if choice in names
                                                      else -1)
        if not 0 <= index < len(names):
            raise ParameterError(f"--model-output {choice}: {path.name} has no such output; "
                                 f"its outputs are "
                                 f"{', '.join(f'{i}: {n}' for i, n in enumerate(names))}")
    return names[index] if keyed else index


def _endpoint_input_shape(fn, path) -> tuple:
    """The per-image input shape of a SavedModel endpoint (one float image tensor)."""
    import tensorflow as tf

    specs = getattr(fn, "input_signature", None)
    if specs is None:
        args, kwargs = fn.structured_input_signature
        specs = list(args) + list(kwargs.values())
    specs = [s for s in tf.nest.flatten(specs) if isinstance(s, tf.TensorSpec)]
    if len(specs) != 1 or specs[0].shape.rank is None or specs[0].shape.rank < 3:
        raise ArtifactError(f"{path}: the SavedModel's endpoint takes {len(specs)} inputs "
                            f"{[str(s.shape) for s in specs]}; advbench needs one batch of "
                            "images")
    if not specs[0].dtype.is_floating:
        raise ArtifactError(f"{path}: the SavedModel's endpoint takes {specs[0].dtype.name} "
                            "images; advbench feeds float images (and takes gradients): export "
                            "it with a float32 input")
    return tuple(specs[0].shape[1:])


@functools.lru_cache(maxsize=1)
def allowed_ops() -> frozenset[str]:
    """The op names of ``ALLOWED_OPS_FILE`` (read without TensorFlow)."""
    return frozenset(json.loads(ALLOWED_OPS_FILE.read_text())["ops"])


def read_savedmodel_proto(path: PathLike) -> Any:
    """The ``SavedModel`` protocol buffer of a SavedModel folder (parsed, nothing run)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    except Exception as e:
        raise ArtifactError(f"{path}/saved_model.pb is not a readable SavedModel "
                            f"({e.__class__.__name__}); export the model again") from None
    return proto


#: The name ``ops_by_function`` gives the graph outside the function library.
TOP_LEVEL = "the top-level graph"


def ops_by_function(graph: Any) -> tuple[dict[str, set[str]], set[str]]:
    """Every function of a MetaGraphDef (the library's, nested ones included, and
    ``TOP_LEVEL``) -> the op names of its nodes; and the names of the saver's functions: those
    reachable from the saver's save and restore ops and from nothing loading or inference may
    run (signatures, NoOps, the object graph's functions)."""
    functions = {f.signature.name: f for f in graph.graph_def.library.function}
    ops = {name: {node.op for node in f.node_def} for name, f in functions.items()}
    ops[TOP_LEVEL] = {node.op for node in graph.graph_def.node}
    roots = [t.name for sig in graph.signature_def.values() for t in sig.outputs.values()]
    roots += [n.name for n in graph.graph_def.node if n.op == "NoOp"]
    runnable = _reachable_functions(graph, roots, list(graph.object_graph_def.concrete_functions))
    saver = _reachable_functions(graph, [graph.saver_def.save_tensor_name,
                                         graph.saver_def.restore_op_name], [])
    return ops, saver - runnable


def check_savedmodel_safe(path: PathLike) -> None:
    """ArtifactError (one line) naming the first op, in any function of the SavedModel's
    graphs, that is not in ``allowed_ops()`` (checkpoint ops ``CHECKPOINT_OPS`` are allowed in
    the saver's own functions only). Nothing of the SavedModel runs before this check."""
    allowed = allowed_ops()
    for graph in read_savedmodel_proto(path).meta_graphs:
        ops, saver = ops_by_function(graph)
        for function in sorted(ops):
            extra = CHECKPOINT_OPS if function in saver else frozenset()
            refused = sorted(ops[function] - allowed - extra)
            if refused:
                raise ArtifactError(
                    f"{path}: the SavedModel has op {refused[0]} (in {function}), which is not "
                    "among the ops advbench runs (computation only: no files, network, "
                    "printing or Python); export the model for inference only")


def check_savedmodel_memory(path: PathLike, limit: int = MEMORY_BUDGET) -> None:
    """ArtifactError (one line) naming the first op of the SavedModel's graphs whose output,
    as TensorFlow's shape inference sees it with one image per batch, takes more than
    ``limit`` bytes: a constant shape (``tf.zeros([60000, 60000])``), a ``Tile`` or
    ``BroadcastTo`` to a static size. Every function is imported into a graph (shape inference
    only: nothing runs) with its own declared input shapes; an unknown dimension (the batch,
    or one computed from data) counts as 1, so the bound holds for what the graph fixes, and
    ``probe_savedmodel`` covers the rest."""
    import tensorflow as tf
    from tensorflow.python.framework.function_def_to_graph import function_def_to_graph

    for meta_graph in read_savedmodel_proto(path).meta_graphs:
        outer = tf.Graph()
        try:
            with outer.as_default():
                tf.graph_util.import_graph_def(meta_graph.graph_def, name="")
                graphs = [(f.signature.name, function_def_to_graph(f))
                          for f in meta_graph.graph_def.library.function]
        except Exception as e:
            raise ArtifactError(f"{path}: TensorFlow cannot read the SavedModel's graph "
                                f"({e.__class__.__name__}: "
                                f"{(str(e).splitlines() or [''])[0][:200]})") from None
        for function, graph in [(TOP_LEVEL, outer), *graphs]:
            for op in graph.get_operations():
                for output in op.outputs:
                    if output.shape.rank is None or output.dtype in (tf.resource, tf.variant):
                        continue
                    dims = [1 if d is None else d for d in output.shape.as_list()]
                    nbytes = math.prod(dims) * (output.dtype.size if output.dtype != tf.string
                                                else 1)
                    if nbytes > limit:
                        raise ArtifactError(
                            f"{path}: the SavedModel's op {op.type} ({op.name} in {function}) "
                            f"makes a tensor of shape {tuple(output.shape.as_list())}, "
                            f"{size_text(nbytes)} for one image, more than the "
                            f"{size_text(limit)} advbench allows; refusing it")


#: The data segment (``RLIMIT_DATA``) of ``probe_savedmodel``'s child beside its weights:
#: Python, TensorFlow and a loaded keras.applications model take 0.65 to 0.7 GiB of it
#: (ResNet50, EfficientNetB0), which leaves the graph 1.3 GiB for ``PROBE_BATCH`` images.
PROBE_MEMORY = 2 * GiB
#: Bytes of the child's limit per byte of the SavedModel's variables on disk: the restored
#: weights, a transient copy while restoring, and activations that grow with the model. The
#: variables are bytes the file really holds, not sizes it declares.
PROBE_WEIGHT_FACTOR = 3


def probe_memory(path: PathLike) -> int:
    """The probe's limit for the SavedModel at ``path``: ``PROBE_MEMORY`` plus
    ``PROBE_WEIGHT_FACTOR`` times the size of its ``variables/`` folder (so a large real
    model, VGG19 or ConvNeXtXLarge, is not refused for its own weights)."""
    folder = Path(path) / "variables"
    stored = sum(f.stat().st_size for f in folder.iterdir() if f.is_file()) \
        if folder.is_dir() else 0
    return PROBE_MEMORY + PROBE_WEIGHT_FACTOR * stored
#: The images of ``probe_savedmodel``'s forward pass.
PROBE_BATCH = 8


def probe_savedmodel(path: PathLike, images: np.ndarray | None = None,
                     limit: int | None = None) -> float:
    """Check and run a SavedModel in a child process whose data segment is limited to
    ``limit`` bytes (``RLIMIT_DATA``; default ``probe_memory(path)``), before advbench's own
    process loads anything of it:
    ``check_savedmodel_memory`` (there: importing its graphs leaves traces in TensorFlow's
    state), then loading it (its init op runs) and one forward pass of its endpoint on the
    first ``PROBE_BATCH`` of ``images`` (N, H, W, C float32, as the endpoint takes them;
    None, or another shape: seeded uniform ones of the endpoint's shape). A graph that
    allocates without bound (a shape computed from the data, a loop that grows a list) fails
    there, not here. Returns the child's wall time in seconds.

    Raises ArtifactError (one line): ``check_savedmodel_memory``'s and
    ``_endpoint_input_shape``'s refusals as they are, and when the load or the forward pass
    fails for memory or the child is killed. A load that fails otherwise is left to the
    caller's own load, which says why. A graph whose allocation depends on the values of
    other images is not covered (one pass on these)."""
    import time

    limit = probe_memory(path) if limit is None else limit
    key = _probe_key(path, images, limit)
    if key in _PROBED:  # the same files, images and limit passed in this process already
        return _PROBED[key]
    with tempfile.TemporaryDirectory() as tmp:
        batch = Path(tmp) / "images.npy"
        if images is not None:
            np.save(batch, np.ascontiguousarray(images[:PROBE_BATCH], dtype=np.float32))
        # The child imports this advbench, wherever the caller's sys.path found it.
        package_root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
               "PYTHONPATH": os.pathsep.join(filter(None, [package_root,
                                                           os.environ.get("PYTHONPATH")]))}
        start = time.perf_counter()
        # The child sets its own limit (a preexec_fn is unsafe in a process with threads).
        child = subprocess.run([sys.executable, "-m", "advbench.models.foreign", str(path),
                                str(batch), str(int(limit))],
                               env=env, capture_output=True, text=True, errors="replace")
        seconds = time.perf_counter() - start
    lines = [line.strip() for line in child.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if child.returncode == _REFUSED and last.startswith(_REFUSAL):
        raise ArtifactError(last[len(_REFUSAL):])
    if child.returncode in (0, _UNLOADABLE):
        _PROBED[key] = seconds
        return seconds
    reason = (f"killed by signal {-child.returncode}" if child.returncode < 0
              else last[:200] or f"exit code {child.returncode}")
    raise ArtifactError(f"{path}: the SavedModel's first forward pass on "
                        f"{len(images[:PROBE_BATCH]) if images is not None else PROBE_BATCH} "
                        f"images failed in a process limited to {size_text(limit)} of "
                        f"memory ({reason}); refusing it: it allocates more than advbench "
                        "allows, or does not run on these images")


#: The probes passed in this process: (files, images, limit) -> the child's seconds. A run
#: opens one SavedModel more than once (evaluate, audit, the shards of one process); a file
#: changed since is probed again (its files' sizes and modification times are in the key).
_PROBED: dict[tuple, float] = {}


def _probe_key(path: PathLike, images: np.ndarray | None, limit: int) -> tuple:
    import hashlib

    root = Path(path).resolve()
    files = tuple(sorted((str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns)
                         for f in root.rglob("*") if f.is_file()))
    batch = None if images is None else hashlib.sha256(
        np.ascontiguousarray(images[:PROBE_BATCH], dtype=np.float32).tobytes()).hexdigest()
    return str(root), files, batch, int(limit)


# ``_probe_child``'s exit codes and the prefix of its refusal line.
_REFUSED, _UNLOADABLE, _REFUSAL = 2, 3, "advbench refusal: "


def _failure_line(e: BaseException) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [""]
    # TensorFlow's message has a header and a stack; say what failed to allocate.
    line = next((line for line in lines if "alloc" in line or "OOM" in line), lines[-1])
    return f"{e.__class__.__name__}: {line[:200]}"


def _out_of_memory(e: BaseException) -> bool:
    return isinstance(e, MemoryError) or "ResourceExhausted" in type(e).__name__ or any(
        word in str(e) for word in ("OOM", "alloc", "Cannot parse tensor"))


def _probe_child(path: str, batch: str, limit: int) -> int:
    """``probe_savedmodel``'s child: limits its data segment to ``limit`` bytes, then the
    static check, the load and one forward pass. Exit 0 when it ran; ``_REFUSED`` with the
    refusal on the last line of stderr; ``_UNLOADABLE`` when the load fails for another
    reason than memory; 1 (the error on the last line of stderr) when it failed."""
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    try:
        check_savedmodel_memory(path)
    except ArtifactError as e:
        print(f"{_REFUSAL}{e}", file=sys.stderr)
        return _REFUSED
    try:
        import tensorflow as tf

        loaded = tf.saved_model.load(path)
        endpoint = "serve" if hasattr(loaded, "serve") else "serving_default"
        del loaded
        layer = _SavedModelLayer(path, call_endpoint=endpoint, trainable=False)
        shape = _endpoint_input_shape(layer.call_endpoint_fn, Path(path))
    except ArtifactError as e:
        print(f"{_REFUSAL}{e}", file=sys.stderr)
        return _REFUSED
    except BaseException as e:  # MemoryError included
        print(_failure_line(e), file=sys.stderr)
        return 1 if _out_of_memory(e) else _UNLOADABLE
    try:
        images = np.load(batch, allow_pickle=False) if os.path.exists(batch) else None
        if images is None or tuple(images.shape[1:]) != shape:
            images = np.random.default_rng(0).uniform(0, 1, (PROBE_BATCH, *shape))
        layer(tf.constant(images, tf.float32))
    except BaseException as e:  # MemoryError included: report it, one line
        print(_failure_line(e), file=sys.stderr)
        return 1
    return 0


def _reachable_functions(graph, tensor_names, function_names) -> set[str]:
    """The function names (``TOP_LEVEL`` included when a top-level node is reached) reachable
    from top-level tensors and functions of a MetaGraphDef, through node inputs and
    function-valued attributes."""
    functions = {f.signature.name: f for f in graph.graph_def.library.function}
    nodes = {n.name: n for n in graph.graph_def.node}
    node_stack = [t.split(":")[0].lstrip("^") for t in tensor_names if t]
    fn_stack = list(function_names)
    seen_nodes: set[str] = set()
    seen_fns: set[str] = set()

    def callees(node):
        for attr in node.attr.values():
            if attr.HasField("func"):
                yield attr.func.name
            if attr.HasField("list"):
                yield from (f.name for f in attr.list.func)

    while node_stack:
        name = node_stack.pop()
        if name in seen_nodes or name not in nodes:
            continue
        seen_nodes.add(name)
        node = nodes[name]
        node_stack += [i.split(":")[0].lstrip("^") for i in node.input]
        fn_stack += list(callees(node))
    while fn_stack:
        fn = fn_stack.pop()
        if fn in seen_fns or fn not in functions:
            continue
        seen_fns.add(fn)
        for node in functions[fn].node_def:
            fn_stack += list(callees(node))
    return seen_fns | ({TOP_LEVEL} if seen_nodes else set())


# -- opening a foreign model for a stage ---------------------------------------------------------
def open_foreign(path: PathLike, image_shape: Sequence[int], num_classes: int, *,
                 preprocessing: Preprocessing | None = None, outputs: str = "auto",
                 custom_objects: str | None = None, probe: np.ndarray | None = None,
                 kind: str | None = None,
                 model_output: str | None = None) -> tuple[Model, dict[str, Any]]:
    """A foreign model file in advbench's convention, with the metadata stages record.

    Loads ``path`` (``load_foreign``) and adapts it (``models.adapt.adapt``) to images of
    ``image_shape`` in [0, 1] and ``num_classes`` logits; ``preprocessing`` None reads the
    input range from the model's own first layers (``models.adapt.read_input_scale``).

    Returns (model, metadata): ``model_kind``, ``source_path`` (absolute), ``source_hash``
    (``content_hash`` of the file or folder), ``preprocessing`` (as fed), ``input_scale``
    (where it came from: model, flags or default, and what the model reads), ``model_output``
    (when picked), ``outputs`` (how the
    outputs were read), ``notes`` (what was done, one sentence each), ``zoo_name`` (the file
    name) and ``content_hash``: the model's identity for white-box / black-box, a digest of
    the source hash and of everything that changes the logits (preprocessing, outputs,
    layout), so that the same file read the same way is the same model.
    """
    from advbench.models.adapt import adapt

    path = Path(path)
    kind = kind or detect_kind(path)
    saved = kind == "savedmodel"
    # A SavedModel picks among its endpoint's outputs as it loads (its wrapper has one).
    loaded = load_foreign(path, kind, custom_objects, model_output=model_output if saved else None,
                          probe=_fed(probe, preprocessing) if saved else None)
    adapted = adapt(loaded, image_shape, num_classes, preprocessing=preprocessing, outputs=outputs,
                    probe=probe, name=path.name, model_output=None if saved else model_output)
    source_hash = content_hash(path)
    reading = {"preprocessing": adapted.preprocessing.as_dict(), "outputs": adapted.outputs,
               "input_shape": list(image_shape), "num_classes": int(num_classes)}
    if model_output is not None:  # only then, so that older identities stay the same
        reading["model_output"] = model_output
    identity = hashlib.sha256(f"{source_hash}|{json.dumps(reading, sort_keys=True)}".encode())
    notes = list(adapted.notes)
    if saved:
        notes.append(f"{path.name}: a SavedModel: inference and gradients only (no training, "
                     "no --act brelu, no export, no attack twin)")
        if preprocessing is None:
            # A graph has no Rescaling/Normalization layers to read the range from.
            notes.append(f"{path.name}: a SavedModel is a graph without layers, so its input "
                         "range cannot be read: advbench feeds [0, 1]; if it expects 0..255 "
                         "or its own mean/std, pass --input-range (and --mean, --std)")
            adapted.input_scale["unread"] = "a SavedModel has no layers to read"
    meta = {
        "model_kind": kind, "source_path": str(path.resolve()), "source_hash": source_hash,
        **reading, "notes": notes, "zoo_name": path.name, "content_hash": identity.hexdigest(),
        "input_scale": adapted.input_scale,
    }
    return adapted.model, meta


def _fed(probe: np.ndarray | None, preprocessing: Preprocessing | None) -> np.ndarray | None:
    """``probe`` images in [0, 1] as a SavedModel's endpoint takes them (``preprocessing``
    applied), for ``probe_savedmodel``."""
    if probe is None or preprocessing is None:
        return probe
    low, high = preprocessing.input_range
    fed = (np.asarray(probe, np.float32) * (high - low) + low
           - np.asarray(preprocessing.mean, np.float32)) / np.asarray(preprocessing.std, np.float32)
    return fed.astype(np.float32)


def model_provenance(meta: dict) -> dict:
    """What a stage's artifact records about how its model was read: the kind and, for a
    foreign file, its path, content hash, preprocessing and outputs; for an advbench model
    trained from the user's architecture, that architecture's source."""
    keys = ("source_path", "source_hash", "preprocessing", "input_scale", "model_output",
            "outputs")
    out = {"kind": meta.get("model_kind", "advbench"), **{k: meta[k] for k in keys if k in meta}}
    if meta.get("source"):
        out["trained_from"] = meta["source"]
    return out


if __name__ == "__main__":  # probe_savedmodel's child process
    sys.exit(_probe_child(sys.argv[1], sys.argv[2], int(sys.argv[3])))
