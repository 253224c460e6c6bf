"""advbench certify against the reference algorithm of randomized smoothing on one model.

The reference is Cohen, Rosenfeld and Kolter's ``Smooth.certify`` (locuslab/smoothing,
code/core.py at 78a4d94): one image at a time in PyTorch, ``batch_size`` noisy copies per
forward pass, ``proportion_confint(nA, n, alpha=2 * alpha, method="beta")`` for pA's bound.
That repository has no license, so its lines are not copied here: ``reference_certify`` below
re-implements the same algorithm from the paper (Algorithm 1) in PyTorch, step for step, with
the two changes the current libraries force (noise drawn on the CPU instead of ``device=
"cuda"``; nothing else differs). The advbench model is ported to an equivalent PyTorch module
(logits must agree to 1e-4 on the chosen images before anything is timed).

Two processes, two environments: this script runs in advbench's (TensorFlow) environment,
exports the model's weights and the images, certifies with advbench, then runs itself with
``--reference`` in a PyTorch environment (``--torch-python``, e.g. a venv with
``pip install torch==2.13.0 numpy scipy statsmodels``) and compares:

    python bench/bench_certify.py --model mnist-cnn-gda.h5 --sigma 0.25 --limit 100 \\
        --n0 100 --n 10000 --torch-python /tmp/tv/bin/python

Certified accuracy at each radius must agree within the Monte Carlo spread (different noise
draws): the script prints the differences and the images/s of both, with the same thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the reference side (PyTorch environment) ------------------------------------------------
def torch_cnn(weights: dict):
    """The paper CNN (advbench.models.zoo.build_cnn, ReLU) as a torch module, NCHW, from the
    Keras weights (HWIO kernels; Flatten in NHWC order)."""
    import torch
    from torch import nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 64, 8, stride=2)
            self.conv2 = nn.Conv2d(64, 128, 6, stride=2)
            self.conv3 = nn.Conv2d(128, 128, 5)
            self.logits = nn.Linear(128, int(weights["logits/bias"].shape[0]))

        def forward(self, x):
            # Keras "same" padding for an 8x8 kernel, stride 2, on 28x28: 3 before, 3 after.
            x = torch.relu(self.conv1(nn.functional.pad(x, (3, 3, 3, 3))))
            x = torch.relu(self.conv2(x))
            x = torch.relu(self.conv3(x))
            x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens NHWC
            return self.logits(x)

    model = CNN()
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3"):
            layer = getattr(model, name)
            layer.weight.copy_(torch.from_numpy(weights[f"{name}/kernel"]).permute(3, 2, 0, 1))
            layer.bias.copy_(torch.from_numpy(weights[f"{name}/bias"]))
        model.logits.weight.copy_(torch.from_numpy(weights["logits/kernel"]).T)
        model.logits.bias.copy_(torch.from_numpy(weights["logits/bias"]))
    return model.eval()


def reference_certify(model, x, num_classes: int, sigma: float, n0: int, n: int, alpha: float,
                      batch_size: int):
    """Cohen et al.'s CERTIFY for one image x (C, H, W) as locuslab/smoothing runs it:
    selection counts from n0 draws, estimation counts from n fresh draws, each in batches of
    ``batch_size`` copies of x plus sigma * randn; Clopper-Pearson bound via statsmodels.
    Returns (class or -1, radius)."""
    import numpy as np
    import torch
    from scipy.stats import norm
    from statsmodels.stats.proportion import proportion_confint

    def counts_of(num: int) -> np.ndarray:
        counts = np.zeros(num_classes, dtype=int)
        with torch.no_grad():
            while num > 0:
                size = min(batch_size, num)
                num -= size
                batch = x.repeat((size, 1, 1, 1))
                noise = torch.randn_like(batch) * sigma
                counts += np.bincount(model(batch + noise).argmax(1).numpy(),
                                      minlength=num_classes)
        return counts

    top = int(counts_of(n0).argmax())
    n_a = int(counts_of(n)[top])
    p_lower = proportion_confint(n_a, n, alpha=2 * alpha, method="beta")[0]
    if p_lower < 0.5:
        return -1, 0.0
    return top, float(sigma * norm.ppf(p_lower))


def run_reference(args) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    exported = np.load(args.exported)
    weights = {k[2:]: exported[k] for k in exported.files if k.startswith("w:")}
    model = torch_cnn(weights)
    x = torch.from_numpy(exported["x"]).permute(0, 3, 1, 2).contiguous()
    logits = model(x).detach().numpy()
    gap = float(np.abs(logits - exported["logits"]).max())
    if gap > 1e-4:
        raise SystemExit(f"the PyTorch port's logits differ from Keras' by {gap:g} > 1e-4")
    num_classes = logits.shape[1]
    pred, radius = [], []
    started = time.perf_counter()
    for i in range(len(x)):
        c, r = reference_certify(model, x[i], num_classes, args.sigma, args.n0, args.n,
                                 args.alpha, args.batch_size)
        pred.append(c)
        radius.append(r)
    seconds = time.perf_counter() - started
    json.dump({"pred": pred, "radius": radius, "seconds": seconds, "logit_gap": gap,
               "torch": torch.__version__}, sys.stdout)


# -- the advbench side (TensorFlow environment) ----------------------------------------------
def certified_accuracy(pred, radius, y, radii=RADII) -> dict:
    import numpy as np

    pred, radius, y = map(np.asarray, (pred, radius, y))
    correct = pred == y
    return {f"{r:g}": float(np.mean(correct & (radius >= r))) for r in radii}


def run_advbench(args) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    __import__("advbench")  # its TensorFlow environment defaults, before TensorFlow loads
    import tensorflow as tf

    from advbench.run.artifacts import CERTIFICATION_SCHEMA, load_model, read_arrays
    from advbench.score.certify import CertifyRun, certify_split
    from advbench.models.zoo import predict_logits

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    model, meta = load_model(args.model)
    run = CertifyRun(model_path=args.model, dataset=meta["dataset"], limit=args.limit,
                     sigma=args.sigma, n0=args.n0, n=args.n, alpha=args.alpha,
                     batch_size=args.batch_size, seed=args.seed, data_dir=args.data_dir)
    x, y, indices = run.load()
    out = Path(args.workdir)
    out.mkdir(parents=True, exist_ok=True)
    weights = {f"w:{w.path}": np.asarray(w.numpy()) for w in model.weights}
    np.savez(out / "exported.npz", x=x, logits=predict_logits(model, x), **weights)
    log(f"advbench: {len(x)} images, sigma {args.sigma}, n0 {args.n0}, n {args.n}, "
        f"alpha {args.alpha}, batch {args.batch_size}, {args.threads} threads")
    started = time.perf_counter()
    path = certify_split(run, model, meta, out / "advbench.h5", overwrite=True,
                         samples=(x, y, indices))
    ours_s = time.perf_counter() - started
    _, arrays = read_arrays(path, CERTIFICATION_SCHEMA)
    ours = certified_accuracy(arrays["pred"], arrays["radius"], y)
    log(f"advbench: {ours_s:.1f} s, {len(x) / ours_s:.3g} images/s")
    reference = subprocess.run(
        [args.torch_python, __file__, "--reference", "--exported", str(out / "exported.npz"),
         "--sigma", str(args.sigma), "--n0", str(args.n0), "--n", str(args.n), "--alpha",
         str(args.alpha), "--batch-size", str(args.batch_size), "--threads", str(args.threads),
         "--seed", str(args.seed)], capture_output=True, text=True, check=False)
    if reference.returncode != 0:
        raise SystemExit(f"reference failed:\n{reference.stderr[-2000:]}")
    ref = json.loads(reference.stdout)
    theirs = certified_accuracy(ref["pred"], ref["radius"], y)
    # The spread of a certified accuracy p over N images from independent noise: each side
    # has standard deviation at most sqrt(p (1 - p) / N) (images are independent trials given
    # the images only through each image's own certification), so their difference about
    # sqrt(2 p (1 - p) / N); per image the certificates mostly agree, so it is far smaller.
    result = {
        "images": len(x), "sigma": args.sigma, "n0": args.n0, "n": args.n,
        "alpha": args.alpha, "batch_size": args.batch_size, "threads": args.threads,
        "logit_gap": ref["logit_gap"], "torch": ref["torch"], "tensorflow": tf.__version__,
        "advbench": {"seconds": round(ours_s, 2), "images_per_s": len(x) / ours_s,
                     "certified_accuracy": ours},
        "reference": {"seconds": round(ref["seconds"], 2),
                      "images_per_s": len(x) / ref["seconds"], "certified_accuracy": theirs},
        "speedup": ref["seconds"] / ours_s,
        "max_difference_points": max(100 * abs(ours[r] - theirs[r]) for r in ours),
        "same_class": float(np.mean(np.asarray(ref["pred"]) == arrays["pred"])),
    }
    print(json.dumps(result, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", action="store_true",
                        help="Run the PyTorch reference on --exported (the second process).")
    parser.add_argument("--exported", default=None)
    parser.add_argument("--model", default=None, help="advbench model artifact (paper CNN).")
    parser.add_argument("--data-dir", default=os.environ.get("ADVBENCH_DATA"))
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-python", default="python")
    parser.add_argument("--workdir", default="/tmp/bench-certify")
    args = parser.parse_args()
    run_reference(args) if args.reference else run_advbench(args)


if __name__ == "__main__":
    main()
