"""A small two-party population and models trained with the in-process VFL drivers, stored per party.

Bank: customers with ``customer_id``, ``id_number``, three numeric features and a label. Telco:
subscribers with ``id_number`` and three numeric features; it knows 80 % of the bank's customers plus
subscribers the bank does not have. Training uses the aligned intersection (as PSI would give it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from node.model_store import ModelStore
from protocols.vfl import LrConfig, SbConfig, run_local_lr, run_local_secureboost, train_plain_secureboost
from protocols.vfl.model_parts import (
    DataDigests,
    FallbackModel,
    FeatureColumn,
    LrPart,
    ModelCard,
    SbActivePart,
    SbPassivePart,
    key_list_digest,
)
from psi.identifiers import gb11643_check_digit

BANK_FEATURES = ["age", "balance", "products_held"]
TELCO_FEATURES = ["tenure_months", "arpu", "data_usage_gb"]
TYPES = {"age": "integer", "balance": "float", "products_held": "integer", "tenure_months": "integer",
         "arpu": "float", "data_usage_gb": "float"}


def id_number(i: int) -> str:
    first17 = f"110101{1970 + i % 40:04d}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
    return first17 + gb11643_check_digit(first17)


@dataclass
class Population:
    bank: pd.DataFrame
    telco: pd.DataFrame
    aligned_bank: pd.DataFrame
    aligned_telco: pd.DataFrame


def population(n_bank: int = 160, seed: int = 3) -> Population:
    rng = np.random.default_rng(seed)
    ids = [id_number(i) for i in range(n_bank + 60)]
    bank = pd.DataFrame({
        "customer_id": [f"C{i:06d}" for i in range(n_bank)],
        "id_number": ids[:n_bank],
        "age": rng.integers(20, 70, n_bank),
        "balance": np.round(rng.gamma(2.0, 5000.0, n_bank), 2),
        "products_held": rng.integers(0, 6, n_bank),
    })
    telco_idx = [i for i in range(n_bank) if i % 5 != 0] + list(range(n_bank, n_bank + 60))
    m = len(telco_idx)
    telco = pd.DataFrame({
        "id_number": [ids[i] for i in telco_idx],
        "tenure_months": rng.integers(1, 120, m),
        "arpu": np.round(rng.gamma(2.0, 30.0, m), 2),
        "data_usage_gb": np.round(rng.gamma(1.5, 4.0, m), 2),
    })
    z = (0.03 * (bank["age"] - 45) - 0.00003 * bank["balance"] + 0.2 * bank["products_held"]).to_numpy()
    aligned = bank.merge(telco, on="id_number")
    za = (0.03 * (aligned["age"] - 45) - 0.00003 * aligned["balance"] + 0.2 * aligned["products_held"]
          - 0.02 * (aligned["tenure_months"] - 60) + 0.01 * (aligned["arpu"] - 60)).to_numpy()
    bank["default_flag"] = (rng.random(n_bank) < 1 / (1 + np.exp(-z))).astype(int)
    aligned = aligned.merge(bank[["id_number", "default_flag"]], on="id_number")
    aligned["default_flag"] = (rng.random(len(aligned)) < 1 / (1 + np.exp(-za))).astype(int)
    return Population(bank, telco, aligned[["customer_id", "id_number", *BANK_FEATURES, "default_flag"]],
                      aligned[["id_number", *TELCO_FEATURES]])


def governance(dataset: str, frame: pd.DataFrame) -> dict:
    fields: dict[str, dict] = {}
    for col in frame.columns:
        if col == "customer_id":
            fields[col] = {"type": "string", "category": "identifier", "security_level": 3, "key_type": "customer_id"}
        elif col == "id_number":
            fields[col] = {"type": "string", "category": "identifier", "security_level": 4, "key_type": "id_number"}
        elif col == "default_flag":
            fields[col] = {"type": "integer", "category": "label", "security_level": 3}
        else:
            fields[col] = {"type": TYPES[col], "category": "feature", "security_level": 2}
    return {"dataset": dataset, "fields": fields}


def write_dataset(dir_: Path, name: str, frame: pd.DataFrame, gov: dict | None = None) -> tuple[Path, Path]:
    dir_.mkdir(parents=True, exist_ok=True)
    csv, gov_path = dir_ / f"{name}.csv", dir_ / f"{name}.yaml"
    frame.to_csv(csv, index=False)
    gov_path.write_text(yaml.safe_dump(gov or governance(name, frame)))
    return csv, gov_path


@dataclass
class Trained:
    algo: str
    active: object   # LocalLrResult | LocalSecureBoostResult
    config: object
    fallback: LrPart | SbActivePart


def train(pop: Population, algo: str) -> Trained:
    xa = pop.aligned_bank[BANK_FEATURES].to_numpy(float)
    xp = pop.aligned_telco[TELCO_FEATURES].to_numpy(float)
    y = pop.aligned_bank["default_flag"].to_numpy(float)
    mu, sd = xa.mean(0), xa.std(0)
    if algo == "hetero_lr":
        cfg = LrConfig(n_rows=len(y), batch_size=len(y), max_epochs=3, allow_insecure_test_key=True)
        result = run_local_lr(cfg, (xa - mu) / sd, y, (xp - xp.mean(0)) / xp.std(0), key_bits=512)
        fb = LrPart(weights=[0.1, -0.2, 0.3], intercept=-0.4,
                    scaling={"mean": mu.tolist(), "scale": sd.tolist()})
        return Trained(algo, result, cfg, fb)
    cfg = SbConfig(n_trees=3, max_depth=2, n_bins=8, allow_insecure_test_key=True)
    result = run_local_secureboost(cfg, xa, y, xp, key_bits=512, passive_rng=np.random.default_rng(1))
    bank_only, _ = train_plain_secureboost(cfg, xa, y, np.zeros((len(y), 0)))
    return Trained(algo, result, cfg, SbActivePart.from_model(bank_only, cfg))


def cards(job_id: int, algo: str, bank_dataset: int | None, telco_dataset: int | None,
          *, fallback: bool = True) -> tuple[ModelCard, ModelCard]:
    common = {"job_id": job_id, "kind": "train_risk", "algo": algo, "policy_version": "test",
              "data": DataDigests(keys_sha256=key_list_digest(["x"]), dataset_schema_digest="s")}
    fb = FallbackModel(algo=algo, features=[FeatureColumn(name=n, type=TYPES[n]) for n in BANK_FEATURES])
    bank = ModelCard(party="bank", peer_party="telco", role="active", label="default_flag",
                     features=[{"name": n, "type": TYPES[n]} for n in BANK_FEATURES],
                     fallback=fb if fallback else None,
                     **{**common, "data": common["data"].model_copy(update={"dataset_id": bank_dataset})})
    telco = ModelCard(party="telco", peer_party="bank", role="passive",
                      features=[{"name": n, "type": TYPES[n]} for n in TELCO_FEATURES],
                      **{**common, "data": common["data"].model_copy(update={"dataset_id": telco_dataset})})
    return bank, telco


def parts(t: Trained, pop: Population) -> tuple[dict, dict]:
    if t.algo == "hetero_lr":
        xa = pop.aligned_bank[BANK_FEATURES].to_numpy(float)
        xp = pop.aligned_telco[TELCO_FEATURES].to_numpy(float)
        a = LrPart.from_active(t.active.active, {"mean": xa.mean(0).tolist(), "scale": xa.std(0).tolist()})
        p = LrPart.from_passive(t.active.passive, {"mean": xp.mean(0).tolist(), "scale": xp.std(0).tolist()})
    else:
        a = SbActivePart.from_model(t.active.active, t.config)
        p = SbPassivePart.from_model(t.active.passive)
    return {**a.model_dump(mode="json"), "fallback": t.fallback.model_dump(mode="json")}, p.model_dump(mode="json")


def store_models(bank_state: Path, telco_state: Path, job_id: int, t: Trained, pop: Population,
                 bank_dataset: int | None, telco_dataset: int | None) -> tuple[ModelCard, ModelCard]:
    bank_card, telco_card = cards(job_id, t.algo, bank_dataset, telco_dataset)
    a, p = parts(t, pop)
    ModelStore(bank_state).save(bank_card, a)
    ModelStore(telco_state).save(telco_card, p)
    return bank_card, telco_card
