"""The report's population and data-quality sections, from a snapshot's population.json."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.training.cohort import POPULATION
from training_job.report_population import POPULATION_FILE, load_population, population_sections

DOCUMENT = POPULATION


def test_every_population_section_renders_its_data_escaped() -> None:
    html = population_sections(DOCUMENT)

    for anchor in ("population-clinical", "population-genomic", "population-imaging", "data-quality"):
        assert f'id="{anchor}"' in html
    for figure in ("fig-age-sex", "fig-encounters", "fig-claims", "fig-carriers", "fig-burden",
                   "fig-imaging-lesion_volume_ml", "fig-coverage"):  # fmt: skip
        assert f'id="{figure}"' in html, figure
    assert "Diabetes &lt;type 2&gt;" in html
    assert "<type 2>" not in html
    assert "dicom-missing-tag" in html
    assert "1,234" in html
    assert "Delivered files with rows in the lakehouse" in html
    assert "none recorded" in html  # procedures: an empty list says so


def test_a_view_the_snapshot_could_not_build_says_why() -> None:
    html = population_sections({**DOCUMENT, "genomic": {"unavailable": "KeyError: 'gene'"}})

    assert "not available: KeyError: &#x27;gene&#x27;" in html
    assert 'id="fig-carriers"' not in html


def test_a_snapshot_without_population_json_is_reported_not_fatal(tmp_path: Path) -> None:
    document, note = load_population(tmp_path)
    assert document is None
    assert "no population.json" in (note or "")
    assert "no population.json" in population_sections(document, note)

    (tmp_path / POPULATION_FILE).write_text(json.dumps(DOCUMENT))
    assert load_population(tmp_path) == (DOCUMENT, None)
