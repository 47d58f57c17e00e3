import numpy as np
import pytest
import torch

from common.probing.metrics import evaluate, icbhi_scores
from common.probing.probes import LinearClassifier, ThreeLayerClassifier, WeightedLayerSum, build_head
from common.probing.training import DEFAULT_RECIPE, SEEDS_RECIPE, Recipe, cpu_threads, train_probe


@pytest.fixture(autouse=True)
def one_thread():
    with cpu_threads("cpu"):  # as common.probing.evaluate trains
        yield


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


def reference_runs(head, x, y, xv, yv, lrs, batch, epochs, seed=0):
    """The grid as separate runs: one module and torch.optim.Adam per lr."""
    mean, scale = x.mean(0), x.std(0)
    xt, yt = torch.as_tensor((x - mean) / scale), torch.as_tensor(y)
    xvt, yvt = torch.as_tensor((xv - mean) / scale), torch.as_tensor(yv)
    runs = {}
    for lr in lrs:
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = build_head(head, x.shape[1], int(y.max()) + 1)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        runs[lr] = []
        for _ in range(epochs):
            order = torch.randperm(len(xt), generator=generator)
            for start in range(0, len(xt), batch):
                index = order[start:start + batch]
                loss = torch.nn.functional.cross_entropy(model(xt[index]), yt[index])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            with torch.no_grad():
                acc = (model(xvt).argmax(-1) == yvt).float().mean().item()
            runs[lr].append((acc, {k: v.clone() for k, v in model.state_dict().items()}))
    return runs


@pytest.mark.parametrize("head", ["linear", "three_layer"])
def test_learning_rates_trained_together_equal_separate_runs(head):
    x, y = blobs(300, classes=3, seed=3)
    x[:, :4] += np.random.default_rng(5).normal(size=(300, 4)) * 4  # overlap: accuracy is not 100%
    xv, yv = blobs(200, classes=3, seed=4)
    lrs = (1e-3, 3e-3, 1e-2)
    fit = train_probe(head, x, y, xv, yv, 3, Recipe("t", lrs, 32, 6, patience=None))
    reference = reference_runs(head, x, y, xv, yv, lrs, 32, 6)
    for entry in fit.grid:
        accs = [acc for acc, _ in reference[entry["lr"]]]
        assert entry["epochs_run"] == 6
        assert entry["best_valid_acc"] == pytest.approx(max(accs), abs=0.011)
    state = reference[fit.lr][fit.epoch - 1][1]
    for name, value in fit.model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=1e-3, atol=3e-4)
    assert fit.curves["valid_acc"] == pytest.approx([acc for acc, _ in reference[fit.lr]], abs=0.011)


class TanhHead(torch.nn.Module):  # a head the stacked trainer has no fast path for
    def __init__(self, in_dim, num_classes):
        super().__init__()
        self.hidden = torch.nn.Linear(in_dim, 8)
        self.scale = torch.nn.Parameter(torch.ones(8))
        self.out = torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(8, num_classes))

    def forward(self, x):
        return self.out(self.hidden(x) * self.scale)


def test_any_other_head_is_stacked_with_vmap(monkeypatch):
    from common.probing import probes
    monkeypatch.setitem(probes.HEADS, "tanh", TanhHead)
    x, y = blobs(200, classes=3, seed=3)
    xv, yv = blobs(100, classes=3, seed=4)
    fit = train_probe("tanh", x, y, xv, yv, 3, Recipe("t", (1e-3, 1e-2), 32, 3, patience=None))
    state = reference_runs("tanh", x, y, xv, yv, (1e-3, 1e-2), 32, 3)[fit.lr][fit.epoch - 1][1]
    for name, value in fit.model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=1e-3, atol=3e-4)


def test_seeds_recipe_equals_a_plain_adam_run():
    x, y = blobs(64, classes=3, seed=3)
    recipe = Recipe(**{**SEEDS_RECIPE.to_dict(), "epochs": 3})
    fit = train_probe("three_layer", x, y, x[:0], y[:0], 3, recipe)
    state = reference_runs("three_layer", x, y, x[:8], y[:8], (1e-3,), 8, 3)[1e-3][-1][1]
    for name, value in fit.model.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=1e-3, atol=3e-4)
    assert fit.plan == {"batch_size": 8, "epochs": 3, "patience": None} and fit.layer_weights is None


def test_default_recipe_plan_grows_the_batch_and_caps_epochs_on_large_sets():
    assert DEFAULT_RECIPE.name == "grid-v2" and DEFAULT_RECIPE.to_dict()["item_budget"]
    small = DEFAULT_RECIPE.plan(1600)  # an ESC-50 fold: grid-v1 unchanged
    assert small == {"batch_size": 64, "epochs": 100, "patience": 20}
    assert DEFAULT_RECIPE.plan(16384) == {"batch_size": 64, "epochs": 100, "patience": 20}
    nsynth = DEFAULT_RECIPE.plan(289_205)
    assert nsynth["batch_size"] == 1024 and DEFAULT_RECIPE.min_epochs <= nsynth["epochs"] < 100
    assert 1 <= nsynth["patience"] < 20
    assert SEEDS_RECIPE.plan(289_205) == {"batch_size": 8, "epochs": 100, "patience": None}
    fixed = Recipe("t", (1e-3,), 32, 5)
    assert fixed.plan(10**6) == {"batch_size": 32, "epochs": 5, "patience": 20}


class Counter:
    n = 0

    def update(self, k=1):
        self.n += k


def test_progress_gets_epochs_times_learning_rates_updates():
    x, y = blobs(300)
    xv, yv = blobs(100, seed=1)
    for recipe in (Recipe("t", (1e-4, 1e-3, 1e-1), 64, 40, patience=3),          # early stops
                   Recipe("t", (1e-3, 1e-2), 64, 30, item_budget=1500, min_epochs=2)):  # epoch cap
        bar = Counter()
        fit = train_probe("linear", x, y, xv, yv, 4, recipe, progress=bar)
        assert bar.n == len(recipe.lrs) * recipe.epochs
        assert max(g["epochs_run"] for g in fit.grid) <= fit.plan["epochs"]
    assert fit.plan["epochs"] == 5 and fit.plan["patience"] == 4


def layered_blobs(n, layers=4, signal_layer=2, dim=12, seed=0):
    """Only `signal_layer` carries the class; the other layers are louder noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(3, size=n)
    x = rng.normal(size=(n, layers, dim)).astype(np.float32) * 3 + np.arange(layers)[:, None]
    centers = np.random.default_rng(7).normal(size=(3, dim)) * 2
    x[:, signal_layer] = centers[y] + rng.normal(size=(n, dim))
    return x.astype(np.float32), y


def test_weighted_layer_sum_finds_the_layer_with_the_signal():
    x, y = layered_blobs(600)
    xv, yv = layered_blobs(200, seed=1)
    fit = train_probe("linear", x, y, xv, yv, 3, Recipe("t", (1e-2,), 64, 40, patience=None))
    assert isinstance(fit.model, WeightedLayerSum) and isinstance(fit.model.head, LinearClassifier)
    assert fit.scaler_mean.shape == (4, 12) and fit.scaler_scale.shape == (4, 12)
    np.testing.assert_allclose(fit.scaler_mean, x.mean(0), atol=1e-4)      # per layer, training items only
    np.testing.assert_allclose(fit.scaler_scale, x.std(0), rtol=1e-4)
    weights = fit.layer_weights
    assert len(weights) == 4 and sum(weights) == pytest.approx(1, abs=1e-5)
    assert int(np.argmax(weights)) == 2 and weights[2] > 0.5
    xt, yt = layered_blobs(300, seed=2)
    assert (fit.predict_proba(xt).argmax(-1) == yt).mean() > 0.85
    three = train_probe("three_layer", x, y, xv, yv, 3, Recipe("t", (1e-3, 1e-2), 64, 15, patience=None))
    assert int(np.argmax(three.layer_weights)) == 2 and len(three.grid) == 2


def test_weighted_layer_sum_starts_as_a_mean_over_layers():
    head = LinearClassifier(5, 2)
    wrapped = build_head("linear", 5, 2, num_layers=3)
    wrapped.head.load_state_dict(head.state_dict())
    x = torch.randn(7, 3, 5)
    torch.testing.assert_close(wrapped(x), head(x.mean(1)))
    assert wrapped.layer_weights() == pytest.approx([1 / 3] * 3)


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
