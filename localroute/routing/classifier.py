"""The fast local route classifier: TF-IDF + structural features into logistic regression.

Why this shape: on this data a linear model over word and char n-grams plus a few structural
signals is as accurate as sentence embeddings, needs no torch, predicts in about a millisecond
and serialises to well under a megabyte. A second, tool-only model picks the `tool_hint`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from functools import cache
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from localroute.routing.features import FeatureBuilder, text_view
from localroute.routing.types import ROUTES, RoutePrediction, RouteRow, ToolHint

# Bump when features, hyper-parameters or the artifact layout change, so that caches keyed on
# artifact_id() are invalidated even if the training data did not change.
STATIC_VERSION = "rc2"
ARTIFACT_FORMAT = 1
PACKAGED_ARTIFACT = Path(__file__).parent / "artifacts" / "route_classifier.joblib"

# Chosen by leave-source-out on the dev set (train without one source family, score it), not by
# in-fold CV: C=30 with the structural block at 0.3 kept the best held-out-family accuracy and
# had the lowest held-out log-loss (0.17 vs 0.24 for C=10, 0.1).
ROUTE_C = 30.0
HINT_C = 20.0
STRUCT_WEIGHT = 0.3


class ArtifactError(RuntimeError):
    """The classifier artifact is missing, unreadable or built for another version."""


def canonical_order(rows: list[RouteRow]) -> list[RouteRow]:
    """The rows in one fixed order, whatever files they came from and in which order.

    The solver sums over rows in order, and float addition is not associative: the same rows in
    another order give coefficients that differ in the last bits, hence other artifact bytes.
    """
    return sorted(rows, key=lambda r: (r.query, r.route, r.tool_hint or ""))


def data_fingerprint(rows: list[RouteRow], seed: int = 0) -> str:
    """Hash of the training rows, hyper-parameters and seed: equal inputs, equal model."""
    digest = hashlib.sha256()
    digest.update(f"{STATIC_VERSION}|{ROUTE_C}|{HINT_C}|{STRUCT_WEIGHT}|{seed}".encode())
    for row in canonical_order(rows):
        digest.update(json.dumps([row.query, row.route, row.tool_hint]).encode())
    return digest.hexdigest()[:16]


class RouteClassifier:
    """Route classifier plus tool-hint classifier; build with `train`, persist with `save`."""

    def __init__(
        self,
        features: FeatureBuilder,
        route_model: LogisticRegression,
        hint_vectorizer: TfidfVectorizer,
        hint_model: LogisticRegression,
        fingerprint: str,
    ) -> None:
        self._features = features
        self._route_model = route_model
        self._hint_vectorizer = hint_vectorizer
        self._hint_model = hint_model
        self._fingerprint = fingerprint
        self._routes: list[str] = [str(c) for c in route_model.classes_]
        self._hints: list[str] = [str(c) for c in hint_model.classes_]

    @classmethod
    def train(cls, rows: list[RouteRow], seed: int = 0) -> RouteClassifier:
        """Fit both models on `rows`; the same rows (in any order) and seed give the same model,
        byte for byte once saved."""
        rows = canonical_order(rows)
        missing = sorted(set(ROUTES) - {r.route for r in rows})
        if missing:
            raise ValueError(f"training rows have no example of route(s) {missing}; add some")
        tool_rows = [r for r in rows if r.route == "tool" and r.tool_hint is not None]
        if len({r.tool_hint for r in tool_rows}) < 2:
            raise ValueError("training rows need tool rows with at least two different tool_hint")
        # One BLAS thread: faster on small sparse problems (no oversubscription on 2 cores) and
        # the same arithmetic order on every run.
        with threadpool_limits(limits=1):
            return cls._fit(rows, tool_rows, seed)

    @classmethod
    def _fit(cls, rows: list[RouteRow], tool_rows: list[RouteRow], seed: int) -> RouteClassifier:
        queries = [r.query for r in rows]
        features = FeatureBuilder(struct_weight=STRUCT_WEIGHT).fit(queries)
        route_model = LogisticRegression(C=ROUTE_C, max_iter=5000, random_state=seed)
        route_model.fit(features.transform(queries), [r.route for r in rows])

        hint_vectorizer = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, lowercase=True
        )
        hint_x = hint_vectorizer.fit_transform([r.query for r in tool_rows])
        hint_model = LogisticRegression(C=HINT_C, max_iter=5000, random_state=seed)
        hint_model.fit(hint_x, [r.tool_hint for r in tool_rows])
        return cls(features, route_model, hint_vectorizer, hint_model, data_fingerprint(rows, seed))

    def predict(self, query: str) -> RoutePrediction:
        """Route probabilities for one query; `tool_hint` is set when the route is tool."""
        probs = self._route_model.predict_proba(self._features.transform([query]))[0]
        best = int(np.argmax(probs))
        route = self._routes[best]
        hint = self.predict_tool_hint(query) if route == "tool" else None
        return RoutePrediction.model_validate(
            {
                "route": route,
                "confidence": float(probs[best]),
                "probabilities": {r: float(p) for r, p in zip(self._routes, probs, strict=True)},
                "tool_hint": hint,
            }
        )

    def predict_tool_hint(self, query: str) -> ToolHint:
        """The most likely tool for a query already known to be a tool request."""
        # The hint model was fitted on tool requests, all under 60 characters; on a long paste
        # its char n-grams would cost time in proportion to the paste and say nothing more than
        # the head and tail, where the request sits.
        view = text_view(query)
        probs = self._hint_model.predict_proba(self._hint_vectorizer.transform([view]))[0]
        hint: ToolHint = self._hints[int(np.argmax(probs))]  # type: ignore[assignment]
        return hint

    def artifact_id(self) -> str:
        """Stable id of this model: static version + a hash of its training data and params."""
        return f"{STATIC_VERSION}-{self._fingerprint}"

    def save(self, path: Path | str) -> Path:
        """Write the classifier to `path` (joblib, compressed) and return the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        for vectorizer in (*self._features.vectorizers(), self._hint_vectorizer):
            # scikit-learn caches id(stop_words), a memory address that differs in every
            # process, to skip a repeated check; left in, it made two trainings on the same
            # data write different bytes. Without it the check simply runs again after loading.
            vars(vectorizer).pop("_stop_words_id", None)
        payload = {
            "format": ARTIFACT_FORMAT,
            "static_version": STATIC_VERSION,
            "sklearn_version": sklearn.__version__,
            "classifier": self,
        }
        joblib.dump(payload, target, compress=("xz", 6))
        return target

    @staticmethod
    def load(path: Path | str | None = None) -> RouteClassifier:
        """Load a saved classifier; None loads the packaged artifact once per process."""
        if path is None:
            return _load_packaged()
        return _load_from(Path(path))


def _load_from(path: Path) -> RouteClassifier:
    if not path.is_file():
        raise ArtifactError(
            f"route classifier artifact not found at {path}; run `localroute train-router` "
            "to build it"
        )
    try:
        payload: Any = joblib.load(path)
    except Exception as exc:  # unpickling can fail in many ways; all mean "rebuild it"
        raise ArtifactError(
            f"cannot read route classifier artifact {path} ({type(exc).__name__}: {exc}); "
            "run `localroute train-router` to rebuild it"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
        raise ArtifactError(
            f"{path} is not a route classifier artifact of format {ARTIFACT_FORMAT}; "
            "run `localroute train-router` to rebuild it"
        )
    built_with = payload.get("sklearn_version")
    if _minor(str(built_with)) != _minor(sklearn.__version__):
        raise ArtifactError(
            f"{path} was built with scikit-learn {built_with} but {sklearn.__version__} is "
            "installed; run `localroute train-router` to rebuild it"
        )
    classifier = payload.get("classifier")
    if not isinstance(classifier, RouteClassifier):
        raise ArtifactError(f"{path} holds no RouteClassifier; run `localroute train-router`")
    return classifier


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


_packaged_lock = threading.Lock()


@cache
def _load_packaged_cached() -> RouteClassifier:
    return _load_from(PACKAGED_ARTIFACT)


def _load_packaged() -> RouteClassifier:
    # functools.cache is not guarded against two threads loading at once; the lock is.
    with _packaged_lock:
        return _load_packaged_cached()


def clear_packaged_cache() -> None:
    """Forget the cached packaged classifier (after `train-router` rewrote the artifact)."""
    with _packaged_lock:
        _load_packaged_cached.cache_clear()
