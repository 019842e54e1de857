"""Held-out evaluation at the bank: AUC, KS, ROC and KS figures, and the bank-only baseline.

Runs only where the labels are (the bank). The federated scores come from the federated model (the
telco's part contributes its partial scores or split routes over the data plane); the bank-only
model is trained here on the bank's own training rows, for the uplift figure. Figures are PNG files
drawn with matplotlib's Agg backend (no display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["bank_only_scores", "ks_statistic", "metrics", "save_figures"]

FloatArray = npt.NDArray[np.float64]


def ks_statistic(labels: FloatArray, scores: FloatArray) -> float:
    """Kolmogorov-Smirnov: the largest gap between the score CDFs of positives and negatives."""
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.max(tpr - fpr))


def metrics(labels: FloatArray, federated: FloatArray, bank_only: FloatArray) -> dict[str, float]:
    """AUC and KS of both models on the held-out rows."""
    from sklearn.metrics import roc_auc_score

    return {
        "auc_federated": float(roc_auc_score(labels, federated)),
        "ks_federated": ks_statistic(labels, federated),
        "auc_bank_only": float(roc_auc_score(labels, bank_only)),
        "ks_bank_only": ks_statistic(labels, bank_only),
        "n_test": float(len(labels)),
        "positive_rate_test": float(labels.mean()),
    }


def bank_only_scores(algorithm: str, x_train: FloatArray, y_train: FloatArray, x_test: FloatArray,
                     *, trees: int = 10, max_depth: int = 3) -> FloatArray:
    """Train the bank-only model (same algorithm family) and score the held-out rows."""
    if algorithm == "lr":
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(max_iter=1000).fit(x_train, y_train)
        out: FloatArray = lr.predict_proba(x_test)[:, 1]
        return out
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(max_iter=trees, max_depth=max_depth, random_state=0).fit(x_train, y_train)
    return np.asarray(model.predict_proba(x_test)[:, 1], dtype=np.float64)


def save_figures(directory: Path, labels: FloatArray, federated: FloatArray, bank_only: FloatArray,
                 title: str) -> list[str]:
    """Write ``roc.png`` and ``ks.png`` into ``directory``; return their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    directory.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 5))
    for name, scores in (("federated (bank + telco)", federated), ("bank only", bank_only)):
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name}: AUC {roc_auc_score(labels, scores):.3f}")
    ax.plot([0, 1], [0, 1], "k:", linewidth=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, held-out: {title}")
    ax.legend(loc="lower right")
    fig.savefig(directory / "roc.png", dpi=100)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, scores in (("federated", federated), ("bank only", bank_only)):
        thresholds = np.linspace(0.0, 1.0, 201)
        pos, neg = scores[labels == 1], scores[labels == 0]
        gap = [np.mean(pos <= t) - np.mean(neg <= t) for t in thresholds]
        ax.plot(thresholds, np.abs(gap), label=f"{name}: KS {ks_statistic(labels, scores):.3f}")
    ax.set(xlabel="score threshold", ylabel="|CDF(neg) - CDF(pos)|", title=f"KS, held-out: {title}")
    ax.legend()
    fig.savefig(directory / "ks.png", dpi=100)
    plt.close(fig)
    return ["roc.png", "ks.png"]
