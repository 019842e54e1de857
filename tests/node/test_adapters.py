"""Data adapters (CSV, Parquet, SQLite, PostgreSQL) and catalog entries that never carry a row value."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pytest
import sqlalchemy as sa

from node.adapters import open_source, redact_uri
from node.governance import coerce_types, describe, distinct_bucket, load_governance
from protocols.wire.errors import ConfigError

# Distinctive values: if any of them shows up in a catalog entry, a row value leaked.
ROWS = pd.DataFrame(
    {
        "customer_id": ["C-7f3a91", "C-0b22e4", "C-99d0c7", "C-5e5e11", None],
        "mobile": ["13912345678", "13587654321", "18600011122", "13912345678", "15155566677"],
        "balance": [31415.926, 27182.818, None, 16180.339, 14142.135],
        "age": [37, 58, 41, 29, 63],
        "defaulted": [True, False, False, True, False],
    }
)
GOVERNANCE = """\
dataset: bank_customers
description: Retail customers of the bank (synthetic)
fields:
  customer_id: {type: string, category: identifier, security_level: 3, desensitisation: mask,
                purposes: [marketing, recovery], key_type: customer_id}
  mobile: {type: string, category: identifier, security_level: 4, desensitisation: mask, key_type: mobile}
  balance: {type: float, category: feature, security_level: 3, desensitisation: generalise, purposes: [risk]}
  age: {type: integer, category: feature, security_level: 2, desensitisation: generalise, purposes: [risk]}
  defaulted: {type: boolean, category: label, security_level: 3, purposes: [risk]}
"""


@pytest.fixture
def governance(tmp_path):
    path = tmp_path / "gov.yaml"
    path.write_text(GOVERNANCE)
    return load_governance(path)


def _csv(tmp_path: Path) -> str:
    path = tmp_path / "customers.csv"
    ROWS.to_csv(path, index=False)
    return f"csv://{path}"


def _parquet(tmp_path: Path) -> str:
    path = tmp_path / "customers.parquet"
    ROWS.to_parquet(path, index=False)
    return f"parquet://{path}"


def _sqlite(tmp_path: Path) -> str:
    path = tmp_path / "bank.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    ROWS.to_sql("customers", engine, index=False)
    engine.dispose()
    return f"sql+sqlite:///{path}#table=customers"


def _sqlite_query(tmp_path: Path) -> str:
    uri = _sqlite(tmp_path).split("#")[0]
    return uri + "#query=" + quote("SELECT customer_id, mobile, balance, age, defaulted FROM customers")


SOURCES = {"csv": _csv, "parquet": _parquet, "sqlite": _sqlite, "sqlite-query": _sqlite_query}


@pytest.mark.parametrize("kind", SOURCES)
def test_source_reads_columns_counts_and_batches(tmp_path, kind):
    with open_source(SOURCES[kind](tmp_path)) as source:
        assert source.columns == list(ROWS.columns)
        assert source.row_count() == 5
        batches = list(source.iter_batches(["mobile", "age"], batch_size=2))
        assert [len(b) for b in batches] == [2, 2, 1]
        assert list(batches[0].columns) == ["mobile", "age"]
        frame = source.read()
    assert frame["mobile"].tolist() == ROWS["mobile"].tolist()  # CSV keeps identifiers as text


@pytest.mark.parametrize("kind", SOURCES)
def test_describe_builds_the_entry_without_any_row_value(tmp_path, kind, governance):
    with open_source(SOURCES[kind](tmp_path)) as source:
        entry = describe(source, governance)
    assert entry.name == "bank_customers" and entry.row_count == 5
    stats = {f.name: (f.stats.null_fraction, f.stats.distinct_bucket) for f in entry.fields}
    assert stats == {"customer_id": (0.2, "<10"), "mobile": (0.0, "<10"), "balance": (0.2, "<10"),
                     "age": (0.0, "<10"), "defaulted": (0.0, "<10")}
    assert entry.fields[1].key_type == "mobile" and entry.fields[1].security_level == 4
    text = json.dumps(entry.model_dump(mode="json"))
    for column in ROWS.columns:
        for value in ROWS[column].dropna():
            for form in {str(value), repr(value), json.dumps(value)} - {"True", "False", "true", "false"}:
                assert form not in text, f"{column} value {form} leaked into the catalog entry"
    assert "C-" not in text and "139" not in text


@pytest.mark.parametrize("kind", SOURCES)
def test_coerce_types_follows_governance(tmp_path, kind, governance):
    with open_source(SOURCES[kind](tmp_path)) as source:
        frame = coerce_types(source.read(), governance)
    assert str(frame["age"].dtype) == "Int64" and frame["age"].tolist() == ROWS["age"].tolist()
    assert str(frame["defaulted"].dtype) == "boolean"
    assert frame["balance"].dtype == "float64"


def test_ungoverned_column_is_named_with_the_fix(tmp_path):
    gov_path = tmp_path / "gov.yaml"
    gov_path.write_text(GOVERNANCE.replace("  age:", "  not_age:"))
    with open_source(_csv(tmp_path)) as source, pytest.raises(ConfigError) as err:
        describe(source, load_governance(gov_path), governance_path=str(gov_path))
    assert "column 'age'" in str(err.value) and "fields.age:" in str(err.value)


def test_governance_field_missing_from_source_is_named(tmp_path, governance):
    path = tmp_path / "short.csv"
    ROWS.drop(columns=["age"]).to_csv(path, index=False)
    with open_source(f"csv://{path}") as source, pytest.raises(ConfigError, match="field 'age'.*not a column"):
        describe(source, governance)


def test_values_that_do_not_parse_are_counted_not_shown(tmp_path, governance):
    path = tmp_path / "bad.csv"
    ROWS.assign(age=["37", "fifty-eight", "41", "29", "63"]).to_csv(path, index=False)
    with open_source(f"csv://{path}") as source, pytest.raises(ConfigError) as err:
        describe(source, governance)
    assert "'age' is declared integer" in str(err.value) and "1 of 5" in str(err.value)
    assert "fifty" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (GOVERNANCE.replace("security_level: 2", "security_level: 9"), "fields.age.security_level"),
        (GOVERNANCE.replace("category: label", "category: secret"), "fields.defaulted.category"),
        (GOVERNANCE.replace("purposes: [risk]}", "purposes: [risk], colour: red}", 1), "fields.balance.colour"),
        ("dataset: x\nfields: [", "not valid YAML"),
    ],
)
def test_bad_governance_file_names_the_entry(tmp_path, text, where):
    path = tmp_path / "gov.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_governance(path)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("excel:///x.xlsx", "unknown source"),
        ("csv://relative/x.csv", "absolute path"),
        ("csv:///no/such/file.csv", "does not exist"),
        ("sql+sqlite:///:memory:", "exactly one of"),
        ("sql+sqlite:///:memory:#table=nope", "table 'nope' does not exist"),
        ("sql+sqlite:///:memory:#tabel=x", "unknown option 'tabel'"),
    ],
)
def test_bad_uris_say_what_to_fix(uri, message):
    with pytest.raises(ConfigError, match=message):
        open_source(uri)


def test_unknown_column_request_is_refused(tmp_path):
    with open_source(_csv(tmp_path)) as source, pytest.raises(ConfigError, match="column 'salary'"):
        list(source.iter_batches(["salary"]))


def test_passwords_are_redacted():
    uri = "sql+postgresql+psycopg://app:s3cret@db:5432/bank#table=c"
    assert redact_uri(uri) == "sql+postgresql+psycopg://app:***@db:5432/bank#table=c"


def test_distinct_buckets():
    assert [distinct_bucket(n) for n in (0, 1, 2, 99, 100, 9_999, 10_000, 999_999, 1_000_000)] == [
        "<10", "1", "<10", "<100", "<10k", "<10k", "<1M", "<1M", ">=1M"]


@pytest.mark.postgres
def test_postgresql_table_and_query(governance):
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    table = f"tandem_node_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(url)
    try:
        ROWS.to_sql(table, engine, index=False)
        with open_source(f"sql+{url}#table={table}") as source:
            assert source.row_count() == 5
            assert [len(b) for b in source.iter_batches(batch_size=2)] == [2, 2, 1]
            entry = describe(source, governance)
        assert entry.row_count == 5 and entry.fields[2].stats.null_fraction == 0.2
        query = quote(f"SELECT mobile FROM {table} WHERE age > 40")
        with open_source(f"sql+{url}#query={query}") as source:
            assert source.columns == ["mobile"] and source.row_count() == 3
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))
        engine.dispose()
