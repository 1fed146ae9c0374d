"""The report's first section: what the evaluation found, per outcome, in one sentence each, then the table
behind the sentences. Read from metrics.json's document only (training_job.outputs)."""

from __future__ import annotations

from html import escape
from typing import Any

from training_job.dataset import AGE_SEX_SET
from training_job.report_html import estimate_cell, num_cell, section, table

SIGNIFICANCE = 0.05


def findings_section(document: dict[str, Any]) -> str:
    full = document["reference_sets"]["full"]
    sentences, rows = [], []
    for outcome, by_set in document.get("metrics", {}).items():
        auc = (by_set.get(full) or {}).get("roc_auc") or {}
        baseline = (by_set.get(AGE_SEX_SET) or {}).get("roc_auc") or {}
        permutation = (document.get("permutation") or {}).get(outcome) or {}
        counts = (document.get("counts") or {}).get(outcome) or {}
        sentences.append(f"<li>{_sentence(outcome, auc, baseline, permutation, counts)}</li>")
        rows.append(
            [
                escape(outcome.replace("_", " ")),
                num_cell(counts.get("positives_test", "-")),
                estimate_cell(auc),
                estimate_cell(baseline),
                estimate_cell((by_set.get(full) or {}).get("auprc")),
                estimate_cell((by_set.get(full) or {}).get("f1")),
                num_cell(_p(permutation.get("p_value"))),
            ]
        )
    warnings = document.get("warnings") or []
    warned = (
        f"<p class='warn'>&#9888; {len(warnings)} small-sample warning(s): see the evaluation.</p>"
        if warnings
        else ""
    )
    body = (
        f"<p>The full set ({escape(full)}) per outcome, on the held-out test split, beside age and sex alone "
        "and the label-shuffle permutations.</p>"
        f"<ul>{''.join(sentences)}</ul>{warned}"
        + table(
            ["Outcome", "Test positives", f"ROC AUC {full}", "ROC AUC age + sex", "AUPRC", "F1 at threshold",
             "Permutation p"],
            rows,
        )
    )  # fmt: skip
    return section("findings", "Findings", body)


def _sentence(
    outcome: str,
    auc: dict[str, Any],
    baseline: dict[str, Any],
    permutation: dict[str, Any],
    counts: dict[str, Any],
) -> str:
    name = escape(outcome.replace("_", " ").capitalize())
    value = auc.get("value")
    if value is None:
        return f"{name}: no estimate (see the evaluation)."
    text = f"{name}: ROC AUC {value:.2f}"
    if auc.get("ci_low") is not None:
        text += f" [{auc['ci_low']:.2f}, {auc['ci_high']:.2f}]"
    p_value = permutation.get("p_value")
    if p_value is not None:
        text += (
            "; better than shuffled labels"
            if p_value <= SIGNIFICANCE
            else "; not distinguishable from shuffled labels"
        )
        text += f" (p = {_p(p_value)})"
    if baseline.get("value") is not None:
        if baseline["value"] >= value:
            text += f"; <strong>age and sex alone do as well ({baseline['value']:.2f})</strong>"
        else:
            text += f"; age and sex alone {baseline['value']:.2f}"
    positives = counts.get("positives_test")
    if isinstance(positives, int) and positives < 10:
        text += f"; only {positives} test positives"
    return text + "."


def _p(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"
