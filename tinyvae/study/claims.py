"""The paper's claims, each judged against a baseline and the spread between seeds.

:func:`judge_claims` reads the ``metrics.json`` structure that ``run_all.py``
writes (``runs[name]["seeds"][seed]`` holds one seed's numbers) and returns
one verdict per claim: "supported", "partly supported", "not supported",
"inconclusive" (the effect is positive but within the noise) or "not
tested" (a run it needs is absent).

**Seeds.** A difference ``d`` (e.g. the VAE's accuracy minus its baseline's)
is computed per seed. With ``n >= 2`` seeds it counts when the one-sided 95%
Student-t bound ``mean(d) - t(n-1) * SD(d) / sqrt(n)`` is above zero: the
spread between training seeds, not the test set's sampling error, decides.
With one seed the test-sampling standard error (SE) of ``d`` is used
(``d > 2 SE``) and the verdict says "one seed: spread unknown".
"""
import math

import numpy as np

from ..probes import VEHICLE_CLASSES

Z = 2.0                     # one seed: a difference counts beyond Z test-sampling standard errors
T95 = {1: 6.314, 2: 2.920, 3: 2.353, 4: 2.132, 5: 2.015, 6: 1.943, 7: 1.895, 8: 1.860, 9: 1.833}
CLASS_KEPT_MARGIN = 0.05    # (e): "very accurate" = reconstructions keep the digit within 5 points of the originals
FLAT_SHARE = 0.10           # (g): "flattens" = less than 10% of the loss's drop comes after batch 4,000


def t95(df):
    """One-sided 95% Student-t quantile for ``df`` degrees of freedom."""
    return T95.get(df, 1.645 + 2.4 / df) if df < 10 else 1.645 + 2.4 / df


class Diff:
    """A difference measured per seed: its mean, SD, the one-sided 95% bounds, and whether it counts."""

    def __init__(self, per_seed, se_one_seed=None):
        self.values = [float(v) for v in per_seed]
        self.n = len(self.values)
        self.mean = float(np.mean(self.values))
        self.sd = float(np.std(self.values, ddof=1)) if self.n > 1 else None
        if self.n > 1:
            half = t95(self.n - 1) * self.sd / math.sqrt(self.n)
        else:
            half = Z * se_one_seed if se_one_seed is not None else float("nan")
        self.lower, self.upper = self.mean - half, self.mean + half

    @property
    def positive(self):
        """The difference is above zero beyond the noise."""
        return self.lower > 0

    @property
    def negative(self):
        return self.upper < 0

    def text(self, digits=3):
        f = f"{{:+.{digits}f}}"
        if self.n > 1:
            return f"{f.format(self.mean)} (SD {self.sd:.{digits}f} over {self.n} seeds)"
        return f"{f.format(self.mean)} (one seed: spread unknown)"

    def as_dict(self):
        return {"mean": self.mean, "sd": self.sd, "n": self.n, "values": self.values,
                "lower95": self.lower, "upper95": self.upper}


def _seeds(runs, name):
    return list(runs[name]["seeds"].values()) if name in runs else []


def _get(m, key):
    for part in key.split("."):
        m = m[part]
    return m


def _ms(values, digits=3):
    """"mean ± SD" of a list of numbers (just the number for one)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def _paired(runs, comp, key, a, b, stat):
    """Diff of ``stat`` between runs a and b over the seeds both have (one seed: the paired SE)."""
    sa, sb = runs[a]["seeds"], runs[b]["seeds"]
    seeds = [s for s in sa if s in sb]
    d = [_get(sa[s], stat) - _get(sb[s], stat) for s in seeds]
    se = comp.get(key, {}).get(seeds[0], {}).get("se") if len(seeds) == 1 else None
    return Diff(d, se)


def _verdict_vs(diff, also=None):
    """supported / inconclusive / not supported for a difference that should be positive."""
    if diff.positive and (also is None or also):
        return "supported"
    if diff.mean > 0 and not diff.negative:
        return "inconclusive"
    return "not supported"


def _missing(runs, *names):
    absent = [n for n in names if n not in runs]
    return {"verdict": "not tested", "evidence": f"needs run(s) {', '.join(absent)}, absent from this study",
            "criterion": "", "numbers": {}} if absent else None


def claim_a(runs, comp):
    """MNIST digits form distinct clusters in the simple VAE's 2-D latent space"""
    seeds = _seeds(runs, "simple_mnist")
    rec = np.array([m["per_class_recall"] for m in seeds])            # (S, 10)
    base = np.array([m["pca_per_class_recall"] for m in seeds])       # (S, 10)
    n_c = max(1, seeds[0]["n_test"] // 10)
    ok, classes = [], []
    for c in range(10):
        se = math.sqrt(rec[0, c] * (1 - rec[0, c]) / n_c + base[0, c] * (1 - base[0, c]) / n_c)
        d = Diff(rec[:, c] - base[:, c], se)
        above_chance = Diff(rec[:, c] - 0.1, math.sqrt(rec[0, c] * (1 - rec[0, c]) / n_c))
        classes.append({"class": c, "recall": rec[:, c].tolist(), "pca_recall": base[:, c].tolist(),
                        "vs_pca": d.as_dict()})
        ok.append(d.positive and above_chance.positive)
    acc = [m["knn_accuracy"] for m in seeds]
    pca = [m["pca_knn_accuracy"] for m in seeds]
    conf = seeds[0]["top_confusions"][:2]
    verdict = "supported" if all(ok) else "partly supported" if any(ok) else "not supported"
    weak = [str(c) for c in range(10) if not ok[c]]
    return {
        "claim": "MNIST digits form distinct clusters in the simple VAE's 2-D latent space",
        "criterion": "per digit: kNN recall of the 2-D latent means above a 2-D PCA of the pixels (same "
                     "kNN) and above chance (0.1), beyond the seed spread; all ten digits: supported, "
                     "some: partly supported",
        "baseline": "2-D PCA of the pixels; chance 0.1",
        "evidence": f"kNN accuracy {_ms(acc)} vs PCA {_ms(pca)}; digits beating PCA: "
                    f"{sum(ok)}/10" + (f" (not: {', '.join(weak)})" if weak else "")
                    + f"; recall per digit {', '.join(f'{c}: {rec[:, c].mean():.2f}' for c in range(10))}; "
                    + "largest confusions " + ", ".join(f"{t}->{p} ({n})" for t, p, n in conf),
        "verdict": verdict,
        "numbers": {"knn_accuracy": acc, "pca_knn_accuracy": pca, "classes": classes},
    }


def _binary_claim(runs, run, key, claim, groups):
    seeds = _seeds(runs, run)
    vae = [m[key]["knn_accuracy"] for m in seeds]
    pca = [m[key]["pca_knn_accuracy"] for m in seeds]
    maj = [m[key]["majority_rate"] for m in seeds]
    se = seeds[0][key]["se"] * math.sqrt(2)
    vs_pca, vs_maj = Diff(np.subtract(vae, pca), se), Diff(np.subtract(vae, maj), seeds[0][key]["se"])
    if vs_pca.positive and vs_maj.positive:
        verdict = "supported"
    elif vs_maj.positive:
        verdict = "partly supported"
    else:
        verdict = _verdict_vs(vs_maj)
    note = {"supported": "the latent separates them better than the pixels' PCA of the same size",
            "partly supported": "it separates them, but no better than a PCA of the pixels with as many "
                                "dimensions: the separation is in the pixels, not learned by the VAE",
            }.get(verdict, "")
    return {
        "claim": claim,
        "criterion": f"{groups} kNN accuracy above the majority rate and above a PCA of the pixels with the "
                     f"same number of dims, beyond the seed spread; above the majority rate only: partly",
        "baseline": "PCA of the pixels (same dims); majority rate",
        "evidence": f"kNN {_ms(vae)} vs PCA {_ms(pca)} (difference {vs_pca.text()}) vs majority rate "
                    f"{_ms(maj)}" + (f"; {note}" if note else ""),
        "verdict": verdict,
        "numbers": {"knn_accuracy": vae, "pca_knn_accuracy": pca, "majority_rate": maj,
                    "vs_pca": vs_pca.as_dict(), "vs_majority": vs_maj.as_dict()},
    }


def claim_b(runs, comp):
    """the simple VAE's CIFAR-10 latent space separates vehicles from animals"""
    return _binary_claim(runs, "simple_cifar10", "vehicle_animal",
                         f"the simple VAE's CIFAR-10 latent space separates vehicles "
                         f"({', '.join(VEHICLE_CLASSES)}) from animals", "vehicle-vs-animal")


def claim_h(runs, comp):
    """the deep VAE separates cars and trucks from deer and dogs"""
    return _binary_claim(runs, "deep_cifar10", "car_truck_deer_dog",
                         "the deep VAE separates cars and trucks from deer and dogs", "car/truck-vs-deer/dog")


def _rec_text(runs, name):
    s = _seeds(runs, name)
    L = s[0]["latent"]
    return (f"{name.split('_')[0]} {_ms([m['rec_sse_mu'] for m in s], 1)} (PCA-{L} "
            f"{_ms([m['pca_rec_sse'] for m in s], 1)})")


def claim_c(runs, comp):
    """the 16-D highdim VAE reconstructs CIFAR-10 better than the 2-D simple VAE"""
    d = _paired(runs, comp, "rec_simple_minus_highdim", "simple_cifar10", "highdim_cifar10", "rec_sse_mu")
    beats = [r for r in ("simple_cifar10", "highdim_cifar10")
             if Diff([m["pca_rec_sse"] - m["rec_sse_mu"] for m in _seeds(runs, r)]).mean > 0]
    return {
        "claim": "the 16-D highdim VAE reconstructs CIFAR-10 better than the 2-D simple VAE",
        "criterion": "squared error of decode(mu) per test image, highdim below simple beyond the seed spread; "
                     "each compared with a PCA of the pixels with as many components as its latent",
        "baseline": "PCA-2 and PCA-16 reconstructions; the mean image",
        "evidence": f"SSE {_rec_text(runs, 'simple_cifar10')}, {_rec_text(runs, 'highdim_cifar10')}; "
                    f"simple - highdim {d.text(2)}; mean image "
                    f"{_seeds(runs, 'simple_cifar10')[0]['mean_image_rec_sse']:.1f}; "
                    + (f"only {beats[0].split('_')[0]} beats the PCA of its size" if len(beats) == 1 else
                       "both beat their PCA" if beats else "neither beats a PCA of its size"),
        "verdict": _verdict_vs(d),
        "numbers": {"simple_minus_highdim": d.as_dict()},
    }


def _ablation_text(runs, comp, stat, sign, what):
    """What the KL-weight ablation says about deep vs simple: architecture at equal beta, beta alone."""
    parts = []
    better = "" if sign > 0 else " (lower error)"
    if "deep_cifar10_beta1" in runs:
        d = _paired(runs, comp, "", "deep_cifar10_beta1", "simple_cifar10", stat)
        parts.append(f"at equal beta 1, deep better than simple{better} by {_scaled(d, sign).text()}")
    if "simple_cifar10_beta0.5" in runs:
        d = _paired(runs, comp, "", "simple_cifar10_beta0.5", "simple_cifar10", stat)
        parts.append(f"simple at beta 0.5 better than at beta 1{better} by {_scaled(d, sign).text()}")
    if not parts:
        return f"; deep has beta 0.5, simple 1: the {what} difference mixes architecture and KL weight " \
               f"(run with --extra-runs for the ablation)"
    return "; ablation: " + "; ".join(parts)


def _scaled(d, sign):
    out = Diff([sign * v for v in d.values])
    out.lower, out.upper = (d.lower, d.upper) if sign > 0 else (-d.upper, -d.lower)
    return out


def claim_d(runs, comp):
    """the deep VAE separates CIFAR-10 classes slightly better than the simple VAE"""
    d = _paired(runs, comp, "knn_deep_minus_simple", "deep_cifar10", "simple_cifar10", "knn_accuracy")
    pca = _ms([m["pca_knn_accuracy"] for m in _seeds(runs, "deep_cifar10")])
    return {
        "claim": "the deep VAE separates CIFAR-10 classes slightly better than the simple VAE",
        "criterion": "10-class kNN accuracy of deep above simple beyond the seed spread (both 2-D; "
                     "baseline: a 2-D PCA of the pixels)",
        "baseline": "2-D PCA of the pixels",
        "evidence": f"kNN deep {_ms([m['knn_accuracy'] for m in _seeds(runs, 'deep_cifar10')])} vs simple "
                    f"{_ms([m['knn_accuracy'] for m in _seeds(runs, 'simple_cifar10')])} vs PCA {pca}; "
                    f"deep - simple {d.text()}" + _ablation_text(runs, comp, "knn_accuracy", 1, "accuracy"),
        "verdict": _verdict_vs(d),
        "numbers": {"deep_minus_simple": d.as_dict()},
    }


def claim_e(runs, comp):
    """the simple VAE's MNIST reconstructions are very accurate"""
    seeds = _seeds(runs, "simple_mnist")
    kept = [m["reconstruction_class"]["kept"] for m in seeds]
    pca = [m["reconstruction_class"]["pca_kept"] for m in seeds]
    orig = [m["reconstruction_class"]["originals"] for m in seeds]
    vs_pca = Diff(np.subtract(kept, pca), math.sqrt(2 * kept[0] * (1 - kept[0]) / seeds[0]["n_test"]))
    close = Diff(np.subtract(kept, orig) + CLASS_KEPT_MARGIN, math.sqrt(kept[0] * (1 - kept[0]) / seeds[0]["n_test"]))
    verdict = "supported" if close.positive else "partly supported" if vs_pca.positive else "not supported"
    conf = seeds[0]["reconstruction_class"]["top_confusions"][:3]
    sse = _ms([m["rec_sse_mu"] for m in seeds], 1)
    return {
        "claim": "the simple VAE's MNIST reconstructions are very accurate",
        "criterion": f"a pixel classifier (kNN on a 50-D PCA of the training images) gives decode(mu) its "
                     f"digit's label within {CLASS_KEPT_MARGIN:g} of how often it labels the originals right; "
                     f"only above PCA-2 reconstructions: partly",
        "baseline": "PCA-2 reconstructions; the originals",
        "evidence": f"digit kept {_ms(kept)} vs originals {_ms(orig)} vs PCA-2 reconstructions {_ms(pca)}; "
                    f"most frequent changes " + ", ".join(f"{t}->{p} ({n})" for t, p, n in conf)
                    + f"; SSE {sse} vs PCA-2 {_ms([m['pca_rec_sse'] for m in seeds], 1)} vs mean image "
                    f"{seeds[0]['mean_image_rec_sse']:.1f}",
        "verdict": verdict,
        "numbers": {"kept": kept, "pca_kept": pca, "originals": orig, "vs_pca": vs_pca.as_dict()},
    }


def claim_f(runs, comp):
    """the deep VAE reconstructs CIFAR-10 slightly better than the simple VAE"""
    d = _paired(runs, comp, "rec_simple_minus_deep", "simple_cifar10", "deep_cifar10", "rec_sse_mu")
    return {
        "claim": "the deep VAE reconstructs CIFAR-10 slightly better than the simple VAE",
        "criterion": "squared error of decode(mu) per test image, deep below simple beyond the seed spread "
                     "(baseline: PCA-2 reconstructions)",
        "baseline": "PCA-2 reconstructions",
        "evidence": f"SSE {_rec_text(runs, 'simple_cifar10')}, {_rec_text(runs, 'deep_cifar10')}; simple - deep "
                    f"{d.text(2)}" + _ablation_text(runs, comp, "rec_sse_mu", -1, "reconstruction"),
        "verdict": _verdict_vs(d),
        "numbers": {"simple_minus_deep": d.as_dict()},
    }


def claim_g(runs, comp):
    """MNIST's training loss flattens after about 4,000 batches, while CIFAR-10's plateaus higher"""
    mn, cf = _seeds(runs, "simple_mnist"), _seeds(runs, "simple_cifar10")
    share = [m["curve"]["drop_after_step"] for m in mn]
    step = mn[0]["curve"]["step"]
    out = {"claim": f"MNIST's training loss flattens after about {step:,} batches, while CIFAR-10's "
                    f"plateaus higher",
           "criterion": f"simple/MNIST: under {FLAT_SHARE:.0%} of the smoothed loss's drop comes after batch "
                        f"{step:,}; simple/CIFAR-10's final loss per pixel dimension above MNIST's",
           "baseline": "MNIST's own curve; loss per pixel so 784 and 3072 dims compare"}
    if any(v is None for v in share):
        return {**out, "verdict": "not tested", "numbers": {},
                "evidence": f"the runs are shorter than {step:,} batches"}
    per_dim = Diff([c["curve"]["final_loss_per_dim"] - m["curve"]["final_loss_per_dim"] for c, m in zip(cf, mn)])
    flat = max(share) < FLAT_SHARE
    higher = all(v > 0 for v in per_dim.values)
    return {**out, "verdict": "supported" if flat and higher else "partly supported" if flat or higher
            else "not supported",
            "evidence": f"share of MNIST's drop after batch {step:,}: {_ms(share)}; final loss per pixel dim "
                        f"CIFAR-10 {_ms([m['curve']['final_loss_per_dim'] for m in cf], 4)} vs MNIST "
                        f"{_ms([m['curve']['final_loss_per_dim'] for m in mn], 4)} (per image "
                        f"{_ms([m['curve']['final_loss_per_dim'] * m['n_dims'] for m in cf], 1)} vs "
                        f"{_ms([m['curve']['final_loss_per_dim'] * m['n_dims'] for m in mn], 1)}: higher "
                        f"only because CIFAR-10 has 3072 dims to MNIST's 784)"
                        if not higher else
                        f"share of MNIST's drop after batch {step:,}: {_ms(share)}; final loss per pixel dim "
                        f"CIFAR-10 {_ms([m['curve']['final_loss_per_dim'] for m in cf], 4)} vs MNIST "
                        f"{_ms([m['curve']['final_loss_per_dim'] for m in mn], 4)}",
            "numbers": {"drop_after_step": share, "cifar_minus_mnist_per_dim": per_dim.as_dict()}}


CLAIMS = {"a": (claim_a, ("simple_mnist",)), "b": (claim_b, ("simple_cifar10",)),
          "c": (claim_c, ("simple_cifar10", "highdim_cifar10")),
          "d": (claim_d, ("simple_cifar10", "deep_cifar10")), "e": (claim_e, ("simple_mnist",)),
          "f": (claim_f, ("simple_cifar10", "deep_cifar10")),
          "g": (claim_g, ("simple_mnist", "simple_cifar10")), "h": (claim_h, ("deep_cifar10",))}


def judge_claims(summary):
    """Every claim of the paper, judged from the numbers (see the module docstring).

    Returns {"a": {"id", "claim", "criterion", "baseline", "evidence", "verdict", "numbers",
    "seeds"}, ...}
    """
    runs, comp = summary["runs"], summary.get("comparisons", {})
    out = {}
    for key, (fn, needs) in CLAIMS.items():
        c = _missing(runs, *needs) or fn(runs, comp)
        c.setdefault("claim", fn.__doc__)
        c["id"] = key
        c["seeds"] = min(len(runs[n]["seeds"]) for n in needs if n in runs) if any(n in runs for n in needs) else 0
        if c["seeds"] == 1 and c["verdict"] not in ("not tested",):
            c["verdict"] += " (one seed: spread unknown)"
        out[key] = c
    return out
