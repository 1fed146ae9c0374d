"""The cohort model's knobs: what changes with them and what must not."""

from __future__ import annotations

from mmpipe.synth.cohort import draw_cohort


def test_a_smaller_imaging_fraction_images_a_subset_of_the_same_patients() -> None:
    wide, narrow = draw_cohort(7, 200, 0.6), draw_cohort(7, 200, 0.12)
    assert [p.features for p in wide] == [p.features for p in narrow]
    assert [p.outcomes for p in wide] == [p.outcomes for p in narrow]
    imaged_wide = {p.index for p in wide if p.has_imaging}
    imaged_narrow = {p.index for p in narrow if p.has_imaging}
    assert imaged_narrow < imaged_wide
    assert 10 <= len(imaged_narrow) <= 40  # ~12 % of 200
