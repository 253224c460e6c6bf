"""fgsm-min --search authors: the paper authors' minimal-FGSM loop (ART history, commit
735ead0c0 / tag 0.1), whose index reuse from the third grid step on attacks the wrong images."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from advbench.attacks import FGSM_MIN_SEARCHES, make_attack
from advbench.attacks.fgsm_min import MinimalFGSM
from advbench.core.errors import ParameterError
from conftest import prototype_images


def _threshold_model():
    """One pixel p, two classes: logits (0.5 - p, p - 0.5), so class 0 below p = 0.5, and the
    FGSM step of a class-0 image raises p by eps."""
    model = keras.Sequential([keras.Input((1, 1, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.layers[-1].set_weights([np.array([[-1.0, 1.0]], np.float32),
                                  np.array([0.5, -0.5], np.float32)])
    return model


def _images_flipping_at(steps):
    """Class-0 images that first flip at grid step k (1-based) of the grid 0.1, 0.2, ...:
    p + 0.1 k = 0.55 > 0.5 > p + 0.1 (k - 1)."""
    p = 0.55 - 0.1 * np.asarray(steps, np.float64)
    return p.astype(np.float32).reshape(-1, 1, 1, 1)


def test_authors_search_reuses_positions_as_indices():
    model = _threshold_model()
    x = _images_flipping_at([1, 3, 3, 2, 5, 4])
    y = np.zeros(len(x), np.int64)
    exact = MinimalFGSM(eps_step=0.1, search="exact")(model, x, y)
    np.testing.assert_allclose(exact.extras["eps"], [0.1, 0.3, 0.3, 0.2, 0.5, 0.4], atol=1e-6)
    assert exact.extras["found"].all()
    # The authors' loop, by hand: step 1 (eps .1) attacks 0-5, image 0 flips, active = [1..5]
    # (positions = indices). Step 2 (eps .2) attacks 1-5, image 3 flips; the unflipped
    # positions [0, 1, 3, 4] (images 1, 2, 4, 5) become the "indices" [0, 1, 3, 4]. Step 3
    # (eps .3) attacks images 0, 1, 3, 4: all but image 4 (position 3) flip, so step 4 (eps
    # .4) attacks image 3, which flips, and the loop ends. Images 2 and 5 stay at eps .2
    # unflipped, image 4 at .3 unflipped; images 0 and 3 are overwritten with larger eps.
    authors = MinimalFGSM(eps_step=0.1, search="authors")(model, x, y)
    np.testing.assert_allclose(authors.extras["eps"], [0.3, 0.3, 0.2, 0.4, 0.3, 0.2], atol=1e-6)
    np.testing.assert_array_equal(authors.extras["found"], [True, True, False, True, False,
                                                            False])
    np.testing.assert_allclose(authors.x_adv.ravel(), x.ravel() + authors.extras["eps"],
                               atol=1e-6)
    predicted = np.argmax(model(authors.x_adv).numpy(), axis=1)
    np.testing.assert_array_equal(predicted != 0, authors.extras["found"])


def test_authors_search_agrees_with_exact_for_two_steps():
    # Until the second step the positions are the indices: samples flipping at step 1 or 2
    # come out the same as with the exact search when nothing else is left.
    model = _threshold_model()
    x = _images_flipping_at([2, 1, 2, 1])
    y = np.zeros(len(x), np.int64)
    exact = MinimalFGSM(eps_step=0.1)(model, x, y)
    authors = MinimalFGSM(eps_step=0.1, search="authors")(model, x, y)
    np.testing.assert_array_equal(authors.extras["eps"], exact.extras["eps"])
    np.testing.assert_array_equal(authors.x_adv, exact.x_adv)


def test_authors_search_leaves_images_the_exact_search_flips(tiny_model):
    model = tiny_model
    x, y = prototype_images(200, seed=3)
    exact = MinimalFGSM(eps_step=0.02)(model, x, y)
    authors = MinimalFGSM(eps_step=0.02, search="authors")(model, x, y)
    assert exact.extras["found"].mean() > 0.9
    # Samples the exact search flips only after the second grid step are mostly left behind.
    late = exact.extras["found"] & (exact.extras["eps"] > 0.04 + 1e-6)
    assert late.sum() >= 10
    assert authors.extras["found"].sum() < exact.extras["found"].sum()
    assert (~authors.extras["found"][late]).sum() >= late.sum() // 4
    # What it returns is what it says: found means the prediction moved off the clean one.
    clean = np.argmax(model(x).numpy(), axis=1)
    moved = np.argmax(model(authors.x_adv).numpy(), axis=1) != clean
    np.testing.assert_array_equal(moved, authors.extras["found"])
    # The same direction as the exact search: every returned image is x + eps * sign step.
    grid = MinimalFGSM(eps_step=0.02).grid
    assert np.isin(authors.extras["eps"], grid).all()


def test_authors_search_is_registered_and_named():
    assert FGSM_MIN_SEARCHES == ("exact", "authors")
    assert "search" in MinimalFGSM.param_names
    assert MinimalFGSM().search == "exact"
    assert make_attack("fgsm-min", search="authors").params()["search"] == "authors"


@pytest.mark.parametrize("make, message", [
    (lambda: MinimalFGSM(search="paper"), "search must be one of exact, authors, got 'paper'"),
])
def test_bad_search_is_refused(make, message):
    with pytest.raises(ParameterError) as error:
        make()
    assert str(error.value) == message


def test_authors_search_refuses_a_target():
    model = _threshold_model()
    x = _images_flipping_at([1, 2])
    with pytest.raises(ParameterError) as error:
        MinimalFGSM(search="authors")(model, x, np.zeros(2, np.int64),
                                      target=np.ones(2, np.int64))
    assert str(error.value) == ("attack 'fgsm-min' with search='authors' is untargeted only; "
                                "drop the target option")
