"""mmpipe: developer tooling (CLI, local runtime, synthetic cohort). Not part of the Lambda package."""
