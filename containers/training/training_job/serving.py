"""Real-time risk scores: the trained model behind SageMaker's container contract (`python -m training_job
serve`, started by a SageMaker serverless endpoint with the training image; optional, RealtimeEndpoint).

SageMaker unpacks model.tar.gz into /opt/ml/model and sends HTTP to port 8080:
- `GET /ping`: 200 once the predictors are loaded;
- `POST /invocations` with `{"instances": [{"clinical__age_at_index_years": 71, ...}, ...]}` (feature
  columns as in the dataset snapshot; a missing column or modality is null): 200 with
  `{"model_id": ..., "predictions": [{"<outcome>": {"probability": p, "decision": bool, "threshold": t}}]}`,
  the same predictors and thresholds as the scoring job (training_job.scoring); 400 with `{"error": ...}`
  for a body that is not that shape.

Logs carry counts only: instances are patient features and never reach a log line.
"""

from __future__ import annotations

import json
import logging
import os
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training_job.errors import JobError
from training_job.scoring import MODEL_CARD_FILE, scored_sets, threshold_of, unpacked_model

log = logging.getLogger("training_job")

MODEL_DIR = Path("/opt/ml/model")
PORT = 8080
MODEL_ID_ENV = "MMPIPE_MODEL_ID"  # set by the Lambda that deploys the model (CreateModel's Environment)
MAX_INSTANCES = 1000  # a serverless endpoint's payload is at most 4 MB anyway


class Scorer:
    """The model card's scored predictor per outcome (the full set), loaded once."""

    def __init__(self, model_dir: Path) -> None:
        from autogluon.tabular import TabularPredictor

        root = unpacked_model(model_dir)
        try:
            self.card: dict[str, Any] = json.loads((root / MODEL_CARD_FILE).read_text())
        except (OSError, ValueError) as error:
            raise JobError(f"cannot read the model card: {error}") from error
        self.model_id = os.environ.get(MODEL_ID_ENV) or ""
        self.predictors: dict[str, tuple[str, Any]] = {}
        for outcome, modality_set in scored_sets(self.card).items():
            path = root / self.card["predictors"][outcome][modality_set]
            self.predictors[outcome] = (
                modality_set,
                TabularPredictor.load(str(path), require_py_version_match=False),
            )
        if not self.predictors:
            raise JobError("the model card lists no predictor to serve")

    def predict(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        frame = pd.DataFrame.from_records(instances)
        results: list[dict[str, Any]] = [{} for _ in instances]
        for outcome, (modality_set, predictor) in self.predictors.items():
            features = list(predictor.features())
            rows = frame.reindex(columns=features)
            probability = np.asarray(predictor.predict_proba(rows, as_multiclass=False), dtype=np.float64)
            threshold, _criterion = threshold_of(self.card, outcome, modality_set)
            for result, p in zip(results, probability, strict=True):
                result[outcome] = {
                    "probability": round(float(p), 6),
                    "decision": bool(p >= threshold),
                    "threshold": threshold,
                }
        return results


def parse_instances(body: bytes) -> list[dict[str, Any]]:
    """The request's instances; ValueError (-> 400) with what is wrong."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise ValueError(f"the body is not JSON: {error}") from None
    instances = document.get("instances") if isinstance(document, dict) else None
    if not isinstance(instances, list) or not all(isinstance(i, dict) for i in instances):
        raise ValueError('expected {"instances": [{feature: value, ...}, ...]}')
    if not 1 <= len(instances) <= MAX_INSTANCES:
        raise ValueError(f"expected 1 to {MAX_INSTANCES} instances, got {len(instances)}")
    return instances


def handler_for(scorer: Scorer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/ping":
                self._reply(HTTPStatus.OK, {"status": "ok", "outcomes": sorted(scorer.predictors)})
            else:
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/invocations":
                self._reply(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path}"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                instances = parse_instances(self.rfile.read(length))
            except ValueError as error:
                self._reply(HTTPStatus.BAD_REQUEST, {"error": str(error)})
                return
            predictions = scorer.predict(instances)
            log.info("scored %d instance(s)", len(instances))
            self._reply(HTTPStatus.OK, {"model_id": scorer.model_id, "predictions": predictions})

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the access log would repeat every request; counts are logged above

        def _reply(self, status: HTTPStatus, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def server(model_dir: Path = MODEL_DIR, port: int = PORT, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104 - the container's port
    """The HTTP server SageMaker talks to (not started: call serve_forever)."""
    scorer = Scorer(model_dir)
    log.info("serving %d outcome(s) on port %d", len(scorer.predictors), port)
    return ThreadingHTTPServer((host, port), handler_for(scorer))
