"""Fixed explanatory text of the checkpoint section: what each verdict means, and the methods.

Plain text only (the templates escape it). Kept apart from the section's logic so that the
wording can be edited without touching code.
"""

from __future__ import annotations

__all__ = ["MEANING", "PVALUE_NOTE", "REFERENCES", "VERDICT_ORDER", "methods"]

#: Display order of verdict labels (others follow alphabetically).
VERDICT_ORDER = (
    "gaussian",
    "scale-mixture",
    "heavy-tailed",
    "light-tailed",
    "skewed",
    "mixture",
    "degenerate",
)

MEANING: dict[str, tuple[str, ...]] = {
    "gaussian": (
        "The values are, in shape, indistinguishable from one normal distribution at the effect "
        "sizes that matter: excess kurtosis and skewness near zero, a normal Q-Q plot that stays "
        "on the diagonal into the tails, and a normal that the best alternative family beats by "
        "little or nothing in BIC.",
        "Gaussian does not say why. A tensor initialised from a normal and barely moved by "
        "training is Gaussian by inheritance; one that started uniform (Kaiming-uniform, the "
        "PyTorch default) and became Gaussian was reshaped by training, consistent with the "
        "central-limit picture of a weight as a sum of many small updates. The KS distances to "
        "the two initialisations in the table tell the two apart.",
    ),
    "scale-mixture": (
        "Pooled, the tensor looks heavy-tailed, but each row (one output unit's incoming "
        "weights) is close to Gaussian once standardised by its own mean and standard "
        "deviation: the rows are Gaussians with different scales.",
        "A scale mixture of Gaussians is always at least as heavy-tailed as a Gaussian "
        "(its excess kurtosis is 3 Var(s\u00b2) / E(s\u00b2)\u00b2 \u2265 0 for row scales "
        "s), so pooling rows with unequal norms manufactures kurtosis without any single unit "
        "being heavy-tailed. Compare the pooled and row-standardised curves in the evidence "
        "figures: the row-standardised curve falls closer to the normal.",
    ),
    "heavy-tailed": (
        "More mass far from the centre than a normal with the same variance: positive excess "
        "kurtosis, a Q-Q plot that bends away from the diagonal at both ends, and a survival "
        "function of the distance from the median that decays like a power law rather than "
        "like exp(-t\u00b2/2).",
        "This survives row standardisation, so it is not just units with different scales. "
        "The tail index a in the table (P(|w \u2212 median| > t) ~ t^\u2212a, Hill estimate) "
        "measures how heavy: the variance is infinite for a \u2264 2 and the kurtosis for "
        "a \u2264 4; Gaussian "
        "samples give large, sample-size dependent Hill estimates.",
    ),
    "light-tailed": (
        "Less mass in the tails than a normal: negative excess kurtosis, an S-shaped Q-Q plot "
        "that flattens at the ends. The usual cause is a bounded distribution.",
        "A tensor that still looks uniform (excess kurtosis near \u22121.2, small KS distance "
        "to the Kaiming-uniform initialisation) has barely moved from its initialisation: "
        "training changed it too little, relative to its initial spread, to reshape it. "
        "That is common for large layers trained briefly and says nothing about whether "
        "training ever produces Gaussians.",
    ),
    "skewed": (
        "One tail is longer than the other (skewness away from zero with a confidence interval "
        "excluding it). Biases and normalisation scales are often skewed because they are "
        "pushed in one direction by training (e.g. positive scales, negative biases before a "
        "ReLU).",
    ),
    "mixture": (
        "The histogram has more than one mode or shoulder, and a Gaussian mixture with two or "
        "more components beats a single normal by a large BIC margin. Typical causes are "
        "groups of units that specialised differently, dead units stuck near their initial "
        "values next to trained ones, or a concatenation of tensors with different roles "
        "(fused QKV projections).",
    ),
    "degenerate": (
        "Constant or nearly constant values (e.g. a bias initialised to zero and never "
        "trained, or a norm scale still at one). Shape statistics are undefined, so no shape "
        "verdict is given.",
    ),
}

PVALUE_NOTE = (
    "Why p-values are not the verdict",
    (
        "A weight tensor has 10\u2075 to 10\u2078 values. At n = 10\u2076 a normality test "
        "rejects a distribution whose excess kurtosis is 0.01, a difference invisible in any "
        "plot and irrelevant to any use of the weights; and trained weights are never exactly "
        "normal. A p-value at that size measures n, not the shape.",
        "The verdicts therefore rest on effect sizes with their uncertainty (skewness, excess "
        "kurtosis, Wasserstein-1 distance between the standardised sample and N(0, 1), the "
        "ratio of tail mass beyond 3 standard deviations to the normal's), on the BIC "
        "difference between the best family and the normal per value, and on the shape of "
        "the Q-Q and survival plots. Tests are reported where n is small enough for them to "
        "mean something (e.g. Shapiro-Wilk on each row, summarised as a pass rate).",
    ),
)


def methods() -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The methods text, with the thresholds read from the modules that apply them."""
    from ...analysis import checkpoint as A
    from ...stats import verdict as V

    return (
        (
            "Data",
            (
                "Each tensor is read on its own from the checkpoint (never unpickled) and "
                f"analysed on a seeded random subsample of at most {A.DEFAULT_MAX_SAMPLES:,} "
                "values (n_used); tensors with fewer values than the command's --min-numel "
                f"(default {A.DEFAULT_MIN_NUMEL}) are skipped, constant ones are degenerate, "
                "with the reason in the note column. Role and fan-in are read from the "
                "tensor's name and shape.",
            ),
        ),
        (
            "Families and model selection",
            (
                "Normal, Laplace, logistic, Student t, generalised normal and uniform are "
                "fitted by exact maximum likelihood, and a one-dimensional Gaussian mixture "
                "by EM with K = 1..4 chosen by BIC (on a subsample of "
                f"{A.MIXTURE_SAMPLES:,} values). best_family has the lowest BIC; "
                "delta_bic_normal = BIC(normal) \u2212 BIC(best): 0 when the normal is best. "
                "At n = 10\u2075 a BIC gap of hundreds is routine for trained weights, so it "
                "is evidence of a detectable difference, not of a large one.",
            ),
        ),
        (
            "Shape verdict (first rule that matches)",
            (
                "mixture: the BIC-selected mixture has K \u2265 2 and two clearly separated "
                f"modes (valley at most {V.DIP_MAX} of the lower peak, each side at least "
                f"{V.MIN_SIDE_WEIGHT:.0%} of the mass, Ashman's D \u2265 {V.MIN_ASHMAN_D:g}, "
                "and the data show the same valley).",
                f"skewed: the 95 % interval of the skewness lies beyond \u00b1{V.SKEW_TOL} and "
                f"Hinkley's quantile skewness agrees in sign and exceeds {V.QSKEW_TOL}.",
                "heavy-tailed / light-tailed: the 95 % interval of the excess kurtosis lies "
                f"entirely above {V.KURT_TOL} / below \u2212{V.KURT_TOL}.",
                "gaussian otherwise. scale-mixture: heavy-tailed pooled but gaussian once "
                "each output unit is standardised by its own mean and standard deviation. "
                "The tolerances are practical, not statistical: a Student t with 16 or more "
                "degrees of freedom counts as gaussian.",
            ),
        ),
        (
            "Effect sizes and tails",
            (
                "Skewness and bias-corrected excess kurtosis (equal to scipy.stats.kurtosis "
                "with bias=False) with normal-theory 95 % intervals; wasserstein1 is the exact "
                "Wasserstein-1 distance between the standardised sample and N(0, 1); "
                "tail_mass_ratio is P(|z| > 3) divided by the normal's 0.0027.",
                "tail_index is the Hill estimator of the survival exponent of the distance from "
                "the median, above a threshold chosen by minimising the Kolmogorov-Smirnov "
                "distance to the fitted power law (Clauset, Shalizi and Newman 2009), on each "
                "side; the table reports the heavier side. A Gaussian tail has no finite index: "
                "its estimate grows with the threshold, so large values mean light tails.",
            ),
        ),
        (
            "Per unit",
            (
                "row_sw_pass_rate: Shapiro-Wilk on up to "
                f"{A.ROW_TEST_MAX_ROWS} output units (rows) per tensor at the "
                f"{A.ROW_TEST_ALPHA:.0%} level, where each test has the power to mean "
                f"something; about {1 - A.ROW_TEST_ALPHA:.0%} of rows pass if every unit is "
                "Gaussian.",
            ),
        ),
        (
            "Initialisation",
            (
                "ks_kaiming_uniform is the Kolmogorov-Smirnov distance to PyTorch's default "
                "initialisation of linear and convolution weights, U(\u2212b, b) with "
                "b = 1/\u221afan_in; ks_normal_init the distance to a normal initialisation "
                "with the same standard deviation, N(0, b\u00b2/3) (N(0, 1) for embeddings). "
                "A small distance means the tensor still looks like that initialisation.",
            ),
        ),
        (
            "Figures",
            (
                "Evidence is drawn for the largest tensor of each role and for every tensor "
                "whose verdict is not gaussian, up to a cap stated in that section. Histograms "
                "fits and tail plots use a seeded subsample of at most "
                f"{A.DEFAULT_MAX_SAMPLES:,} values when a tensor is large (sizes in the JSON), "
                "Q-Q plots every value. The fitted curves come from the same estimators as the "
                "table, refitted on the figure's sample, so they can differ from the table in "
                "the last digits.",
            ),
        ),
    )


REFERENCES = (
    "Andrews, D. F. and Mallows, C. L. (1974). Scale mixtures of normal distributions. "
    "Journal of the Royal Statistical Society B 36, 99\u2013102.",
    "Clauset, A., Shalizi, C. R. and Newman, M. E. J. (2009). Power-law distributions in "
    "empirical data. SIAM Review 51, 661\u2013703.",
    "D'Agostino, R. B. and Pearson, E. S. (1973). Tests for departure from normality. "
    "Biometrika 60, 613\u2013622.",
    "Glorot, X. and Bengio, Y. (2010). Understanding the difficulty of training deep "
    "feedforward neural networks. AISTATS.",
    "He, K., Zhang, X., Ren, S. and Sun, J. (2015). Delving deep into rectifiers. ICCV.",
    "Hill, B. M. (1975). A simple general approach to inference about the tail of a "
    "distribution. Annals of Statistics 3, 1163\u20131174.",
    "Martin, C. H. and Mahoney, M. W. (2021). Implicit self-regularization in deep neural "
    "networks. Journal of Machine Learning Research 22(165).",
    "Schwarz, G. (1978). Estimating the dimension of a model. Annals of Statistics 6, "
    "461\u2013464.",
    "Shapiro, S. S. and Wilk, M. B. (1965). An analysis of variance test for normality. "
    "Biometrika 52, 591\u2013611.",
    "Vuong, Q. H. (1989). Likelihood ratio tests for model selection and non-nested "
    "hypotheses. Econometrica 57, 307\u2013333.",
)
