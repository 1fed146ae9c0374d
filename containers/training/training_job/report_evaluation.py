"""report.html's evaluation sections, each a function of metrics.json's document (and the predictions for the
ROC curves), independent of the other sections so they can be moved:

- `evaluation_tables`: per outcome, every predictor's ranking, calibration and thresholded metrics, the
  age + sex baseline beside each set, available-case results, warnings next to the numbers;
- `permutation_control`: the label-shuffle permutations' AUCs as a strip, the real AUC marked, p-value;
- `roc_curves`, `pr_curves`, `reliability_curves`: one plot per outcome;
- `ablation`: test AUC per set with intervals, and the multimodal gain;
- `subgroup_tables`: the full set by sex and age band;
- `warnings_list`: every small-sample and no-positive-predicted warning.
"""

from __future__ import annotations

from html import escape
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from training_job import CONTROL
from training_job.curves import roc_points
from training_job.report_html import estimate_cell, figure_html, num_cell, section, table

EVALUATION_SECTIONS = (
    ("metrics", "Evaluation"),
    ("control", "Label-shuffle control"),
    ("roc", "ROC curves"),
    ("pr", "Precision-recall"),
    ("calibration", "Calibration"),
    ("ablation", "Ablation"),
    ("subgroups", "Subgroups"),
    ("warnings", "Warnings"),
)
AGE_SEX_LABEL = "age + sex baseline"
_CONTROL_STYLE = {"dash": "dash", "color": "#9aa5b1"}


def evaluation_sections(document: dict[str, Any], predictions: pd.DataFrame) -> list[str]:
    """Every evaluation section, in EVALUATION_SECTIONS order."""
    return [
        evaluation_tables(document),
        permutation_control(document),
        roc_curves(document, predictions),
        pr_curves(document),
        reliability_curves(document),
        ablation(document),
        subgroup_tables(document),
        warnings_list(document),
    ]


def evaluation_tables(document: dict[str, Any]) -> str:
    ci = document["evaluation"]["ci"]
    rule = document["evaluation"]["threshold"]
    small = document["evaluation"]["small_sample_positives"]
    note = (
        f"<p class='note'>Test split, one per outcome and shared by every predictor. Value "
        f"[{ci['level']:.0%} interval]: percentile bootstrap, {ci['resamples']} resamples of the test rows "
        f"(seed {ci['seed']}). ROC AUC and AUPRC rank patients (AUPRC's chance level is the prevalence); "
        "Brier is the mean squared error of the probability (lower is better). F1, precision, recall and "
        f"specificity are at each predictor's own threshold, chosen to maximise F1 on its "
        f"{rule['folds']}-fold out-of-fold predictions of the training split (never on the test split). "
        "&Delta; AUC: the set minus the age + sex baseline on the same patients (paired bootstrap). "
        "<em>Available cases</em>: the test patients who have every modality of the set; "
        "<em>all modalities</em>: the test patients with clinical, genomic and imaging data (AWS's reference "
        f"design). &#9888; marks a number resting on fewer than {small} positive patients. The control row "
        "is the mean over the label-shuffle permutations, with their central 95 % as its range.</p>"
    )
    blocks = [_outcome_table(document, outcome) for outcome in document["metrics"]]
    return section("metrics", "Evaluation", note + "".join(blocks))


def _outcome_table(document: dict[str, Any], outcome: str) -> str:
    """Two tables: ranking, calibration and the metrics at the threshold on the test split; then the
    confusion matrix and the available-case results."""
    by_set = document["metrics"][outcome]
    counts = document["counts"][outcome]
    thresholds = document["thresholds"].get(outcome, {})
    confusion = document["confusion"].get(outcome, {})
    versus = (document["age_sex_baseline"].get(outcome) or {}).get("roc_auc_difference", {})
    available = document["available_case"].get(outcome) or {}
    by_available = available.get("by_set", {})
    everything = (available.get("all_modalities") or {}).get("sets", {})
    control = document["control"].get(outcome)
    test_warning = _few(counts["positives_test"], document)
    main_rows, subset_rows, classes = [], [], []
    for name, metrics in by_set.items():
        label = escape(_label(document, name))
        cells = confusion.get(name, {})
        main_rows.append(
            [
                label,
                estimate_cell(metrics["roc_auc"], warning=test_warning),
                estimate_cell(versus.get(name), signed=True),
                estimate_cell(metrics["auprc"]),
                estimate_cell(metrics["brier"]),
                num_cell(f"{thresholds[name]['threshold']:.3f}" if name in thresholds else "-"),
                estimate_cell(metrics["f1"], warning=_no_positive(cells)),
                estimate_cell(metrics["precision"]),
                estimate_cell(metrics["recall"]),
                estimate_cell(metrics["specificity"]),
            ]
        )
        subset_rows.append(
            [
                label,
                num_cell(" / ".join(str(cells.get(k, "-")) for k in ("tp", "fp", "tn", "fn"))),
                estimate_cell(metrics["balanced_accuracy"]),
                _subset_cell(by_available.get(name), document),
                _subset_cell(everything.get(name), document),
            ]
        )
        classes.append("baseline" if name == document["reference_sets"].get("age_sex") else "")
    if control:
        main_rows.append(
            [
                escape(f"{CONTROL}: shuffled labels ({document['reference_sets']['full']})"),
                estimate_cell(control["roc_auc"]),
                num_cell("-"),
                estimate_cell(control["auprc"]),
                estimate_cell(control["brier"]),
                num_cell("full set's"),
                estimate_cell(control["f1"]),
                estimate_cell(control["precision"]),
                estimate_cell(control["recall"]),
                estimate_cell(control["specificity"]),
            ]
        )
    main_headers = [
        "Predictor",
        "ROC AUC",
        "Δ AUC vs age + sex",
        "AUPRC",
        "Brier",
        "Threshold",
        "F1",
        "Precision",
        "Recall",
        "Specificity",
    ]
    subset_headers = [
        "Predictor",
        "TP / FP / TN / FN",
        "Balanced acc.",
        "Available cases: AUC (n, positives)",
        "All modalities: AUC (n, positives)",
    ]
    prevalence = counts["positives_test"] / counts["n_test"]
    caption = (
        f"<h3>{escape(outcome)}</h3><p class='note'>{counts['n_test']} test patients, "
        f"{counts['positives_test']} positive (prevalence {prevalence:.1%}: AUPRC's chance level); "
        f"{counts['n_train']} training patients.</p>"
    )
    return (
        caption
        + table(main_headers, main_rows, [*classes, "control"] if control else classes)
        + _gains(document, outcome)
        + table(subset_headers, subset_rows, classes)
    )


def _subset_cell(subset: dict[str, Any] | None, document: dict[str, Any]) -> str:
    """AUC with interval and (n, positives) on a subset, or why there is no number."""
    if subset is None:
        return num_cell("-")
    counts = f"(n {subset['n']}, {subset['positives']} positive)"
    if subset["metrics"] is None:
        return f'<td class="num note">{escape(subset["note"])}<br>{escape(counts)}</td>'
    cell = estimate_cell(subset["metrics"]["roc_auc"], warning=_few(subset["positives"], document))
    return cell.replace("</td>", f"<br><span class='ci'>{escape(counts)}</span></td>")


def _gains(document: dict[str, Any], outcome: str) -> str:
    gain = document["gain"].get(outcome)
    everything = (document["available_case"].get(outcome) or {}).get("all_modalities") or {}
    subset_gain = everything.get("gain") or {}
    if not gain:
        return ""
    on_subset = (
        f"{subset_gain['value']:+.3f} [{subset_gain['ci_low']:+.3f}, {subset_gain['ci_high']:+.3f}]"
        if subset_gain.get("value") is not None and subset_gain.get("ci_low") is not None
        else subset_gain.get("note", "-")
    )
    return (
        f"<p class='note'>Multimodal gain, AUC({escape(gain['full'])}) &minus; AUC({escape(str(gain['baseline']))}): "
        f"{gain['value']:+.3f} [{gain['ci_low']:+.3f}, {gain['ci_high']:+.3f}] on the test split; "
        f"{escape(on_subset)} on the {everything.get('n', 0)} test patients with all modalities "
        f"({everything.get('positives', 0)} positive).</p>"
        if gain.get("ci_low") is not None
        else f"<p class='note'>Multimodal gain: {gain['value']:+.3f} on the test split; {escape(on_subset)} "
        "on the patients with all modalities.</p>"
    )


def permutation_control(document: dict[str, Any]) -> str:
    permutations = document["permutation"]
    if not permutations:
        return section("control", "Label-shuffle control", "<p>No label-shuffle control was fitted.</p>")
    figure = go.Figure()
    rows = []
    for outcome, entry in permutations.items():
        values = entry["roc_auc"]["values"]
        figure.add_trace(
            go.Scatter(
                x=values,
                y=[outcome] * len(values),
                mode="markers",
                name=f"{outcome}: permutations",
                marker={"color": "#9aa5b1", "size": 9, "opacity": 0.6},
                showlegend=False,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=[entry["real_roc_auc"]],
                y=[outcome],
                mode="markers",
                name=f"{outcome}: real model",
                marker={"color": "#c62828", "size": 14, "symbol": "diamond"},
                showlegend=False,
            )
        )
        dist = entry["roc_auc"]
        rows.append(
            [
                escape(outcome),
                num_cell(entry["permutations"]),
                num_cell(f"{dist['mean']:.3f}"),
                num_cell(f"{dist['sd']:.3f}"),
                num_cell(f"{dist['min']:.3f} - {dist['max']:.3f}"),
                num_cell(f"{entry['real_roc_auc']:.3f}"),
                num_cell(f"{entry['p_value']:.3f}"),
            ]
        )
    figure.add_vline(x=0.5, line_dash="dot", line_color="#9aa5b1")
    figure.update_layout(
        xaxis_title="Test ROC AUC (grey: one per permutation of the training labels; red: the real model)",
        xaxis_range=[0, 1],
        height=140 + 50 * len(permutations),
        margin={"t": 20, "l": 170},
    )
    setting = next(iter(permutations.values()))["setting"]
    note = (
        "<p class='note'>The full set refit on permuted training labels and scored on the test split, once per "
        f"permutation ({escape(setting)}). Its AUCs show what this pipeline reaches on this test split with no "
        "signal; the p-value is (1 + permutations with AUC &ge; the real AUC) / (1 + permutations).</p>"
    )
    return section(
        "control",
        "Label-shuffle control",
        note
        + figure_html(figure, "permutations")
        + table(["Outcome", "Permutations", "Mean AUC", "SD", "Range", "Real AUC", "p-value"], rows),
    )


def roc_curves(document: dict[str, Any], predictions: pd.DataFrame) -> str:
    figures = []
    for outcome in document["metrics"]:
        figure = go.Figure()
        scored = predictions[predictions["outcome"] == outcome]
        for name, rows in scored.groupby("set", sort=False):
            fpr, tpr = roc_points(rows["y_true"].to_numpy(), rows["y_score"].to_numpy())
            auc = _area(fpr, tpr)
            label = f"{CONTROL} (permutation 0)" if name == CONTROL else _label(document, str(name))
            figure.add_trace(
                go.Scatter(
                    x=fpr,
                    y=tpr,
                    mode="lines",
                    name=f"{label} (AUC {auc:.3f})",
                    line=_CONTROL_STYLE if name == CONTROL else {},
                )
            )
        _diagonal(figure, "chance")
        figure.update_layout(
            title=outcome,
            xaxis_title="False positive rate",
            yaxis_title="True positive rate",
            height=420,
            margin={"t": 50, "b": 40},
        )
        figures.append(figure_html(figure, f"roc-{outcome}"))
    return section("roc", "ROC curves", "".join(figures) or "<p>No model was trained.</p>")


def pr_curves(document: dict[str, Any]) -> str:
    figures = []
    for outcome, by_set in document["curves"].items():
        figure = go.Figure()
        for name, curves in by_set.items():
            auprc = document["metrics"][outcome][name]["auprc"]["value"]
            figure.add_trace(
                go.Scatter(
                    x=curves["pr"]["recall"],
                    y=curves["pr"]["precision"],
                    mode="lines",
                    line={"shape": "hv"},
                    name=f"{_label(document, name)} (AUPRC {auprc:.3f})",
                )
            )
        counts = document["counts"][outcome]
        prevalence = counts["positives_test"] / counts["n_test"]
        figure.add_hline(
            y=prevalence,
            line_dash="dot",
            line_color="#9aa5b1",
            annotation_text=f"prevalence {prevalence:.1%}",
        )
        figure.update_layout(
            title=outcome,
            xaxis_title="Recall",
            yaxis_title="Precision",
            yaxis_range=[0, 1.02],
            height=420,
            margin={"t": 50, "b": 40},
        )
        figures.append(figure_html(figure, f"pr-{outcome}"))
    return section(
        "pr",
        "Precision-recall curves",
        "<p class='note'>Test split; the dotted line is the prevalence, the precision of a random ranking.</p>"
        + ("".join(figures) or "<p>No model was trained.</p>"),
    )


def reliability_curves(document: dict[str, Any]) -> str:
    figures = []
    for outcome, by_set in document["curves"].items():
        figure = go.Figure()
        for name, curves in by_set.items():
            bins = curves["reliability"]
            brier = document["metrics"][outcome][name]["brier"]["value"]
            figure.add_trace(
                go.Scatter(
                    x=[b["mean_predicted"] for b in bins],
                    y=[b["observed"] for b in bins],
                    mode="lines+markers",
                    name=f"{_label(document, name)} (Brier {brier:.3f})",
                    customdata=[b["n"] for b in bins],
                    hovertemplate="predicted %{x:.3f}<br>observed %{y:.3f}<br>n %{customdata}",
                )
            )
        _diagonal(figure, "perfect calibration")
        figure.update_layout(
            title=outcome,
            xaxis_title="Mean predicted probability (bin)",
            yaxis_title="Observed rate (bin)",
            xaxis_range=[0, 1],
            yaxis_range=[0, 1],
            height=420,
            margin={"t": 50, "b": 40},
        )
        figures.append(figure_html(figure, f"calibration-{outcome}"))
    return section(
        "calibration",
        "Calibration",
        f"<p class='note'>Reliability curves on the test split: {escape(document['evaluation']['reliability_bins'])} "
        "(hover for n); points on the diagonal are calibrated. Brier score in the legend.</p>"
        + ("".join(figures) or "<p>No model was trained.</p>"),
    )


def ablation(document: dict[str, Any]) -> str:
    figure = go.Figure()
    for outcome, by_set in document["metrics"].items():
        entries = {_label(document, s): m["roc_auc"] for s, m in by_set.items()}
        if outcome in document["control"]:
            entries[CONTROL] = document["control"][outcome]["roc_auc"]
        figure.add_trace(
            go.Bar(
                name=outcome,
                x=list(entries),
                y=[e["value"] for e in entries.values()],
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": [_above(e) for e in entries.values()],
                    "arrayminus": [_below(e) for e in entries.values()],
                },
            )
        )
    figure.add_hline(y=0.5, line_dash="dot", line_color="#9aa5b1")
    figure.update_layout(
        barmode="group",
        yaxis_title="Test ROC AUC (95% interval)",
        yaxis_range=[0, 1],
        height=460,
        margin={"t": 30},
    )
    rows = [
        [
            escape(outcome),
            escape(f"{gain['full']} - {gain['baseline']}"),
            estimate_cell(gain, signed=True),
            _subset_gain_cell(document, outcome),
        ]
        for outcome, gain in document["gain"].items()
    ]
    gain_table = (
        "<h3>Multimodal gain</h3><p class='note'>AUC of the full set minus AUC of the clinical set on the same "
        "test patients; the interval comes from a paired bootstrap (the same resampled rows for both).</p>"
        + table(["Outcome", "Sets", "AUC difference (test split)", "On patients with all modalities"], rows)
        if rows
        else "<p class='note'>No multimodal gain: the clinical set or the full set was not trained.</p>"
    )
    return section(
        "ablation",
        "Modality ablation",
        "<p>Test ROC AUC per modality set and the age + sex baseline, every predictor trained and tested on the "
        "same patients.</p>" + figure_html(figure, "ablation") + gain_table,
    )


def subgroup_tables(document: dict[str, Any]) -> str:
    blocks = []
    for outcome, entry in document["subgroups"].items():
        rows = []
        for group in entry["groups"]:
            metrics = group["metrics"]
            warning = _few(group["positives"], document)
            cells = (
                [
                    estimate_cell(metrics["roc_auc"], warning=warning),
                    estimate_cell(metrics["auprc"]),
                    estimate_cell(
                        metrics["f1"],
                        warning="no positive predicted" if group["no_positive_predicted"] else None,
                    ),
                    estimate_cell(metrics["recall"]),
                    estimate_cell(metrics["precision"]),
                ]
                if metrics
                else [f'<td class="note" colspan="5">{escape(group["note"])}</td>']
            )
            rows.append(
                [
                    escape(group["by"].replace("_", " ")),
                    escape(group["group"]),
                    num_cell(group["n"]),
                    num_cell(group["positives"]),
                    *cells,
                ]
            )
        blocks.append(
            f"<h3>{escape(outcome)} ({escape(entry['set'])})</h3>"
            + table(["By", "Group", "n", "Positive", "ROC AUC", "AUPRC", "F1", "Recall", "Precision"], rows)
        )
    bands = ", ".join(document["evaluation"]["age_bands"])
    note = (
        "<p class='note'>The full set on the test split by sex and by age band on the index date "
        f"({escape(bands)} years), at the full set's threshold. A group with fewer than "
        f"{document['evaluation']['min_cases_per_class']} positive or negative patients gets no numbers.</p>"
    )
    return section(
        "subgroups", "Subgroups", note + ("".join(blocks) or "<p>No subgroup could be formed.</p>")
    )


def warnings_list(document: dict[str, Any]) -> str:
    warnings = document["warnings"]
    if not warnings:
        return section("warnings", "Warnings", "<p>None.</p>")
    rows = [
        [escape(w["outcome"]), escape(_label(document, w["set"])), escape(w["scope"]), escape(w["message"])]
        for w in warnings
    ]
    return section(
        "warnings",
        "Warnings",
        f"<p>{len(warnings)} warnings: numbers resting on few positive patients, and thresholds that "
        "predict no positive.</p>" + table(["Outcome", "Predictor", "Where", "Warning"], rows),
    )


def _label(document: dict[str, Any], name: str) -> str:
    return AGE_SEX_LABEL if name == document["reference_sets"].get("age_sex") else name


def _few(positives: int, document: dict[str, Any]) -> str | None:
    small = document["evaluation"]["small_sample_positives"]
    return f"only {positives} positive" if positives < small else None


def _no_positive(confusion: dict[str, Any]) -> str | None:
    return "no positive predicted" if confusion.get("no_positive_predicted") else None


def _subset_gain_cell(document: dict[str, Any], outcome: str) -> str:
    everything = (document["available_case"].get(outcome) or {}).get("all_modalities") or {}
    gain = everything.get("gain") or {}
    if gain.get("value") is None:
        return f'<td class="note">{escape(gain.get("note", "-"))}</td>'
    cell = estimate_cell(gain, signed=True, warning=_few(everything["positives"], document))
    return cell.replace(
        "</td>", f"<br><span class='ci'>(n {everything['n']}, {everything['positives']} positive)</span></td>"
    )


def _area(fpr: list[float], tpr: list[float]) -> float:
    return float(sum((fpr[i] - fpr[i - 1]) * (tpr[i] + tpr[i - 1]) / 2 for i in range(1, len(fpr))))


def _above(estimate: dict[str, Any]) -> float:
    return float(estimate["ci_high"] - estimate["value"]) if estimate.get("ci_high") is not None else 0.0


def _below(estimate: dict[str, Any]) -> float:
    return float(estimate["value"] - estimate["ci_low"]) if estimate.get("ci_low") is not None else 0.0


def _diagonal(figure: go.Figure, name: str) -> None:
    figure.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name=name, line={"dash": "dot", "color": "#cbd2d9"})
    )
