"""`python -m training_job [train]`: run the job (see training_job.cli)."""

from training_job.cli import main

raise SystemExit(main())
