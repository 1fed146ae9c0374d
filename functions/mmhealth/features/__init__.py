"""Per-modality features and outcome labels (`features.*`), computed from the lakehouse tables. Pure, no S3."""
