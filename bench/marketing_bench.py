"""App-promotion benchmark: telco-alone scoring, PSI exclusion of bank customers, uplift, and the model's lift.

Usage::

    .venv/bin/python bench/marketing_bench.py [--n 10000000] [--psi-n 1000000] [--people 200000] [--json PATH]

1. Scoring ``--n`` telco subscribers at the telco with :func:`protocols.vfl.standalone.score_standalone`
   (hetero LR with 16 telco features; SecureBoost with 30 trees of depth 3 trained on a plain reference),
   streaming in batches of ``--batch`` rows generated on the fly; each scorer runs in a forked child whose
   peak RSS is reported. Goals: ≥ 1e6 rows/s (LR), ≥ 2e5 rows/s (SB), peak ≤ 2 GB.
2. PSI exclusion: ``--psi-n`` bank customers (receiver) against as many telco candidates (sender), ECDH
   output to the sender (:func:`psi.engine.run_local` ``intersection_to_sender``), next to the balanced
   ECDH-PSI of ``bench/psi_bench.py`` (output to the receiver) on the same data: goal within 1.1×.
3. Evaluation: an audience of the synthetic telco's subscribers (``demo.synthetic``) split by the job's
   :func:`split_arms`, conversions simulated with a known true uplift (``simulate_conversions``), and the
   measured uplift with its interval from E4's pure core (``protocols.marketing.uplift``) when present.
4. Lift: AUC of the app-adoption label (``app_registered``) on held-out bank customers, bank features alone
   vs bank + telco features (centralised logistic regression: what hetero LR converges to), and the AUC
   of the telco-alone score (telco part + the one released offset): ``node.jobs.marketing.app_promotion_lift``,
   which the demo can call as well.

Figures printed side by side with the reference and written with ``--json`` under plain names.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc_meter import in_child  # noqa: E402

from node.jobs.marketing.app_promotion_lift import adoption_lift  # noqa: E402
from protocols.vfl import SbConfig, train_plain_secureboost  # noqa: E402
from protocols.vfl.model_parts import SbActivePart, SbPassivePart  # noqa: E402
from protocols.vfl.standalone import (  # noqa: E402
    StandaloneLr,
    StandalonePart,
    release_sb,
    score_standalone,
    standalone_part,
)

TELCO_FEATURES = 16
def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- 1. scoring


def _lr_part() -> StandaloneLr:
    rng = np.random.default_rng(1)
    return StandaloneLr(rng.normal(0, 0.3, TELCO_FEATURES), -1.2)


def _sb_part() -> StandalonePart:
    rng = np.random.default_rng(2)
    n = 20_000
    xa, xp = rng.normal(size=(n, 4)), rng.normal(size=(n, TELCO_FEATURES))
    y = ((0.7 * xa[:, 0] + xp[:, 1] - 0.6 * xp[:, 5] + 0.4 * xp[:, 9] + rng.normal(size=n)) > 0.5).astype(float)
    config = SbConfig(n_trees=30, max_depth=3, n_bins=32)
    active, passive = train_plain_secureboost(config, xa, y, xp)
    from protocols.vfl.model_parts import DataDigests, FeatureColumn, ModelCard, key_list_digest
    from protocols.wire.control import JobKind

    card = ModelCard(job_id=1, kind=JobKind.TRAIN_PROPENSITY, algo="secureboost", party="telco", peer_party="bank",
                     role="passive", features=[FeatureColumn(name=f"t{i}") for i in range(TELCO_FEATURES)],
                     data=DataDigests(keys_sha256=key_list_digest(["x"]), dataset_schema_digest="s"),
                     policy_version="bench")
    release = release_sb(card.model_id, SbActivePart.from_model(active, config), xa)
    return standalone_part(card, SbPassivePart.from_model(passive).model_dump(mode="json"), release)


def _score_stream(algo: str, n: int, batch: int) -> dict[str, Any]:
    part = _lr_part() if algo == "hetero_lr" else _sb_part()
    rng = np.random.default_rng(3)
    scoring, over, done = 0.0, 0, 0
    start = time.perf_counter()
    while done < n:
        m = min(batch, n - done)
        x = rng.standard_normal((m, TELCO_FEATURES))
        t0 = time.perf_counter()
        s = score_standalone(part, x)
        scoring += time.perf_counter() - t0
        over += int((s >= 0.5).sum())
        done += m
    return {"rows": n, "scoring_s": scoring, "wall_s": time.perf_counter() - start, "rows_per_s": n / scoring,
            "peak_mb": _peak_mb(), "over_half": over}


# ---------------------------------------------------------------- 2. PSI exclusion


def _exclusion(receiver: list[str], sender: list[str], workers: int) -> dict[str, Any]:
    from psi.engine import ProcessPoolMapper, run_local

    start = time.perf_counter()
    with ProcessPoolMapper(workers) as mapper:
        run = run_local(receiver, sender, "intersection_to_sender", mapper=mapper)
    return {"wall_s": time.perf_counter() - start, "excluded": len(run.sender.intersection),
            "bytes_r2s": run.bytes_r2s, "bytes_s2r": run.bytes_s2r, "peak_mb": _peak_mb()}


def psi_figures(n: int, workers: int) -> dict[str, Any]:
    """Ours (exclusion, output to the telco) and the balanced ECDH-PSI of psi_bench on the same data."""
    import psi_bench

    bank, candidates = psi_bench.make_data(n)
    ours = in_child(_exclusion, bank, candidates, workers)
    ref = in_child(psi_bench._ours, bank, candidates, workers)
    assert ours["excluded"] == ref["intersection"], "exclusion and balanced PSI disagree on the overlap"
    return {"psi_n": n, "ours_psi_wall_s": ours["wall_s"], "reference_psi_wall_s": ref["wall_s"],
            "psi_wall_ratio": ours["wall_s"] / ref["wall_s"], "ours_psi_bytes": ours["bytes_r2s"] + ours["bytes_s2r"],
            "reference_psi_bytes": ref["bytes_r2s"] + ref["bytes_s2r"], "psi_excluded": ours["excluded"]}


# ---------------------------------------------------------------- 3 and 4. synthetic population


def _population(people: int, seed: int) -> tuple[Any, Any]:
    import pandas as pd

    from demo.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        paths = generate(Path(tmp), n=people, seed=seed, progress=False)
        bank = pd.read_csv(paths.bank_customers, dtype={"id_number": str, "mobile": str})
        telco = pd.read_csv(paths.telco_subscribers, dtype={"id_number": str, "msisdn": str})
    return bank, telco


def evaluation_figures(bank: Any, telco: Any, seed: int = 5) -> dict[str, Any]:
    """Measured vs true uplift of a simulated campaign over non-customers (E4's pure core, if present)."""
    from demo.synthetic import simulate_conversions
    from node.jobs.marketing._screening import split_arms

    outsiders = telco[~telco["id_number"].isin(set(bank["id_number"])) & (telco["bank_app_installed"] == 0)]
    held = split_arms(len(outsiders), 0.3, seed)
    mobiles = outsiders["msisdn"].to_numpy(str)
    conv = simulate_conversions(telco, mobiles[~held].tolist(), mobiles[held].tolist(), seed)
    out: dict[str, Any] = {"eval_audience": int(len(outsiders)), "true_uplift": conv.true_uplift,
                           "naive_uplift": conv.converted_treated / max(conv.n_treated, 1)
                           - conv.converted_holdout / max(conv.n_holdout, 1)}
    try:
        from protocols.marketing.uplift import ArmCounts, evaluate_uplift
    except ImportError:
        return out
    release = evaluate_uplift({"treatment": ArmCounts(conv.n_treated, conv.converted_treated),
                               "holdout": ArmCounts(conv.n_holdout, conv.converted_holdout)}, k=50)
    out |= {"measured_uplift": release.uplift, "ci_low": release.interval[0] if release.interval else None,
            "ci_high": release.interval[1] if release.interval else None}
    return out


# ---------------------------------------------------------------- main


def _row(name: str, ours: object, ref: object) -> str:
    return f"{name:34} {ours!s:>16} {ref!s:>16}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000_000, help="telco subscribers scored")
    parser.add_argument("--batch", type=int, default=250_000, help="rows per scoring batch")
    parser.add_argument("--psi-n", type=int, default=1_000_000, help="bank customers (and candidates) in the PSI")
    parser.add_argument("--people", type=int, default=200_000, help="synthetic population for lift and uplift")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    lr = in_child(_score_stream, "hetero_lr", args.n, args.batch)
    sb = in_child(_score_stream, "secureboost", args.n, args.batch)
    print(f"telco-alone scoring of {args.n} subscribers in batches of {args.batch}")
    print(_row("", "ours", "goal"))
    print(_row("LR rows/s", f"{lr['rows_per_s']:.3g}", ">= 1e6"))
    print(_row("SB rows/s (30 trees, depth 3)", f"{sb['rows_per_s']:.3g}", ">= 2e5"))
    print(_row("LR peak RSS (MB)", f"{lr['peak_mb']:.0f}", "<= 2048"))
    print(_row("SB peak RSS (MB)", f"{sb['peak_mb']:.0f}", "<= 2048"))
    sys.stdout.flush()
    psi = psi_figures(args.psi_n, args.workers)
    print(f"\nPSI exclusion, {args.psi_n} bank customers vs {args.psi_n} candidates, {args.workers} workers")
    print(_row("", "exclusion", "balanced PSI"))
    print(_row("wall (s)", f"{psi['ours_psi_wall_s']:.2f}", f"{psi['reference_psi_wall_s']:.2f}"))
    print(_row("bytes", psi["ours_psi_bytes"], psi["reference_psi_bytes"]))
    print(_row("ratio (goal <= 1.1)", f"{psi['psi_wall_ratio']:.3f}", "1"))
    sys.stdout.flush()
    bank, telco = _population(args.people, 7)
    lift = adoption_lift(bank, telco)
    evaluation = evaluation_figures(bank, telco)
    print(f"\nlift of app_registered on {lift['lift_test_rows']} held-out customers")
    print(_row("", "with telco", "bank alone"))
    print(_row("AUC", f"{lift['federated_auc']:.4f}", f"{lift['bank_only_auc']:.4f}"))
    print(_row("AUC telco-alone score", f"{lift['telco_alone_auc']:.4f}", "-"))
    print(f"\ncampaign over {evaluation['eval_audience']} non-customers (30 % holdout)")
    print(_row("", "measured", "true"))
    measured = evaluation.get("measured_uplift", evaluation["naive_uplift"])
    print(_row("uplift", f"{measured:.4f}", f"{evaluation['true_uplift']:.4f}"))
    if "ci_low" in evaluation and evaluation["ci_low"] is not None:
        print(_row("95 % interval", f"[{evaluation['ci_low']:.4f}, {evaluation['ci_high']:.4f}]", ""))

    figures = {"n": args.n, "batch": args.batch, "ours_lr_rows_per_s": lr["rows_per_s"],
               "ours_sb_rows_per_s": sb["rows_per_s"], "ours_lr_peak_mb": lr["peak_mb"],
               "ours_sb_peak_mb": sb["peak_mb"],
               "ours_lr_wall_s": lr["wall_s"], "ours_sb_wall_s": sb["wall_s"], "goal_lr_rows_per_s": 1e6,
               "goal_sb_rows_per_s": 2e5, "goal_peak_mb": 2048, **psi, **lift, **evaluation}
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
