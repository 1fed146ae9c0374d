"""The analytics layer: Iceberg tables (pyiceberg + Glue Data Catalog) over the lake bucket."""
