#!/usr/bin/env python3
"""Reference values for rampart-analysis' textbook pieces, computed with scipy and statsmodels.

Regenerate (from the repository root):
    pip install scipy statsmodels && python3 analysis/oracle/oracle.py > analysis/oracle/oracle.json

The Rust tests in analysis/tests/oracle.rs read the committed oracle.json; they never run Python.
"""
import json
import sys

import numpy as np
import scipy
import statsmodels
from scipy import optimize, stats
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
    }
    json.dump(doc, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
