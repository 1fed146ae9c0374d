"""Benchmark (not a test): what the version rule costs a catalog commit, beside a plain owner-keyed replace.

    python bench/version_rule.py [--rows 60000] [--repeat 3] [--out out/bench/version_rule.json]

On an in-process moto server (as the local runtime): load `--rows` clinical.observation rows, then time the
commit of a second delivery that re-sends half of them and adds as many new ones, with
  plain       the owner filter alone (In resource_id): what the catalog did before the version rule
  versioned   lakehouse.versions.OwnedByKey: committed versions read and compared, the losers written to
              ops.superseded (here half the delivery's rows supersede the first load's)
alternating the two, each on a fresh table, best of `--repeat`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import time
from pathlib import Path

os.environ.update(
    AWS_DEFAULT_REGION="us-east-1",
    AWS_ACCESS_KEY_ID="bench",
    AWS_SECRET_ACCESS_KEY="bench",
    POWERTOOLS_TRACE_DISABLED="true",
    POWERTOOLS_SERVICE_NAME="bench",
    POWERTOOLS_METRICS_NAMESPACE="bench",
    POWERTOOLS_LOG_LEVEL="WARNING",
    LAKE_BUCKET="bench-lake",
    GLUE_DATABASE_PREFIX="bench_",
)

import boto3
import pyarrow as pa
import pyarrow.compute as pc
from moto.server import ThreadedMotoServer
from pyiceberg.expressions import BooleanExpression, In

from mmhealth.lakehouse.catalog import NAMESPACES, replace_rows
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from mmhealth.lakehouse.versions import OwnedByKey

TABLE = "clinical.observation"
SCHEMA = CLINICAL_TABLES[TABLE]


def delivery(rows: int, first: int, name: str) -> pa.Table:
    """`rows` observations with ids from `first`, as one delivered object `name`."""
    columns = {f.name: pa.nulls(rows, f.type) for f in SCHEMA}
    columns |= {
        "resource_id": pa.array([f"obs-{i:08d}" for i in range(first, first + rows)]),
        "patient_id": pa.array([f"p{i % 1000}" for i in range(rows)]),
        "source_position": pa.array(range(rows), pa.int64()),
        "source_key": pa.repeat(pa.scalar(f"incoming/{name}.ndjson"), rows),
        "object_id": pa.repeat(pa.scalar(name), rows),
        "run_id": pa.repeat(pa.scalar(name), rows),
    }
    return pa.table([columns[f.name] for f in SCHEMA], schema=SCHEMA)


def plain(rows: pa.Table) -> BooleanExpression:
    return In("resource_id", sorted(pc.unique(rows["resource_id"]).to_pylist()))  # type: ignore[call-arg, arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{port}"
    boto3.client("s3").create_bucket(Bucket=os.environ["LAKE_BUCKET"])
    glue = boto3.client("glue")
    for namespace in NAMESPACES:
        glue.create_database(DatabaseInput={"Name": f"bench_{namespace}"})
    timings: dict[str, list[float]] = {"plain": [], "versioned": []}
    try:
        for attempt in range(args.repeat):
            for name, owner in (("plain", plain), ("versioned", OwnedByKey("resource_id"))):
                if glue.get_tables(DatabaseName="bench_clinical")["TableList"]:
                    glue.delete_table(DatabaseName="bench_clinical", Name="observation")
                first, second = f"{name}-{attempt}-a", f"{name}-{attempt}-b"
                replace_rows(TABLE, delivery(args.rows, 0, first), first, owner)
                started = time.perf_counter()
                replace_rows(TABLE, delivery(args.rows, args.rows // 2, second), second, owner)
                timings[name].append(time.perf_counter() - started)
    finally:
        server.stop()
    best = {name: round(min(values), 2) for name, values in timings.items()}
    for name, seconds in best.items():
        print(f"{name:10s} {seconds:6.2f} s  (all: {', '.join(f'{v:.2f}' for v in timings[name])})")
    print(f"ratio versioned / plain: {best['versioned'] / best['plain']:.2f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {"benchmark": "version_rule", "rows": args.rows, "best_seconds": best, "all": timings,
                  "python": platform.python_version(), "machine": platform.machine()}  # fmt: skip
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
