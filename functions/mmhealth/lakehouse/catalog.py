"""Iceberg tables through pyiceberg's Glue catalog: create, evolve, and commit one run atomically.

Every commit is tagged with the run id (snapshot property `mmpipe.run_id`), which makes a catalog step
idempotent: a retried or replayed step finds its own snapshot and skips. Rows are replaced rather than
appended wherever the data has a natural owner (a sample's callset, a ClinVar release, a run's quarantine
records), so a file delivered twice never doubles rows.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Callable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.catalog import Catalog, load_catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NoSuchTableError,
    TableAlreadyExistsError,
    ValidationException,
)
from pyiceberg.expressions import AlwaysFalse, AlwaysTrue, BooleanExpression
from pyiceberg.table import Table, TableProperties

from mmhealth.contracts import TableCommit
from mmhealth.errors import TransientError
from mmhealth.lakehouse import layout, versions
from mmhealth.lakehouse.clinical_tables import CLINICAL_TABLES
from mmhealth.lakehouse.imaging_tables import IMAGING_TABLES
from mmhealth.lakehouse.schemas import TABLES
from mmhealth.observability import logger
from mmhealth.settings import settings

RUN_PROPERTY = "mmpipe.run_id"
COMMIT_PROPERTY = "mmpipe.commit_key"  # the idempotency key of a commit (the run id unless given)
# The tables whose rows are cast to their schema on commit, by "<namespace>.<table>". The feature tables
# (features.clinical, .labels, .genomic, .imaging) are built whole by their feature modules, each in its own
# schema, which the commit takes as it is.
SCHEMAS = {**TABLES, **CLINICAL_TABLES, **IMAGING_TABLES}
# The Glue databases (template.yaml has one per namespace): "<namespace>" of every "<namespace>.<table>".
NAMESPACES: tuple[str, ...] = tuple(sorted({name.split(".", 1)[0] for name in SCHEMAS}))
COMMIT_ATTEMPTS = 10  # many runs commit to the same tables at once when a large delivery arrives
# Tables partitioned by the identity of a column, so that an overwrite of a few of its values (a run's DICOM
# series) only reads and conflicts with those partitions. Without it, an overwrite whose filter names random
# UIDs matches (by file metrics) every data file: each commit rewrote the whole table and every concurrent
# run's commit conflicted with it.
PARTITIONED_BY = {
    "imaging.instances": "series_uid",
    "imaging.series": "series_uid",
    "features.radiomics": "series_uid",
}
# Iceberg isolation for overwrites (default "serializable": fail when a concurrent commit added files that
# may hold rows our filter selects). imaging.instances takes "snapshot": runs that share a DICOM series
# (its files split over two trigger batches) write disjoint SOP instances into the same partition, and
# pyiceberg's file-level check kept refusing those commits (a 200-patient demo lost 15 of 44 runs to it
# after every retry). The price: the same instance re-delivered by two runs at the same moment could keep
# two rows; readers take one row per SOP instance (imaging.series.latest_instances).
ISOLATION = {"imaging.instances": "snapshot"}


def lakehouse_catalog() -> Catalog:
    """The Glue-backed catalog over s3://<lake>/warehouse (moto's Glue + S3 locally, via AWS_ENDPOINT_URL)."""
    cfg = settings()
    props: dict[str, str] = {"type": "glue", "warehouse": layout.warehouse(cfg.lake_bucket)}
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        props |= {"glue.region": region, "s3.region": region}
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        props |= {"glue.endpoint": endpoint, "s3.endpoint": endpoint}
        for env, prop in (
            ("AWS_ACCESS_KEY_ID", "s3.access-key-id"),
            ("AWS_SECRET_ACCESS_KEY", "s3.secret-access-key"),
        ):
            if os.environ.get(env):
                props[prop] = os.environ[env]
    return _catalog(tuple(sorted(props.items())))


@functools.lru_cache(maxsize=8)
def _catalog(props: tuple[tuple[str, str], ...]) -> Catalog:
    """One catalog per configuration, reused across calls (a warm Lambda, the local runtime's functions).

    Building one creates a boto3 session and Glue client, which loads Glue's service model: measured at
    ~15% of all CPU of a local run when done per call. boto3 clients are thread-safe; sessions are not,
    and none is shared here beyond the client the catalog holds.
    """
    return load_catalog("lakehouse", **dict(props))


def glue_identifier(name: str) -> tuple[str, str]:
    """'genomic.variants' -> ('<prefix>genomic', 'variants')."""
    namespace, table = name.split(".", 1)
    return f"{settings().glue_database_prefix}{namespace}", table


def ensure_table(catalog: Catalog, name: str, schema: pa.Schema | None = None) -> Table:
    """Load the table, creating it (or adding new columns) from its Arrow schema in `SCHEMAS`."""
    schema = schema or SCHEMAS[name]
    identifier = glue_identifier(name)
    try:
        table = catalog.load_table(identifier)
    except NoSuchTableError:
        location = layout.table_location(settings().lake_bucket, name)
        logger.info("creating iceberg table", extra={"table": name})
        properties = {}
        if name in ISOLATION:
            properties = {
                TableProperties.WRITE_DELETE_ISOLATION_LEVEL: ISOLATION[name],
                TableProperties.WRITE_UPDATE_ISOLATION_LEVEL: ISOLATION[name],
            }
        try:
            # One atomic create, partition spec and properties included: a run that loads the table between
            # a create and a later spec change would write files under the old spec.
            with catalog.create_table_transaction(
                identifier, schema=schema, location=location, properties=properties
            ) as create:
                partition = PARTITIONED_BY.get(name)
                if partition is not None:
                    with create.update_spec() as spec:
                        spec.add_identity(partition)
        except TableAlreadyExistsError:  # another run's catalog step created it first
            pass
        table = catalog.load_table(identifier)
    missing = [f for f in schema if f.name not in table.schema().column_names]
    if missing:
        with table.update_schema() as update:
            update.union_by_name(schema)
        table = catalog.load_table(identifier)
    return table


def committed_by_run(table: Table, commit_key: str) -> int | None:
    """The id of the snapshot committed under `commit_key` (a run id, unless the commit named a key)."""
    for snapshot in table.snapshots():
        summary = snapshot.summary
        if summary is not None and summary.get(COMMIT_PROPERTY, summary.get(RUN_PROPERTY)) == commit_key:
            return snapshot.snapshot_id
    return None


def replace_rows(
    name: str,
    rows: pa.Table,
    run_id: str,
    owned_by: Callable[[pa.Table], BooleanExpression],
    catalog: Catalog | None = None,
    *,
    commit_key: str | None = None,
) -> TableCommit:
    """Atomically delete the rows `owned_by(rows)` selects and append `rows`, tagged with the run id.

    When `owned_by` is an OwnedByKey (rows belong to the values of one column), the version rule of
    lakehouse.versions applies first: of every version of a key, staged or committed, only the newest is
    kept, and the versions that lost are recorded in ops.superseded.

    Idempotent: when the table already holds a snapshot tagged `commit_key` (default: the run id), nothing
    is written; a run that must commit a table more than once passes a key per commit. Optimistic
    concurrency conflicts (another run committed first) are retried; after COMMIT_ATTEMPTS they surface
    as TransientError for the state machine's Retry.
    """
    catalog = catalog or lakehouse_catalog()
    rows = rows.cast(SCHEMAS[name]) if name in SCHEMAS else rows
    key = commit_key or run_id
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        table = ensure_table(catalog, name, rows.schema)
        previous = committed_by_run(table, key)
        if previous is not None:
            logger.info("run already committed; skipping", extra={"table": name, "snapshot_id": previous})
            return TableCommit(table=name, rows_added=0, snapshot_id=previous, skipped=True)
        before = _row_count(table)
        kept, superseded = rows, None
        if not isinstance(owned_by, versions.OwnedByKey):
            replaced = owned_by(rows)
        else:
            # Re-resolved on every attempt (another run may have committed meanwhile); only the keys whose
            # staged version won are replaced.
            keys = pc.unique(rows[owned_by.column]).to_pylist()
            existing = versions.existing_versions(table, owned_by.column, keys)
            resolved = versions.newest(name, rows, existing, owned_by.column, run_id)
            kept, superseded = resolved.rows, resolved.superseded
            replaced = owned_by(kept) if kept.num_rows else AlwaysFalse()
        try:
            with table.transaction() as tx:
                tx.overwrite(
                    kept,
                    overwrite_filter=replaced,
                    snapshot_properties={RUN_PROPERTY: run_id, COMMIT_PROPERTY: key},
                )
        except (CommitFailedException, ValidationException) as exc:
            # ValidationException: another run committed files that may hold rows our overwrite filter
            # selects (pyiceberg judges by file metrics, so overlapping value ranges are enough). Our rows
            # do not depend on theirs, so the overwrite is redone on the new snapshot.
            logger.warning("iceberg commit conflict; retrying", extra={"table": name, "attempt": attempt})
            if attempt == COMMIT_ATTEMPTS:
                raise TransientError(f"{name}: commit conflict after {attempt} attempts: {exc}") from exc
            time.sleep(random.uniform(0.1, 0.4) * attempt)  # jittered: concurrent runs retry apart
            continue
        table = catalog.load_table(glue_identifier(name))
        after = _row_count(table)
        snapshot = table.current_snapshot()
        recorded = record_superseded(superseded, run_id, f"{key}#superseded#{name}", catalog)
        return TableCommit(
            table=name,
            rows_added=kept.num_rows,
            rows_removed=before + kept.num_rows - after,
            snapshot_id=snapshot.snapshot_id if snapshot else None,
            superseded=recorded,
        )
    raise AssertionError("unreachable")


def record_superseded(
    records: pa.Table | None, run_id: str, commit_key: str, catalog: Catalog | None = None
) -> int:
    """Append OPS_SUPERSEDED records (once per commit key); returns how many there were."""
    if records is None or records.num_rows == 0:
        return 0
    replace_rows(
        "ops.superseded", records, run_id, lambda _rows: AlwaysFalse(), catalog, commit_key=commit_key
    )
    return records.num_rows


def replace_all(_rows: pa.Table) -> BooleanExpression:
    """`owned_by` for tables whose delivery is a whole release (e.g. ClinVar)."""
    return AlwaysTrue()


def _row_count(table: Table) -> int:
    snapshot = table.current_snapshot()
    if snapshot is None or snapshot.summary is None:
        return 0
    return int(snapshot.summary.get("total-records", "0"))


def read_columns(name: str, columns: Sequence[str], catalog: Catalog | None = None) -> pa.Table | None:
    """`read_table` of the `columns` that exist: a table written before a column was added lacks it."""
    try:
        return read_table(name, catalog, columns=columns)
    except (KeyError, ValueError):
        table = read_table(name, catalog)
        return None if table is None else table.select([c for c in columns if c in table.column_names])


def row_count(name: str, catalog: Catalog | None = None) -> int | None:
    """The table's rows as its current snapshot's summary records them (no data read); None without a table."""
    catalog = catalog or lakehouse_catalog()
    try:
        return _row_count(catalog.load_table(glue_identifier(name)))
    except NoSuchTableError:
        return None


def snapshot_id(name: str, catalog: Catalog | None = None) -> int | None:
    """The table's current snapshot id; None when the table or a snapshot does not exist yet."""
    catalog = catalog or lakehouse_catalog()
    try:
        snapshot = catalog.load_table(glue_identifier(name)).current_snapshot()
    except NoSuchTableError:
        return None
    return snapshot.snapshot_id if snapshot else None


def read_table(
    name: str,
    catalog: Catalog | None = None,
    columns: Sequence[str] | None = None,
    row_filter: BooleanExpression | None = None,
    at_snapshot: int | None = None,
) -> pa.Table | None:
    """The table (or just `columns`, or the rows `row_filter` selects, as of `at_snapshot` when given) as
    Arrow; None when it does not exist."""
    catalog = catalog or lakehouse_catalog()
    try:
        table = catalog.load_table(glue_identifier(name))
    except NoSuchTableError:
        return None
    present = table.schema().column_names
    selected = tuple(c for c in columns if c in present) if columns is not None else ("*",)
    scan = table.scan(
        row_filter=row_filter or AlwaysTrue(), selected_fields=selected, snapshot_id=at_snapshot
    )
    return scan.to_arrow()
