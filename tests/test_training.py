import numpy as np
import pytest
import torch

from common.metrics import evaluate, icbhi_scores
from common.probes import LinearClassifier, ThreeLayerClassifier
from common.training import SEEDS_RECIPE, Recipe, train_probe


def test_probe_heads_are_the_seeds_architectures():
    linear = LinearClassifier(384, 50)
    assert [type(m) for m in linear.modules()][1:] == [torch.nn.Linear]
    assert linear(torch.zeros(8, 384)).shape == (8, 50)
    three = ThreeLayerClassifier(768, 11)
    kinds = [type(m).__name__ for m in three.net]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [m.out_features for m in three.net if isinstance(m, torch.nn.Linear)] == [256, 256, 11]
    assert three(torch.zeros(3, 768)).shape == (3, 11)


def blobs(n, dim=16, classes=4, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(classes, size=n)
    centers = np.random.default_rng(99).normal(size=(classes, dim)) * 3
    return (centers[y] + rng.normal(size=(n, dim)) + shift).astype(np.float32), y


def test_scaler_is_fitted_on_training_items_only():
    x_train, y_train = blobs(200)
    x_valid, y_valid = blobs(100, shift=50.0, seed=1)  # very different statistics
    fit = train_probe("linear", x_train, y_train, x_valid, y_valid, 4, Recipe("t", (1e-2,), 32, 3))
    np.testing.assert_allclose(fit.scaler_mean, x_train.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fit.scaler_scale, x_train.std(0), rtol=1e-4)


@pytest.mark.parametrize("head", ["linear", "three_layer"])
def test_default_recipe_learns_and_selects_on_validation(head):
    x_train, y_train = blobs(400)
    x_valid, y_valid = blobs(100, seed=1)
    x_test, y_test = blobs(200, seed=2)
    fit = train_probe(head, x_train, y_train, x_valid, y_valid, 4, Recipe("t", (1e-3, 1e-2), 64, 30, patience=5))
    assert fit.lr in (1e-3, 1e-2) and 1 <= fit.epoch <= 30 and len(fit.grid) == 2
    assert (fit.predict_proba(x_test).argmax(-1) == y_test).mean() > 0.9
    best = max(fit.curves["valid_acc"])
    assert fit.curves["valid_acc"][fit.epoch - 1] == best


def test_seeds_recipe_keeps_the_last_epoch():
    x, y = blobs(64)
    recipe = Recipe(**{**SEEDS_RECIPE.to_dict(), "epochs": 4})
    fit = train_probe("linear", x, y, x[:0], y[:0], 4, recipe)
    assert fit.epoch == 4 and fit.lr == 1e-3 and len(fit.curves["train_loss"]) == 4


def test_metrics_and_icbhi_score():
    y = np.array([0, 0, 0, 1, 2, 3, 3])
    p = np.array([0, 0, 1, 1, 1, 3, 0])
    scores = icbhi_scores(y, p, normal=0)
    assert scores["specificity"] == pytest.approx(2 / 3)
    assert scores["sensitivity"] == pytest.approx(2 / 4)  # item 2 called crackle: abnormal but wrong class
    assert scores["icbhi_score"] == pytest.approx((2 / 3 + 2 / 4) / 2)
    out = evaluate(y, p, ["normal", "crackle", "wheeze", "both"], normal_class="normal")
    assert out["accuracy"] == pytest.approx(4 / 7)
    assert out["confusion_matrix"][2] == [0, 1, 0, 0]
    assert out["per_class_recall"]["both"] == pytest.approx(0.5)
