"""The gradient-masking audit: the sanity checks a reviewer runs on a robustness claim, each
with its evidence and a verdict (``pass`` / ``warn`` / ``fail``).

Sources: Carlini, Athalye, Papernot, Brendel, Rauber, Tsipras, Goodfellow, Madry and
Kurakin, "On Evaluating Adversarial Robustness" (2019, https://arxiv.org/abs/1902.06705),
Sections 4-5 and its checklist; Athalye, Carlini and Wagner, "Obfuscated Gradients Give a
False Sense of Security" (ICML 2018, https://arxiv.org/abs/1802.00420), Section 3.1 (the
signs of masked gradients); Croce and Hein, "Reliable evaluation of adversarial robustness
with an ensemble of diverse parameter-free attacks" (ICML 2020,
https://arxiv.org/abs/2003.01690), for APGD, Square as the gradient-free check, logits and
the checks of their ``checks.py``.

The eight checks (names in ``advbench.score.AUDIT_CHECKS``) run on one sample of a split at
one eps and norm. Every attack is the project's own, built through the registry
(``attacks.make_attack``); the audit only combines their per-sample results. Accuracies are
*robust* accuracies: the fraction of samples the model classifies correctly both clean and
under the attack (AutoAttack's convention), so a misclassified sample never counts as robust.

A check compares two numbers that a sound evaluation orders one way; its *violation* is by
how much they are ordered the other way (a fraction of the samples). It fails when the
violation exceeds its threshold, warns above half of it, and passes otherwise: half the
threshold absorbs the few samples two attacks disagree on by chance.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import tensorflow as tf

from advbench import __version__
from advbench.attacks import make_attack
from advbench.attacks.norms import NORMS
from advbench.core.checks import check_int, check_range, check_seed
from advbench.core.errors import ArtifactError, ParameterError
from advbench.core.files import output_lock
from advbench.core.ops import logit_margin
from advbench.core.progress import Progress
from advbench.core.types import Model, PathLike
from advbench.models import ARCHITECTURE_BUILDERS
from advbench.models.adapt import looks_like_probabilities
from advbench.models.zoo import forward_function, predict_logits
from advbench.run import outputs
from advbench.run.artifacts import AUDIT_SCHEMA, jsonable, read_arrays, write_arrays
from advbench.run.curves import sweep
from advbench.run.runner import attack_arrays, batches
from advbench.score import AUDIT_CHECKS, AUDIT_DEFAULTS, AUDIT_PARAMS, VERDICTS

#: The checks by number (1-8), as issue 10 and the docs number them.
CHECK_NUMBERS: dict[str, int] = {name: i for i, name in enumerate(AUDIT_CHECKS, start=1)}
#: Two forward passes of a deterministic model agree to float32 rounding; a larger relative
#: difference (max |a - b| / (1 + max |a|)) is randomness in the model.
DETERMINISM_TOLERANCE = 1e-5


def _default(name: str) -> Any:
    """A setting's default, from the TensorFlow-free table the CLI's --help shows."""
    return AUDIT_DEFAULTS[name]


@dataclasses.dataclass(kw_only=True)
class AuditSettings:
    """The attack budgets and thresholds of an audit (every one a CLI flag).

    Thresholds (fractions of the audited samples; a check fails above its threshold and
    warns above half of it):
        tolerance: by how much an attack expected to be weaker may beat the stronger one
            (checks 2, 3, 7), accuracy may rise along an eps curve (5), and more iterations
            and restarts may lower APGD's accuracy (8). Default 0.02.
        square_lead: the fraction of samples Square fools that every gradient attack
            missed (6). Default 0.05.
        min_unbounded_success: the success rate, among correctly classified samples, that
            the unbounded attack must reach (4); the violation is 1 - success. Default 0.99.
        max_bad_gradients: the fraction of samples whose input gradient (of the logit
            margin) may be zero or not finite (1). Default 0.1.

    Budgets:
        pgd_steps: PGD's steps (step size 2.5 eps / steps, Madry et al.'s rule; random
            start). Default 40, advbench's PGD default.
        n_iter: APGD-CE's iterations. Default 100 (AutoAttack's).
        convergence_factor: the convergence run (8) is APGD-CE with ``convergence_factor``
            times the iterations and as many restarts. Default 4.
        square_queries: Square's queries per sample. Default 5000 (AutoAttack's).
        curve_points: eps values of the curves (5): eps * k / curve_points, k = 1..points,
            beside eps 0. Default 5.
        unbounded_eps: the eps of check 4; None takes the whole image box: 1 (L-inf) or
            sqrt(pixels x channels) (L2).
        noise_draws: random perturbations per sample (7); a sample survives noise when all
            draws leave it correct. Default 10.
        surrogate_epochs, surrogate_limit, surrogate_architecture: the surrogate trained
            for check 3 when none is given: 2 epochs on a class-balanced 5,000 training
            images of the same data set, the zoo's "cnn".
    """

    tolerance: float = _default("tolerance")
    square_lead: float = _default("square_lead")
    min_unbounded_success: float = _default("min_unbounded_success")
    max_bad_gradients: float = _default("max_bad_gradients")
    pgd_steps: int = _default("pgd_steps")
    n_iter: int = _default("n_iter")
    convergence_factor: int = _default("convergence_factor")
    square_queries: int = _default("square_queries")
    curve_points: int = _default("curve_points")
    unbounded_eps: float | None = _default("unbounded_eps")
    noise_draws: int = _default("noise_draws")
    surrogate_epochs: int = _default("surrogate_epochs")
    surrogate_limit: int = _default("surrogate_limit")
    surrogate_architecture: str = _default("surrogate_architecture")

    def validate(self) -> None:
        """ParameterError naming the setting unless every value can run (the bounds of its
        declaration, ``advbench.score.AUDIT_PARAMS``)."""
        for param in AUDIT_PARAMS:
            param.check(getattr(self, param.name), param.name.replace("_", "-"))
        if self.surrogate_architecture not in ARCHITECTURE_BUILDERS:
            raise ParameterError(f"surrogate-architecture must be one of "
                                 f"{', '.join(ARCHITECTURE_BUILDERS)}, got "
                                 f"{self.surrogate_architecture!r}")


@dataclasses.dataclass
class AuditResult:
    """An audit's summary (JSON-ready: ``checks`` rows, ``attacks``, ``verdict``...) and
    per-sample arrays (``y``, ``indices``, ``pred_clean``, ``robust/<attack>``)."""

    summary: dict[str, Any]
    per_sample: dict[str, np.ndarray]


def parse_checks(text: str) -> tuple[str, ...]:
    """Check names from ``--checks``: comma-separated names or numbers 1-8, in the audit's
    order, each once. ParameterError naming the choices otherwise."""
    chosen = set()
    for item in (part.strip() for part in text.split(",")):
        if item.isdigit() and 1 <= int(item) <= len(AUDIT_CHECKS):
            chosen.add(list(AUDIT_CHECKS)[int(item) - 1])
        elif item in AUDIT_CHECKS:
            chosen.add(item)
        else:
            raise ParameterError(f"unknown check {item!r} in {text!r}; give names or numbers "
                                 f"1-{len(AUDIT_CHECKS)}: {', '.join(AUDIT_CHECKS)}")
    return tuple(name for name in AUDIT_CHECKS if name in chosen)


# Violations are differences of sample fractions: 0.86 - 0.85 is 0.010000000000000009 in
# floating point, which must not read as above a threshold of exactly 0.01.
_ROUNDING = 1e-9


def grade(violation: float, threshold: float) -> str:
    """"fail" above ``threshold``, "warn" above half of it, else "pass" (NaN: "fail");
    a violation within 1e-9 of a bound is at it, not above."""
    if math.isnan(violation) or violation > threshold + _ROUNDING:
        return "fail"
    if violation > threshold / 2 + _ROUNDING:
        return "warn"
    return "pass"


def worst(verdicts: Sequence[str]) -> str:
    """The most severe of ``verdicts`` ("pass" for none)."""
    return max(verdicts, key=VERDICTS.index, default="pass")


def full_box_eps(norm: str, image_shape: Sequence[int]) -> float:
    """The eps that holds every image of [0, 1]^shape: 1 (L-inf), sqrt(prod(shape)) (L2)
    (``norms.Norm.diameter``)."""
    return NORMS[norm].diameter(image_shape)


def margin_gradients(model: Model, x: np.ndarray, y: np.ndarray,
                     batch_size: int = 128) -> np.ndarray:
    """Per-sample input gradients of the logit margin z_y - max_{i != y} z_i, float32 shaped
    like x. The margin, not the cross-entropy, so that a confidently classified sample (whose
    softmax saturates to 1 in float32, a zero cross-entropy gradient) does not count as
    masked: only the model's own gradient can vanish here."""
    out = np.empty_like(x)
    for start in range(0, len(x), batch_size):
        xb = tf.constant(x[start:start + batch_size])
        yb = tf.constant(y[start:start + batch_size].astype(np.int32))
        with tf.GradientTape() as tape:
            tape.watch(xb)
            logits = model(xb, training=False)
            true, other = logit_margin(logits, yb)
            margin = true - other
        # A layer without a gradient (tf.round) disconnects the input: that is a zero gradient.
        out[start:start + batch_size] = tape.gradient(
            margin, xb, unconnected_gradients=tf.UnconnectedGradients.ZERO).numpy()
    return out


def random_noise(x: np.ndarray, eps: float, norm: str, rng: np.random.Generator) -> np.ndarray:
    """x plus noise of norm exactly eps before clipping to [0, 1] (``norms.Norm.noise``):
    random signs times eps (L-inf; a corner of the ball, as far as an FGSM step goes) or a
    uniform random direction of length eps (L2)."""
    return np.clip(x + NORMS[norm].noise(x.shape, eps, rng), 0.0, 1.0).astype(np.float32)


class _Audit:
    """One audit's samples, model and attack results, each attack run once (memoised) for
    the checks that share it."""

    def __init__(self, model: Model, x: np.ndarray, y: np.ndarray, *, eps: float, norm: str,
                 settings: AuditSettings, batch_size: int, seed: int,
                 surrogate: Callable[[], tuple[Model, dict[str, Any]]] | None,
                 progress: Progress) -> None:
        self.model, self.x, self.y = model, x, y
        self.eps, self.norm, self.settings = eps, norm, settings
        self.batch_size, self.seed = batch_size, seed
        self.surrogate_loader = surrogate
        self.progress = progress
        self.logits = predict_logits(model, x, batch_size)
        self.correct = self.logits.argmax(axis=1) == y
        self.robust: dict[str, np.ndarray] = {}
        self.attacks: dict[str, dict[str, Any]] = {}
        self.surrogate_info: dict[str, Any] | None = None

    # -- running attacks -------------------------------------------------------------------
    def accuracy(self, label: str) -> float:
        return float(np.mean(self.robust[label]))

    def attack(self, label: str, name: str, mask: np.ndarray | None = None,
               model: Model | None = None, **params: Any) -> np.ndarray:
        """Robust mask under the registry's attack ``name`` with ``params`` (crafted on
        ``model``, default the audited model: another one makes it a transfer attack)."""
        if label in self.robust:
            return self.robust[label]
        attack = make_attack(name, **params)
        self.attacks[label] = {"attack": name, "params": attack.params(),
                               "crafted_on": "surrogate" if model is not None else "model"}
        source = self.model if model is None else model
        # The attack driver's batches and seeds (runner.attack_arrays): without a mask every
        # sample is attacked as `advbench attack` would, so the same randomized attack and
        # seed give the same images there and here; with one, only the masked samples.
        x_adv = attack_arrays(attack, source, self.x, self.y, seed=self.seed,
                              batch_size=self.batch_size, todo=mask, progress=self.progress)
        # Scored as the driver scores a run, the model on every batch of x_adv (rows not
        # attacked hold x): the mask is an attack artifact's pred_adv == y. Robust: correct
        # clean (and, with ``mask``, left robust by the earlier attacks: AutoAttack's way of
        # running an ensemble) and still predicted correctly.
        predicted = predict_logits(self.model, x_adv, self.batch_size, progress=self.progress,
                                   what=label).argmax(axis=1)
        todo = self.correct if mask is None else mask & self.correct
        self.robust[label] = todo & (predicted == self.y)
        self.attacks[label]["robust_accuracy"] = self.accuracy(label)
        return self.robust[label]

    def fgsm_curve(self, eps_values: Sequence[float], model: Model | None = None,
                   prefix: str = "fgsm") -> list[float]:
        """Robust accuracy of FGSM at each eps, from one gradient direction per sample (on
        ``model``, default the audited model), scored on the audited model: the curve driver
        (``advbench.run.curves.sweep``), so each eps's images are `advbench attack fgsm`'s
        (batches, budget held exactly) and the curve is `advbench curve`'s."""
        labels = [f"{prefix}@{e:g}" for e in eps_values]
        if all(label in self.robust for label in labels):
            return [self.accuracy(label) for label in labels]
        source = self.model if model is None else model
        predictions = sweep(source, [self.model], self.x, self.y, list(eps_values),
                            norm=self.norm, seed=self.seed, batch_size=self.batch_size,
                            progress=self.progress)["pred_adv"][0]
        for e, label, predicted in zip(eps_values, labels, predictions):
            self.robust[label] = self.correct & (predicted == self.y)
            self.attacks[label] = {"attack": "fgsm", "params": {"eps": e, "norm": self.norm},
                                   "crafted_on": "model" if model is None else "surrogate",
                                   "robust_accuracy": self.accuracy(label)}
        return [self.accuracy(label) for label in labels]

    def pgd(self, eps: float) -> np.ndarray:
        steps = self.settings.pgd_steps
        return self.attack(f"pgd@{eps:g}", "pgd", eps=eps, norm=self.norm, steps=steps,
                           step_size=max(2.5 * eps / steps, 1e-12), random_start=True)

    def apgd(self) -> np.ndarray:
        return self.attack("apgd-ce", "apgd-ce", eps=self.eps, norm=self.norm,
                           n_iter=self.settings.n_iter)

    def fgsm(self) -> np.ndarray:
        self.fgsm_curve(self.curve_eps())
        return self.robust[f"fgsm@{self.eps:g}"]

    def curve_eps(self) -> list[float]:
        k = self.settings.curve_points
        return [self.eps * i / k for i in range(1, k + 1)]

    def gradient_attacks(self) -> np.ndarray:
        """Robust to FGSM, PGD and APGD-CE together (the gradient attacks' ensemble)."""
        return self.fgsm() & self.pgd(self.eps) & self.apgd()

    def surrogate(self) -> tuple[Model, dict[str, Any]]:
        if self.surrogate_loader is None:
            raise ParameterError("check white-box-vs-transfer needs a surrogate model; pass "
                                 "one (--surrogate) or training data to train one")
        model, info = self.surrogate_loader()
        self.surrogate_info = info
        self.surrogate_loader = lambda: (model, info)
        return model, info

    # -- the checks ------------------------------------------------------------------------
    def logits_and_gradients(self) -> dict[str, Any]:
        s = self.settings
        probabilities = looks_like_probabilities(self.logits)
        again = predict_logits(self.model, self.x, self.batch_size)
        scale = 1.0 + float(np.abs(self.logits).max())
        difference = float(np.abs(again - self.logits).max()) / scale
        flipped = float(np.mean(again.argmax(axis=1) != self.logits.argmax(axis=1)))
        deterministic = difference <= DETERMINISM_TOLERANCE
        grads = margin_gradients(self.model, self.x, self.y, self.batch_size)
        flat = grads.reshape(len(grads), -1)
        finite = np.isfinite(flat).all(axis=1)
        zero = finite & (np.abs(flat).max(axis=1) == 0)
        bad = float(np.mean(zero | ~finite))
        verdicts = ["fail" if probabilities else "pass", "pass" if deterministic else "fail",
                    grade(bad, s.max_bad_gradients)]
        problems = [text for text, verdict in zip(
            ("outputs look like probabilities (non-negative rows summing to 1): attacks need "
             "logits", f"outputs are random (two passes differ by {difference:.2g} relative, "
             f"{flipped:.1%} of predictions change)",
             f"{bad:.1%} of input gradients are zero or not finite"), verdicts)
            if verdict != "pass"]
        return {"verdict": worst(verdicts),
                "evidence": {"probabilities": probabilities, "deterministic": deterministic,
                             "max_relative_difference": difference,
                             "predictions_changed": flipped,
                             "zero_gradients": float(np.mean(zero)),
                             "nonfinite_gradients": float(np.mean(~finite)),
                             "bad_gradients": bad},
                "detail": "; ".join(problems) or "logits, deterministic, gradients present"}

    def iterative_vs_single_step(self) -> dict[str, Any]:
        self.fgsm()
        fgsm = self.accuracy(f"fgsm@{self.eps:g}")
        self.pgd(self.eps)
        pgd = self.accuracy(f"pgd@{self.eps:g}")
        self.apgd()
        apgd = self.accuracy("apgd-ce")
        violation = max(pgd, apgd) - fgsm
        return {"verdict": grade(violation, self.settings.tolerance),
                "evidence": {"fgsm": fgsm, "pgd": pgd, "apgd_ce": apgd,
                             "violation": violation},
                "detail": f"FGSM {fgsm:.1%}, PGD {pgd:.1%}, APGD-CE {apgd:.1%}"
                          + (f": an iterative attack is weaker than FGSM by {violation:.1%}"
                             if violation > 0 else "")}

    def white_box_vs_transfer(self) -> dict[str, Any]:
        surrogate, info = self.surrogate()
        steps = self.settings.pgd_steps
        self.pgd(self.eps)
        self.apgd()
        white = min(self.accuracy(f"pgd@{self.eps:g}"), self.accuracy("apgd-ce"))
        fgsm = self.fgsm_curve([self.eps], model=surrogate, prefix="transfer-fgsm")[0]
        self.attack(f"transfer-pgd@{self.eps:g}", "pgd", model=surrogate, eps=self.eps,
                    norm=self.norm, steps=steps, step_size=max(2.5 * self.eps / steps, 1e-12),
                    random_start=True)
        pgd = self.accuracy(f"transfer-pgd@{self.eps:g}")
        transfer = min(fgsm, pgd)
        violation = white - transfer
        return {"verdict": grade(violation, self.settings.tolerance),
                "evidence": {"white_box": white, "transfer_fgsm": fgsm, "transfer_pgd": pgd,
                             "violation": violation, "surrogate": info},
                "detail": f"white-box {white:.1%}, transfer from the surrogate {transfer:.1%}"
                          + (f": transfer is stronger by {violation:.1%}"
                             if violation > 0 else "")}

    def unbounded_attack(self) -> dict[str, Any]:
        s = self.settings
        eps = s.unbounded_eps or full_box_eps(self.norm, self.x.shape[1:])
        robust = self.attack(f"apgd-ce@{eps:g}", "apgd-ce", eps=eps, norm=self.norm,
                             n_iter=s.n_iter)
        correct = int(self.correct.sum())
        success = float(np.sum(self.correct & ~robust) / correct)
        return {"verdict": grade(1.0 - success, 1.0 - s.min_unbounded_success),
                "evidence": {"eps": eps, "success": success, "correct_samples": correct},
                "detail": f"APGD-CE at eps {eps:g} fools {success:.1%} of the {correct} "
                          "correctly classified samples"}

    def accuracy_vs_eps(self) -> dict[str, Any]:
        eps_values = self.curve_eps()
        clean = float(np.mean(self.correct))
        fgsm = [clean, *self.fgsm_curve(eps_values)]
        pgd = [clean]
        for e in eps_values:
            self.pgd(e)
            pgd.append(self.accuracy(f"pgd@{e:g}"))

        def rise(curve: list[float]) -> float:
            return max(a - min(curve[:i + 1]) for i, a in enumerate(curve))

        violation = max(rise(fgsm), rise(pgd))
        return {"verdict": grade(violation, self.settings.tolerance),
                "evidence": {"eps": [0.0, *eps_values], "fgsm": fgsm, "pgd": pgd,
                             "fgsm_rise": rise(fgsm), "pgd_rise": rise(pgd),
                             "violation": violation},
                "detail": f"FGSM {' '.join(f'{a:.0%}' for a in fgsm)}; PGD "
                          f"{' '.join(f'{a:.0%}' for a in pgd)} (eps 0..{self.eps:g})"
                          + (f": accuracy rises by {violation:.1%}" if violation > 0 else "")}

    def gradient_free_vs_gradient(self) -> dict[str, Any]:
        gradient = self.gradient_attacks()
        s = self.settings
        robust = self.attack("square", "square", mask=gradient, eps=self.eps, norm=self.norm,
                             n_queries=s.square_queries)
        lead = float(np.mean(gradient & ~robust))
        return {"verdict": grade(lead, s.square_lead),
                "evidence": {"gradient_attacks": float(np.mean(gradient)),
                             "with_square": float(np.mean(robust)), "square_lead": lead},
                "detail": f"gradient attacks {np.mean(gradient):.1%}, then Square "
                          f"{np.mean(robust):.1%}: Square fools {lead:.1%} of the samples "
                          "the gradient attacks missed"}

    def noise(self) -> np.ndarray:
        """Robust mask under ``noise_draws`` draws of random noise of norm eps
        (``random_noise``), in the driver's batches with its seed rule: batch I of the samples
        draws from a NumPy generator seeded (``data.batch_seed(seed, I * batch_size)``, draw),
        so a sample's noise does not depend on which other samples are still robust."""
        s = self.settings
        label = f"noise@{self.eps:g}"
        if label not in self.robust:
            robust = self.correct.copy()
            forward = forward_function(self.model)
            for rows, batch_seed_of in batches(len(self.x), self.batch_size, self.seed):
                for draw in range(s.noise_draws):
                    rng = np.random.default_rng([batch_seed_of, draw])
                    noisy = random_noise(self.x[rows], self.eps, self.norm, rng)
                    robust[rows] &= forward(tf.constant(noisy)).numpy().argmax(1) == \
                        self.y[rows]
            self.robust[label] = robust
            self.attacks[label] = {"attack": "random-noise",
                                   "params": {"eps": self.eps, "norm": self.norm,
                                              "draws": s.noise_draws},
                                   "crafted_on": "none", "robust_accuracy": self.accuracy(label)}
        return self.robust[label]

    def attack_vs_random_noise(self) -> dict[str, Any]:
        s = self.settings
        self.noise()
        noise = self.accuracy(f"noise@{self.eps:g}")
        attack = float(np.mean(self.gradient_attacks()))
        violation = attack - noise
        return {"verdict": grade(violation, s.tolerance),
                "evidence": {"noise": noise, "attack": attack, "violation": violation},
                "detail": f"random noise {noise:.1%}, gradient attacks {attack:.1%}"
                          + (f": noise is stronger by {violation:.1%}" if violation > 0 else "")}

    def attack_convergence(self) -> dict[str, Any]:
        s = self.settings
        self.apgd()
        base = self.accuracy("apgd-ce")
        factor = s.convergence_factor
        self.attack("apgd-ce-more", "apgd-ce", eps=self.eps, norm=self.norm,
                    n_iter=factor * s.n_iter, n_restarts=factor)
        more = self.accuracy("apgd-ce-more")
        drop = base - more
        return {"verdict": grade(drop, s.tolerance),
                "evidence": {"apgd_ce": base, "apgd_ce_more": more, "iterations": s.n_iter,
                             "more_iterations": factor * s.n_iter, "more_restarts": factor,
                             "drop": drop},
                "detail": f"APGD-CE {s.n_iter} iterations {base:.1%}; {factor * s.n_iter} "
                          f"iterations x {factor} restarts {more:.1%}"}


#: The norms the audit runs in: its FGSM and PGD have no L1.
AUDIT_NORMS = ("linf", "l2")


def check_audit_norm(norm: str) -> None:
    """ParameterError unless ``norm`` is one of ``AUDIT_NORMS``."""
    if norm not in AUDIT_NORMS:
        raise ParameterError(f"norm must be one of {', '.join(AUDIT_NORMS)}, got {norm!r}")


def audit(model: Model, x: np.ndarray, y: np.ndarray, *, eps: float, norm: str = "linf",
          checks: Sequence[str] | None = None, settings: AuditSettings | None = None,
          batch_size: int = 128, seed: int = 0,
          surrogate: Callable[[], tuple[Model, dict[str, Any]]] | None = None,
          progress: Progress | None = None) -> AuditResult:
    """Run the gradient-masking checks on a model and samples.

    Args:
        model: a Keras model mapping float32 (n, H, W, C) images in [0, 1] to logits (a
            model giving probabilities fails check 1, as it should).
        x: float32 (n, H, W, C) in [0, 1]; y: int (n,) class indices.
        eps: the perturbation budget in ``norm`` (L-inf: pixel units, in (0, 1]; L2: the
            perturbation's Euclidean length, > 0).
        norm: "linf" or "l2".
        checks: names of ``advbench.score.AUDIT_CHECKS`` [default: all eight].
        settings: budgets and thresholds (``AuditSettings``).
        batch_size, seed: attack batches and the seed of every random draw: the attack
            driver's (``runner.attack_arrays``: batch I of the samples, seed
            ``data.batch_seed(seed, I * batch_size)``), so an attack gives the images
            ``advbench attack`` gives with the same seed and batch size.
        surrogate: returns (model, description) of the surrogate for check 3, called only
            when that check runs (``train_surrogate``, or a loaded model).

    Returns an ``AuditResult``: ``summary["checks"]`` holds one row per check (``name``,
    ``number``, ``verdict``, ``evidence``, ``detail``), ``summary["verdict"]`` the worst.

    Raises ParameterError for bad settings, samples or names, and when the model classifies
    none of the samples correctly (nothing to attack).
    """
    from advbench.core.checks import check_class_labels, check_images

    settings = settings or AuditSettings()
    settings.validate()
    check_audit_norm(norm)
    # L-inf eps above 1 is the whole [0, 1] box: check 4 could not go beyond the audited eps.
    check_range("eps", eps, low=0.0, low_inclusive=False, high=NORMS[norm].largest_eps)
    check_int("batch size", batch_size, low=1)
    check_seed(seed)
    checks = tuple(AUDIT_CHECKS) if checks is None else tuple(checks)
    unknown = [c for c in checks if c not in AUDIT_CHECKS]
    if unknown or not checks:
        raise ParameterError(f"unknown check(s) {', '.join(unknown) or '(none given)'}; choose "
                             f"from: {', '.join(AUDIT_CHECKS)}")
    x = check_images("x", x)
    y = check_class_labels("y", y, n=len(x), num_classes=int(model.output_shape[-1]))
    progress = progress or Progress(quiet=True)
    run = _Audit(model, x, y, eps=float(eps), norm=norm, settings=settings,
                 batch_size=batch_size, seed=seed, surrogate=surrogate, progress=progress)
    if not run.correct.any():
        raise ParameterError(f"the model classifies none of the {len(x)} audited samples "
                             "correctly, so no attack can be judged; check the model and its "
                             "data (--dataset/--data, --input-range)")
    rows = []
    for name in checks:
        progress.log(f"check {CHECK_NUMBERS[name]}: {name} ({AUDIT_CHECKS[name]})")
        row = getattr(run, name.replace("-", "_"))()
        progress.log(f"check {CHECK_NUMBERS[name]}: {row['verdict']}: {row['detail']}")
        rows.append({"number": CHECK_NUMBERS[name], "name": name, **row})
    per_sample = {"y": y, "pred_clean": run.logits.argmax(axis=1).astype(np.int64),
                  **{f"robust/{label}": mask for label, mask in run.robust.items()}}
    summary = {
        "eps": float(eps), "norm": norm, "samples": int(len(x)),
        "clean_accuracy": float(np.mean(run.correct)),
        "checks": rows, "verdict": worst([r["verdict"] for r in rows]),
        "settings": dataclasses.asdict(settings), "attacks": run.attacks,
        "seed": seed, "batch_size": batch_size,
    }
    return AuditResult(jsonable(summary), per_sample)


def train_surrogate(dataset: str, *, data_dir: PathLike | None = None,
                    settings: AuditSettings | None = None, seed: int = 0,
                    progress: Progress | None = None) -> tuple[Model, dict[str, Any]]:
    """A surrogate for check 3: the zoo's ``settings.surrogate_architecture`` trained (no
    defense) for ``surrogate_epochs`` on ``surrogate_limit`` class-balanced training images
    of ``dataset`` (``train.train``). Returns (model, description)."""
    from advbench.defenses import make_defense
    from advbench.run.train import TrainConfig, train

    settings = settings or AuditSettings()
    config = TrainConfig(dataset=dataset, architecture=settings.surrogate_architecture,
                         epochs=settings.surrogate_epochs, limit=settings.surrogate_limit,
                         seed=seed, data_dir=data_dir)
    progress = progress or Progress(quiet=True)
    progress.log(f"training the surrogate ({settings.surrogate_architecture}, "
                 f"{settings.surrogate_epochs} epochs on {settings.surrogate_limit} images)")
    model, meta = train(config, make_defense("none", dataset), progress=progress)
    return model, {"source": "trained", "architecture": settings.surrogate_architecture,
                   "epochs": settings.surrogate_epochs, "train_samples": settings.surrogate_limit,
                   "clean_test_accuracy": meta.get("clean_test_accuracy")}


# -- the record ------------------------------------------------------------------------------
def audit_parameters(eps: float, norm: str, checks: Sequence[str] | None,
                     settings: AuditSettings | None = None, *, seed: int, samples: str = "",
                     budget: Any = None) -> str:
    """The one stderr line that starts an audit (``attacks.budgets.parameter_line``): the
    budget (and, from ``budget``, where its default came from), the checks by number, every
    setting, the seed and ``samples`` (in words)."""
    from advbench.attacks.budgets import parameter_line

    numbers = ",".join(str(list(AUDIT_CHECKS).index(name) + 1)
                       for name in (checks or AUDIT_CHECKS))
    return parameter_line("audit", {"eps": eps, "norm": norm, "checks": numbers,
                                    **dataclasses.asdict(settings or AuditSettings())},
                          budget=budget, seed=seed, samples=samples)


def audit_key(summary_inputs: dict[str, Any], indices: np.ndarray) -> str:
    """The run key (``outputs.run_key``) of an audit: model hash, data, samples, eps, norm,
    checks, settings, surrogate. An -o record with this key holds this audit's result."""
    return outputs.run_key(jsonable(summary_inputs), indices)


def write_audit(path: PathLike, result: AuditResult, attrs: dict[str, Any], *,
                lock: bool = True) -> Path:
    """Write the audit record (schema ``advbench.audit``, atomically) holding the output lock
    (``files.output_lock``; OutputError while another run writes it; ``lock`` False: the
    caller holds it already): attrs (provenance, ``key``, ``verdict``, the summary as JSON)
    and the per-sample arrays."""
    import contextlib

    summary = result.summary
    with output_lock(path, "audit record") if lock else contextlib.nullcontext():
        write_arrays(path, AUDIT_SCHEMA,
                     {**attrs, "verdict": summary["verdict"], "eps": summary["eps"],
                      "norm": summary["norm"], "num_samples": summary["samples"],
                      "complete": True, "advbench_version": __version__,
                      "summary": json.dumps(summary)}, result.per_sample)
    return Path(path)


def read_audit(path: PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(attrs, arrays) of an audit record, validated (``artifacts.read_arrays``);
    ``attrs["summary"]`` is the summary dict. ArtifactError otherwise."""
    attrs, arrays = read_arrays(path, AUDIT_SCHEMA)
    summary = attrs.get("summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("checks"), list):
        raise ArtifactError(f"{path} has no audit summary; it was edited or not written by "
                            "`advbench audit`: run the audit again")
    return attrs, arrays


def stored_audit(path: PathLike, key: str, overwrite: bool) -> dict[str, Any] | None:
    """The summary in an existing -o record of the same audit (``key``), to reuse; None when
    ``path`` is free or ``overwrite``; ArtifactError (OutputError for a file of another kind)
    when it holds anything else (``outputs.read_claim``)."""
    claim = outputs.read_claim(path, schema=AUDIT_SCHEMA, key=key, noun="an audit",
                               kind="an audit record", overwrite=overwrite)
    return read_audit(path)[0]["summary"] if claim.state == "complete" else None
