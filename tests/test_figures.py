"""The study's figures: each function writes a readable PNG for any run names, the scatter says
when its axes clip points, and the separability bars carry error bars exactly when an SD is given."""
import math

import matplotlib.image
import numpy as np
import pytest
from matplotlib.container import BarContainer
from matplotlib.text import Text

from tinyvae.study import figures

EXTRA = ("deep_cifar10_beta1", "simple_cifar10_beta0.5", "simple_mnist_bernoulli")
RUNS = tuple(figures.RUN_COLORS) + EXTRA


@pytest.fixture
def drawn(monkeypatch):
    """Every Figure the module saves during a test, in order (recorded before _save clears it)."""
    saved, real_save = [], figures._save

    def record(fig, path):
        saved.append({"texts": [t.get_text() for t in fig.findobj(Text)],
                      "axes": [{"containers": list(ax.containers)} for ax in fig.axes]})
        return real_save(fig, path)

    monkeypatch.setattr(figures, "_save", record)
    return saved


def assert_png(path, min_side=100):
    img = matplotlib.image.imread(str(path))              # (H, W, 4) floats for a PNG
    assert img.ndim == 3 and img.shape[2] in (3, 4) and min(img.shape[:2]) >= min_side, img.shape


def images(n, h=8, c=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, h, c), dtype=np.uint8)   # (N, H, H, C)


# ---- pure helpers ----------------------------------------------------------------------------

def test_clip_limits_count_no_point_outside_a_uniform_cloud():
    pts = np.random.default_rng(0).uniform(-1, 1, (1000, 2))          # (N, 2)
    lo, hi, n_out = figures.clip_limits(pts)
    assert n_out == 0
    assert np.all(lo < pts.min(0)) and np.all(hi > pts.max(0))


def test_clip_limits_count_exactly_the_points_off_the_axes():
    pts = np.random.default_rng(0).normal(size=(1000, 2))             # (N, 2)
    pts[:3] = [[50.0, 0.0], [0.0, -80.0], [40.0, 40.0]]
    lo, hi, n_out = figures.clip_limits(pts)
    outside = np.any((pts < lo) | (pts > hi), axis=1)
    assert n_out == outside.sum() >= 3 and outside[:3].all()


def test_mean_sd_draws_error_bars_only_for_a_finite_sd():
    means, yerr = figures.mean_sd([(0.5, None), (0.6, math.nan)])
    assert means.tolist() == [0.5, 0.6] and yerr is None
    means, yerr = figures.mean_sd([(0.5, 0.02), (0.6, None), (0.7, math.nan)])
    assert yerr.tolist() == [0.02, 0.0, 0.0]


def test_run_styles_are_distinct_and_keep_the_paper_colours():
    many = RUNS + tuple(f"deep_cifar10_beta{b}" for b in range(2, 17))   # 18 extra names: all distinct
    styles = figures.run_styles(many)
    assert len(set(styles.values())) == len(many)
    assert all(styles[r] == (c, "-") for r, c in figures.RUN_COLORS.items())
    assert figures.run_styles(reversed(many)) == styles
    assert figures.run_label("deep_cifar10_beta1") == "deep / cifar10, beta1"
    assert figures.run_label("simple_mnist") == "simple / mnist"


# ---- every figure writes a PNG -----------------------------------------------------------

@pytest.mark.parametrize("outlier", [False, True])
def test_latent_scatter_notes_clipping_exactly_when_points_fall_outside(tmp_path, drawn, outlier):
    rng = np.random.default_rng(1)
    mu = rng.uniform(-2, 2, (400, 2))                                  # (N, 2)
    if outlier:
        mu[0] = [100.0, 100.0]
    labels = rng.integers(0, 10, 400)                                  # (N,)
    path = figures.latent_scatter(mu, labels, [f"c{i}" for i in range(10)], "t", str(tmp_path / "s.png"),
                                  highlight={"vehicles": [0, 1, 8, 9], "animals": [2, 3, 4, 5, 6, 7]})
    assert_png(path)
    notes = [t for t in drawn[0]["texts"] if t.startswith("axes clipped")]
    assert notes == (["axes clipped: 1 of 400 points outside"] * 2 if outlier else [])


def test_latent_scatter_groups_use_no_class_colour(tmp_path):
    assert not set(figures.GROUP_COLORS) & set(figures.CLASS_COLORS)
    with pytest.raises(ValueError, match="at most 2 groups"):
        figures.latent_scatter(np.zeros((3, 2)), np.arange(3), ["a", "b", "c"], "t", str(tmp_path / "x.png"),
                               highlight={"a": [0], "b": [1], "c": [2]})


def test_training_curves_add_a_per_pixel_row_for_any_runs(tmp_path, drawn):
    rng = np.random.default_rng(2)
    runs = ("simple_mnist", "deep_cifar10", "deep_cifar10_beta1")
    hist = {r: {k: rng.uniform(1, 100, 30 + i) for k in ("loss", "rec", "kl")} for i, r in enumerate(runs)}
    dims = {r: 784 if "mnist" in r else 3072 for r in runs}
    assert_png(figures.training_curves(hist, str(tmp_path / "c.png"), {"deep_cifar10_beta1": 1.0}, dims))
    assert any("loss / D" in t for t in drawn[0]["texts"]) and len(drawn[0]["axes"]) == 6
    legend = [t for t in drawn[0]["texts"] if "beta1" in t]
    assert legend == ["deep / cifar10, beta1 ($\\beta$=1), D=3072"]
    assert_png(figures.training_curves(hist, str(tmp_path / "c1.png")))
    assert len(drawn[1]["axes"]) == 3
    with pytest.raises(ValueError, match="deep_cifar10_beta1"):
        figures.training_curves(hist, str(tmp_path / "c2.png"), n_dims={r: 1 for r in runs[:-1]})


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_separability_has_error_bars_exactly_with_an_sd(tmp_path, drawn, n_seeds):
    sd = 0.01 if n_seeds > 1 else None
    ten = {r: {"latent": (0.5, sd), "pca": (0.4, sd), "dims": 2} for r in RUNS}
    binary = {r: {"latent": (0.7, sd), "pca": (0.65, sd), "linear": (0.72, sd), "majority": 0.6}
              for r in RUNS if "cifar" in r}
    assert_png(figures.separability(ten, binary, str(tmp_path / "sep.png"), k=5, n_seeds=n_seeds))
    bars = [c for ax in drawn[0]["axes"] for c in ax["containers"] if isinstance(c, BarContainer)]
    assert len(bars) == 5 and all((c.errorbar is not None) == (n_seeds > 1) for c in bars)
    note = "one seed: no error bars" if n_seeds == 1 else "mean of 3 seeds, error bars ± SD"
    assert any(t.endswith(f"({note})") for t in drawn[0]["texts"])
    assert [len(c) for c in bars] == [len(ten)] * 2 + [len(binary)] * 3


def test_separability_accepts_a_subset_and_no_binary_runs(tmp_path):
    ten = {"simple_mnist_bernoulli": {"latent": (0.8, math.nan), "pca": (0.7, math.nan), "dims": 2}}
    assert_png(figures.separability(ten, {}, str(tmp_path / "sep.png"), k=5))


def test_the_other_figures_accept_any_run_names(tmp_path):
    runs = ("simple_mnist", "simple_mnist_bernoulli")
    assert_png(figures.sample_panels({r: images(4, seed=i) for i, r in enumerate(runs)},
                                     str(tmp_path / "p.png"), "prior", ncol=2))
    assert_png(figures.interpolations({r: images(2 * 5).reshape(2, 5, 8, 8, 1) for r in runs},
                                      str(tmp_path / "i.png"), "interp"))
    kl = {r: np.linspace(0.1, 2, 2 + i) for i, r in enumerate(runs)}
    assert_png(figures.kl_and_activity(kl, {r: v / 10 for r, v in kl.items()}, 0.01, str(tmp_path / "k.png")))
    with pytest.raises(ValueError, match="different runs"):
        figures.kl_and_activity(kl, {runs[0]: kl[runs[0]]}, 0.01, str(tmp_path / "k2.png"))


def test_images_figures_write_pngs(tmp_path):
    labels = np.arange(20) % 10
    assert_png(figures.train_examples({"A": (images(20), labels, [str(i) for i in range(10)])},
                                      str(tmp_path / "e.png"), per_class=2))
    assert_png(figures.reconstructions(images(5, c=3), {"m": images(5, c=3, seed=1)}, str(tmp_path / "r.png"),
                                       list("abcde"), "recon"))
    v = np.linspace(-1, 1, 3)
    assert_png(figures.manifold(images(9), v, v, str(tmp_path / "m.png"), "manifold"))
