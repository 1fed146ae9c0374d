"""Staged Parquet parts in the lake bucket: what Import writes per chunk and Catalog reads back.

Here rather than in mmhealth.storage so that S3 access does not bring Arrow: the functions that never touch
a table (Trigger, Collect, Prepare, the polls) ship without pyarrow (functions/Makefile).
"""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from mmhealth import storage


def write_parquet(bucket: str, key: str, table: pa.Table) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    storage.client("s3").put_object(Bucket=bucket, Key=key, Body=sink.getvalue())


def read_parquet(bucket: str, key: str) -> pa.Table:
    body = storage.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return pq.read_table(io.BytesIO(body))
