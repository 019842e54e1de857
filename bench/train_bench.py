"""Benchmark federated training (in-process driver) against centralised baselines on default_credit.

    .venv/bin/python bench/train_bench.py --algo lr|secureboost [--json PATH] [--bits 2048]
        [--trees 30 --depth 3 --bins 32] [--epochs 5 --batch 2048 --lr 0.05 --alpha 0.0001]

Split: 70/30 stratified on y, random_state=42. Bytes are the JSON wire size of every message.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocols.vfl import (  # noqa: E402
    LrConfig,
    OptimizerConfig,
    SbConfig,
    run_local_lr,
    run_local_secureboost,
    score_local_lr,
    score_local_secureboost,
    train_plain_secureboost,
)
from protocols.vfl._sb_tree import predict_margin  # noqa: E402

Arr = np.ndarray
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "fate"


def load(name: str = "default_credit") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    guest = pd.read_csv(DATA / f"{name}_hetero_guest.csv")
    host = pd.read_csv(DATA / f"{name}_hetero_host.csv")
    merged = guest.merge(host, on="id", suffixes=("_bank", "_telco"))
    bank_cols = [c + "_bank" if c + "_bank" in merged else c for c in guest.columns if c not in ("id", "y")]
    telco_cols = [c + "_telco" if c + "_telco" in merged else c for c in host.columns if c != "id"]
    return merged[bank_cols].to_numpy(float), merged[telco_cols].to_numpy(float), merged["y"].to_numpy(float)


def ks(y: np.ndarray, p: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(y, p)
    return float(np.max(tpr - fpr))


def run_lr(args: argparse.Namespace, xa: Arr, xp: Arr, y: Arr, tr: Arr, te: Arr) -> dict:
    cfg = LrConfig(
        n_rows=len(tr),
        batch_size=args.batch,
        max_epochs=args.epochs,
        alpha=args.alpha,
        optimizer=OptimizerConfig("adam", args.lr),
        tol=args.tol,
        allow_insecure_test_key=args.bits < 2048,
    )
    t0 = time.perf_counter()
    result = run_local_lr(cfg, xa[tr], y[tr], xp[tr], key_bits=args.bits)
    wall = time.perf_counter() - t0
    p = score_local_lr(result, xa[te], xp[te])
    c = 1.0 / (args.alpha * len(tr))
    central = LogisticRegression(C=c, max_iter=2000).fit(np.hstack([xa[tr], xp[tr]]), y[tr])
    bank = LogisticRegression(C=c, max_iter=2000).fit(xa[tr], y[tr])
    central_p = central.predict_proba(np.hstack([xa[te], xp[te]]))[:, 1]
    return {
        "ours_wall_s": wall,
        "auc": roc_auc_score(y[te], p),
        "ks": ks(y[te], p),
        "central_auc": roc_auc_score(y[te], central_p),
        "central_ks": ks(y[te], central_p),
        "bank_only_auc": roc_auc_score(y[te], bank.predict_proba(xa[te])[:, 1]),
        "iterations": result.arbiter.iterations,
        "stopped_early": result.arbiter.stopped_early,
        "epoch_taylor_loss": list(result.active.loss_history),
        "bytes_sent": result.traffic.total_bytes,
        "bytes_by_link": {f"{a}->{b}": n for (a, b), n in result.traffic.bytes.items()},
        "messages": sum(result.traffic.messages.values()),
        "arbiter_instructions_per_iteration": 1,
    }


def run_secureboost(args: argparse.Namespace, xa: Arr, xp: Arr, y: Arr, tr: Arr, te: Arr) -> dict:
    import xgboost as xgb

    cfg = SbConfig(n_trees=args.trees, max_depth=args.depth, n_bins=args.bins, allow_insecure_test_key=args.bits < 2048)
    t0 = time.perf_counter()
    result = run_local_secureboost(cfg, xa[tr], y[tr], xp[tr], key_bits=args.bits)
    wall = time.perf_counter() - t0
    p = score_local_secureboost(result, cfg, xa[te], xp[te])
    plain_a, plain_p = train_plain_secureboost(cfg, xa[tr], y[tr], xp[tr])
    plain_routes = {k: xp[te][:, f] <= thr for k, (f, thr) in plain_p.splits.items()}
    plain_prob = 1 / (1 + np.exp(-predict_margin(plain_a, xa[te], plain_routes, cfg)))

    def xgb_fit(x_tr: Arr, x_te: Arr) -> Arr:
        model = xgb.XGBClassifier(
            n_estimators=args.trees,
            max_depth=args.depth,
            learning_rate=cfg.learning_rate,
            max_bin=args.bins,
            tree_method="hist",
            reg_lambda=cfg.reg_lambda,
            min_child_weight=cfg.min_child_weight,
            base_score=float(y[tr].mean()),
            n_jobs=1,
        ).fit(x_tr, y[tr])
        return model.predict_proba(x_te)[:, 1]

    central_p = xgb_fit(np.hstack([xa[tr], xp[tr]]), np.hstack([xa[te], xp[te]]))
    return {
        "ours_wall_s": wall,
        "wall_s_per_tree": wall / args.trees,
        "auc": roc_auc_score(y[te], p),
        "ks": ks(y[te], p),
        "plain_reference_auc": roc_auc_score(y[te], plain_prob),
        "same_trees_as_plain": plain_a.trees == result.active.trees and plain_p.splits == result.passive.splits,
        "central_auc": roc_auc_score(y[te], central_p),
        "central_ks": ks(y[te], central_p),
        "bank_only_auc": roc_auc_score(y[te], xgb_fit(xa[tr], xa[te])),
        "passive_splits": len(result.passive.splits),
        "bytes_sent": result.traffic.total_bytes,
        "bytes_by_link": {f"{a}->{b}": n for (a, b), n in result.traffic.bytes.items()},
        "messages": sum(result.traffic.messages.values()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--algo", choices=["lr", "secureboost"], required=True)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--bits", type=int, default=2048)
    ap.add_argument("--data", default="default_credit")
    ap.add_argument("--trees", type=int, default=30)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--bins", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--alpha", type=float, default=1e-4)
    ap.add_argument("--tol", type=float, default=1e-5)
    args = ap.parse_args()
    xa, xp, y = load(args.data)
    tr, te = train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=42)
    out = (run_lr if args.algo == "lr" else run_secureboost)(args, xa, xp, y, tr, te)
    out = {"algo": args.algo, "key_bits": args.bits, "train_rows": len(tr), "test_rows": len(te), **out}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    width = max(len(k) for k in out)
    for key, value in out.items():
        shown = f"{value:.4f}" if isinstance(value, float) else value
        if not isinstance(value, (dict, list)):
            print(f"{key:<{width}}  {shown}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
