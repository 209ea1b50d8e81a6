#!/usr/bin/env python3
"""Reference values for rampart-analysis, computed with scipy and statsmodels: the textbook pieces, and the
stratified (per-look) methods of issue 14: the Cochran-Mantel-Haenszel test over looks (statsmodels'
StratifiedTable), per-look rank statistics (scipy's rankdata and mannwhitneyu), the effect mixture's p-values and the
whole stratified ratio test, written out here independently of the Rust code.

Regenerate (from the repository root, any Python 3 with pip):
    python3 -m venv target/py && target/py/bin/pip install scipy statsmodels
    target/py/bin/python analysis/oracle/oracle.py > analysis/oracle/oracle.json

The Rust tests in analysis/tests/oracle.rs read the committed oracle.json; they never run Python.
"""
import json
import sys

import numpy as np
import scipy
import statsmodels
from scipy import optimize, special, stats
from statsmodels.stats.contingency_tables import StratifiedTable
from statsmodels.stats.proportion import proportions_ztest


def normal_quantiles():
    ps = [1e-12, 1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 0.975, 0.99, 0.999, 1 - 1e-6]
    return [{"p": p, "z": float(stats.norm.ppf(p))} for p in ps]


def normal_tails():
    zs = [-3.0, -1.0, 0.0, 0.5, 1.0, 1.6448536269514722, 1.959963984540054, 2.5, 3.0, 5.0, 8.0]
    return [{"z": z, "sf": float(stats.norm.sf(z))} for z in zs]


def chi_square_tails():
    cases = [(0.5, 1), (3.841458820694124, 1), (10.83, 1), (25.0, 1), (1.0, 2), (7.5, 3), (4.0, 5), (40.0, 30)]
    return [{"x": x, "df": df, "sf": float(stats.chi2.sf(x, df))} for x, df in cases]


def chi_square_quantiles():
    cases = [(0.5, 1), (0.95, 1), (0.999, 1), (0.95, 2), (0.99, 5), (0.9, 30)]
    return [{"p": p, "df": df, "x": float(stats.chi2.ppf(p, df))} for p, df in cases]


def goodness_of_fit():
    cases = [
        ([100, 900], [0.1, 0.9]),
        ([80, 920], [0.1, 0.9]),
        ([130, 870], [0.1, 0.9]),
        ([4950, 5050], [0.5, 0.5]),
        ([520, 9480], [0.05, 0.95]),
        ([30, 40, 30], [0.25, 0.5, 0.25]),
    ]
    out = []
    for observed, weights in cases:
        total = sum(observed)
        expected = [total * w / sum(weights) for w in weights]
        res = stats.chisquare(observed, expected)
        out.append({"observed": observed, "weights": weights, "statistic": float(res.statistic), "p_value": float(res.pvalue)})
    return out


def mann_whitney():
    # Per-bucket counts over the same ordered buckets; observations in one bucket tie.
    bounds = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    cases = [
        ([0, 5, 20, 40, 25, 8, 2, 0], [3, 40, 200, 380, 260, 90, 20, 7]),
        ([1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]),
        ([10, 0, 0, 0, 0, 0, 0, 90], [50, 0, 0, 0, 0, 0, 0, 50]),
        ([0, 0, 30, 30, 0, 0, 0, 0], [0, 0, 29, 31, 0, 0, 0, 0]),
        ([2, 9, 31, 12, 4, 1, 0, 1], [4, 11, 40, 30, 9, 3, 2, 1]),
    ]
    reps = []
    for i in range(len(bounds) + 1):
        if i == 0:
            reps.append(bounds[0] / 2)
        elif i == len(bounds):
            reps.append(bounds[-1])
        else:
            reps.append((bounds[i - 1] + bounds[i]) / 2)
    out = []
    for first, second in cases:
        x = np.repeat(np.arange(len(first)), first)
        y = np.repeat(np.arange(len(second)), second)
        res = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=True)
        xr = np.repeat(reps, first)
        yr = np.repeat(reps, second)
        hl = float(np.median(np.subtract.outer(xr, yr)))
        out.append({"bounds": bounds, "first": first, "second": second, "u": float(res.statistic),
                    "p_value": float(res.pvalue), "hodges_lehmann": hl})
    return out


def two_proportion_z():
    cases = [(450, 500, 4050, 4500), (425, 500, 4050, 4500), (90, 100, 880, 1000), (1, 50, 10, 450), (3000, 3000 + 17, 500, 600)]
    out = []
    for x1, n1, x2, n2 in cases:
        z, p = proportions_ztest([x1, x2], [n1, n2])
        out.append({"x1": x1, "n1": n1, "x2": x2, "n2": n2, "z": float(z), "p_value": float(p)})
    return out


def welch_t():
    cases = [(10.0, 4.0, 30, 9.0, 1.0, 50), (0.25, 0.01, 500, 0.24, 0.02, 4500), (5.0, 2.5, 12, 5.0, 2.5, 12), (1.0, 9.0, 3, -1.0, 0.5, 200)]
    out = []
    for m1, v1, n1, m2, v2, n2 in cases:
        res = stats.ttest_ind_from_stats(m1, np.sqrt(v1), n1, m2, np.sqrt(v2), n2, equal_var=False)
        a, b = v1 / n1, v2 / n2
        df = (a + b) ** 2 / (a * a / (n1 - 1) + b * b / (n2 - 1))
        out.append({"mean1": m1, "var1": v1, "n1": n1, "mean2": m2, "var2": v2, "n2": n2,
                    "t": float(res.statistic), "p_value": float(res.pvalue), "df": float(df)})
    return out


def mixture_tuning():
    # x solves x - ln(1 + x) = 2 ln(1/alpha); rho = expected_samples / x.
    out = []
    for alpha in [0.01, 0.05, 0.1, 0.2]:
        target = 2 * np.log(1 / alpha)
        x = optimize.brentq(lambda v: v - np.log1p(v) - target, 1e-9, 1e3, xtol=1e-15, rtol=1e-15)
        out.append({"alpha": alpha, "expected_samples": 500.0, "rho": float(500.0 / x)})
    return out


# Per-look increments (canary successes, canary trials, baseline successes, baseline trials, canary weight): a base
# rate that drifts while the canary's share changes, a real drop, and sparse errors.
RATIO_SEQUENCES = [
    [(475, 500, 9025, 9500, 0.05), (455, 500, 8740, 9500, 0.05), (760, 1000, 6840, 9000, 0.1), (700, 1000, 6300, 9000, 0.1)],
    [(40, 50, 410, 450, 0.1), (43, 50, 398, 450, 0.1), (41, 50, 405, 450, 0.1), (39, 50, 401, 450, 0.1),
     (42, 50, 409, 450, 0.1), (40, 50, 404, 450, 0.1), (38, 50, 406, 450, 0.1), (41, 50, 402, 450, 0.1)],
    [(199, 200, 3796, 3800, 0.05), (200, 200, 3799, 3800, 0.05), (197, 200, 3797, 3800, 0.05), (398, 400, 3598, 3600, 0.1)],
]


def mantel_haenszel():
    out = []
    for seq in RATIO_SEQUENCES:
        tables = [np.array([[cs, cn - cs], [bs, bn - bs]], dtype=float) for cs, cn, bs, bn, _ in seq]
        res = StratifiedTable(tables).test_null_odds(correction=False)
        out.append({"looks": [list(x) for x in seq], "statistic": float(res.statistic), "p_value": float(res.pvalue)})
    return out


LOG_WEIGHTS = np.log(np.array([8.0, 4.0, 2.0, 1.0]) / 15.0)


def smallest_effect(alpha, expected_samples):
    return (stats.norm.ppf(1 - alpha) + stats.norm.ppf(0.8)) / np.sqrt(expected_samples)


def mixture_p(theta, y, t):
    thetas = theta * 2.0 ** np.arange(4)
    log_ratio = special.logsumexp(LOG_WEIGHTS + thetas * y - 0.5 * thetas ** 2 * t)
    return float(min(1.0, np.exp(-log_ratio)))


def effect_mixture():
    cases = [(0.05, 500.0, 3.0, 400.0), (0.05, 2700.0, 150.0, 2700.0), (0.01, 500.0, -2.0, 100.0), (0.2, 50.0, 40.0, 900.0),
             (0.05, 500.0, 80.0, 500.0)]
    return [{"alpha": a, "expected_samples": m, "y": y, "t": t, "smallest_effect": float(smallest_effect(a, m)),
             "p_value": mixture_p(smallest_effect(a, m), y, t)} for a, m, y, t in cases]


def stratified_ratio():
    """The whole ratio test at tolerance 0 (alpha 0.05, expectedSamples 500, minSamples 100): after the last look,
    the within-look effect and the running minima over the looks of the fail and pass p-values."""
    out = []
    theta = smallest_effect(0.05, 500.0)

    def smooth(p, n):
        q = (p * n + 1) / (n + 2)
        return q * (1 - q)

    for seq in RATIO_SEQUENCES:
        time = total = cw = bw = per_look = 0.0
        cs = cn = bs = bn = 0.0
        fail_p = pass_p = 1.0
        for s_c, n_c, s_b, n_b, _ in seq:
            t = n_c * n_b / (n_c + n_b)
            time += t
            total += t * (s_c / n_c - s_b / n_b)
            cw += t * t / n_c
            bw += t * t / n_b
            # Variance of t·d under "no difference", from this look's pooled share.
            a = (s_c + s_b) / (n_c + n_b)
            per_look += t * t * (a * (1 - a) / n_c + a * (1 - a) / n_b)
            cs, cn, bs, bn = cs + s_c, cn + n_c, bs + s_b, bn + n_b
            if cn < 100 or bn < 100:
                continue
            pooled = (cs + bs) / (cn + bn)
            variance = max(smooth(pooled, cn) * cw + smooth(pooled, bn) * bw, per_look) / time ** 2
            effect = total / time
            y = effect / np.sqrt(variance) * np.sqrt(time)
            fail_p = min(fail_p, mixture_p(theta, -y, time))
            pass_p = min(pass_p, mixture_p(theta, y, time))
        out.append({"looks": [list(x) for x in seq], "effect": total / time, "fail_p": fail_p, "pass_p": pass_p})
    return out


# Per-look bucket increments of canary and baseline over the same buckets (the last is +Inf).
RANK_SEQUENCES = [
    [([0, 5, 20, 40, 25, 8, 2, 0], [3, 40, 200, 380, 260, 90, 20, 7])],
    [([0, 0, 10, 30, 10], [0, 5, 100, 300, 45]), ([0, 1, 5, 30, 14], [1, 10, 150, 250, 39]),
     ([2, 2, 20, 60, 16], [3, 30, 300, 500, 67])],
    [([10, 30, 10, 0], [100, 300, 50, 0]), ([0, 20, 20, 10], [50, 300, 100, 0])],
]


def rank_strata():
    out = []
    for seq in RANK_SEQUENCES:
        looks = []
        time = total = 0.0
        for canary, baseline in seq:
            canary, baseline = np.array(canary, float), np.array(baseline, float)
            x = np.repeat(np.arange(len(canary)), canary.astype(int))
            y = np.repeat(np.arange(len(baseline)), baseline.astype(int))
            ranks = stats.rankdata(np.concatenate([x, y]))
            n = len(ranks)
            d = (ranks[: len(x)].mean() - ranks[len(x):].mean()) / n
            t = len(x) * len(y) / n
            # Permutation variance of t·d: t · N/(N−1) · population variance of the scores rank/N.
            variance = t * n / (n - 1) * np.var(ranks / n)
            mw = stats.mannwhitneyu(x, y, alternative="two-sided", method="asymptotic", use_continuity=False)
            looks.append({"canary": canary.tolist(), "baseline": baseline.tolist(), "difference": float(d),
                          "variance": float(variance), "mann_whitney_p": float(mw.pvalue)})
            time += t
            total += t * d
        out.append({"looks": looks, "effect": total / time})
    return out


def main():
    doc = {
        "generated_by": "analysis/oracle/oracle.py",
        "versions": {"python": sys.version.split()[0], "numpy": np.__version__, "scipy": scipy.__version__,
                     "statsmodels": statsmodels.__version__},
        "normal_quantiles": normal_quantiles(),
        "normal_tails": normal_tails(),
        "chi_square_tails": chi_square_tails(),
        "chi_square_quantiles": chi_square_quantiles(),
        "goodness_of_fit": goodness_of_fit(),
        "mann_whitney": mann_whitney(),
        "two_proportion_z": two_proportion_z(),
        "welch_t": welch_t(),
        "mixture_tuning": mixture_tuning(),
        "mantel_haenszel": mantel_haenszel(),
        "effect_mixture": effect_mixture(),
        "stratified_ratio": stratified_ratio(),
        "rank_strata": rank_strata(),
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
