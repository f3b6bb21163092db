"""Fixed explanatory text of the checkpoint section: what each verdict means, and the methods.

Plain text only (the templates escape it). Kept apart from the section's logic so that the
wording can be edited without touching code.
"""

from __future__ import annotations

__all__ = ["VERDICT_ORDER", "MEANING", "PVALUE_NOTE", "METHODS", "REFERENCES"]

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
        "figures: the row-standardised one falls on the normal.",
    ),
    "heavy-tailed": (
        "More mass far from the centre than a normal with the same variance: positive excess "
        "kurtosis, a Q-Q plot that bends away from the diagonal at both ends, and a survival "
        "function of |w| that decays like a power law rather than like exp(-t\u00b2/2).",
        "This survives row standardisation, so it is not just units with different scales. "
        "The Hill tail index \u03b1 in the table measures how heavy: the variance of a power-law "
        "tail is infinite for \u03b1 \u2264 2 and the kurtosis for \u03b1 \u2264 4; Gaussian "
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

METHODS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Data",
        (
            "Each tensor is read on its own in float64 from the checkpoint (never unpickled), "
            "flattened, and analysed if it has enough finite values; tensors that are constant "
            "or too small are marked degenerate or skipped, with the reason in the note column. "
            "The role (linear, convolution, embedding, bias, normalisation...) and fan-in are "
            "read from the tensor's name and shape.",
        ),
    ),
    (
        "Families and model selection",
        (
            "Normal, Laplace, logistic, Student t, generalised normal and uniform are fitted by "
            "maximum likelihood, and one-dimensional Gaussian mixtures by EM with the number of "
            "components (1 to 4) chosen by BIC. best_family is the family with the lowest BIC; "
            "delta_bic_normal is BIC(normal) \u2212 BIC(best), so 0 means the normal is best "
            "and large values mean it is clearly beaten.",
        ),
    ),
    (
        "Effect sizes and tails",
        (
            "Skewness and excess kurtosis (Fisher's definitions, bias-corrected); wasserstein1 "
            "is the Wasserstein-1 distance between the standardised sample and N(0, 1); "
            "tail_mass_ratio is the fraction of |z| > 3 divided by the normal's 0.0027. The tail "
            "index is the Hill estimator of |w| above a threshold chosen by minimising the "
            "Kolmogorov-Smirnov distance between the data and the fitted power law "
            "(Clauset, Shalizi and Newman), with a Vuong test against the alternatives.",
        ),
    ),
    (
        "Pooled against row-wise",
        (
            "verdict_pooled classifies the whole tensor; verdict_rowwise classifies the tensor "
            "after standardising each row (output unit) by its own mean and standard deviation. "
            "row_sw_pass_rate is the fraction of rows whose Shapiro-Wilk test does not reject "
            "normality at the 5 % level (rows are short enough for the test to be meaningful). "
            "A tensor that is heavy-tailed pooled but Gaussian row-wise is a scale-mixture.",
        ),
    ),
    (
        "Initialisation",
        (
            "ks_kaiming_uniform and ks_normal_init are Kolmogorov-Smirnov distances between the "
            "tensor and, respectively, PyTorch's default Kaiming-uniform initialisation "
            "U(\u2212b, b) with b = 1/\u221afan_in, and a normal with the tensor's own mean and "
            "standard deviation. A small first distance means the tensor still looks like its "
            "initialisation.",
        ),
    ),
    (
        "Figures",
        (
            "Evidence is drawn for the largest tensor of each role and for every tensor whose "
            "verdict is not gaussian (capped; the cap is stated in that section). Histograms "
            "and fits use a seeded random subsample when a tensor is very large; the Q-Q and "
            "survival plots use all values. The seed is in the header.",
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
