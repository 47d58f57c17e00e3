"""Model selection by the protocol's metric, class-balanced batches, refit,
and metrics over the classes present."""
import numpy as np
import pytest

from common.errors import ProtocolError
from common.probing.metrics import balanced_accuracy, evaluate, macro_f1, scorer
from common.probing.training import Recipe, class_balanced_weights, cpu_threads, refit_probe, train_probe


@pytest.fixture(autouse=True)
def one_thread():
    with cpu_threads("cpu"):
        yield


def blobs(n, classes=3, spread=1.0, weights=None, seed=0, dim=8):
    rng = np.random.default_rng(seed)
    y = rng.choice(classes, size=n, p=weights)
    centers = np.random.default_rng(7).normal(size=(classes, dim)) * 1.5
    return (centers[y] + rng.normal(size=(n, dim)) * spread).astype(np.float32), y


def test_macro_f1_averages_over_the_classes_present():
    classes = ["a", "b", "c"]                      # "c" has no test item, as NSynth's synth_lead
    y = np.array([0, 0, 1, 1])
    perfect = evaluate(y, y, classes)
    assert perfect["macro_f1"] == 1.0 and perfect["balanced_accuracy"] == 1.0
    assert perfect["per_class_recall"] == {"a": 1.0, "b": 1.0, "c": None}   # the fixed list stays
    assert macro_f1(y, np.array([0, 0, 1, 2])) == pytest.approx((1.0 + 2 / 3) / 2)
    assert balanced_accuracy(y, np.array([0, 1, 1, 1])) == pytest.approx(0.75)


def test_scorer_knows_the_icbhi_score_and_refuses_unknown_metrics():
    score = scorer("icbhi_score", ["normal", "crackle"], "normal")
    # all called normal: specificity 1, sensitivity 0
    assert score(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 0])) == pytest.approx(0.5)
    with pytest.raises(ProtocolError, match="unknown metric"):
        scorer("auc", ["a"])
    with pytest.raises(ProtocolError, match="normal class"):
        scorer("icbhi_score", ["normal", "crackle"])


def test_learning_rate_and_epoch_are_chosen_by_the_given_metric():
    x, y = blobs(300, spread=2.0)
    xv, yv = blobs(200, spread=2.0, seed=1)
    recipe = Recipe("t", (1e-3, 1e-2), 32, 15, patience=None)
    by_accuracy = train_probe("linear", x, y, xv, yv, 3, recipe)
    # a planted metric that prefers the worst validation accuracy
    worst = train_probe("linear", x, y, xv, yv, 3, recipe, select_by=lambda t, p: -float((t == p).mean()))
    assert by_accuracy.curves["valid_acc"][by_accuracy.epoch - 1] == max(by_accuracy.curves["valid_acc"])
    assert worst.curves["valid_score"][worst.epoch - 1] == max(worst.curves["valid_score"])
    chosen_acc = worst.curves["valid_acc"][worst.epoch - 1]
    assert chosen_acc == min(worst.curves["valid_acc"]) == min(g["best_valid_acc"] for g in worst.grid)
    assert chosen_acc < by_accuracy.curves["valid_acc"][by_accuracy.epoch - 1]
    assert [g["best_valid_score"] for g in worst.grid] == pytest.approx([-g["best_valid_acc"] for g in worst.grid])
    # the validation predictions kept are those of the chosen lr and epoch
    assert float((worst.valid_predictions == yv).mean()) == pytest.approx(chosen_acc)


def test_class_balanced_sampling_draws_every_class_equally():
    y = np.array([0] * 90 + [1] * 10)
    weights = class_balanced_weights(y)
    assert weights[y == 0].sum() == pytest.approx(weights[y == 1].sum())
    # overlapping classes, 95:5: plain batches learn to answer the majority,
    # balanced batches move the boundary to the middle
    x, y = blobs(1000, classes=2, spread=3.0, weights=[0.95, 0.05], seed=3)
    recipe = Recipe("t", (1e-2,), 64, 20, select="last", patience=None)
    plain = train_probe("linear", x, y, x[:0], y[:0], 2, recipe)
    balanced = train_probe("linear", x, y, x[:0], y[:0], 2, recipe, balanced=True)
    minority = lambda fit: (fit.predict_proba(x).argmax(-1) == 1).mean()
    assert balanced.balanced and not plain.balanced
    assert minority(balanced) > 3 * minority(plain) and minority(balanced) > 0.1


def test_refit_trains_on_train_and_valid_at_the_chosen_setting_and_keeps_validation_numbers():
    x, y = blobs(200, spread=1.5)
    xv, yv = blobs(100, spread=1.5, seed=1)
    fit = train_probe("linear", x, y, xv, yv, 3, Recipe("t", (1e-3, 1e-2), 32, 12, patience=None))
    again = refit_probe(fit, x, y, xv, yv, 3, seed=0)
    assert again.refit and not fit.refit
    assert (again.lr, again.epoch, again.grid, again.curves) == (fit.lr, fit.epoch, fit.grid, fit.curves)
    np.testing.assert_array_equal(again.valid_predictions, fit.valid_predictions)
    both = np.concatenate([x, xv])
    np.testing.assert_allclose(again.scaler_mean, both.mean(0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(again.model.fc.weight.detach().numpy(), fit.model.fc.weight.detach().numpy())
