"""`python -m radiomics_job`: run the job (see radiomics_job.cli)."""

from radiomics_job.cli import main

raise SystemExit(main())
