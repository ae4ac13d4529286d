"""What PromQL expressions evaluate to, over all evaluation steps at once.

A value holds one number per step: a ``Scalar`` an array, each series of a ``Vector`` an array
and a mask of the steps where it has a sample (NaN is a value, not an absence, in PromQL).
An instant query is the one-step case of a range query.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from unity.api.prometheus.labels import NAME, Labels

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


class PromQLError(ValueError):
    """The query cannot be evaluated; ``kind`` is Prometheus's errorType."""

    def __init__(self, message: str, kind: str = "bad_data") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class Series:
    labels: Labels
    values: Floats
    present: Mask


@dataclass(slots=True)
class Vector:
    series: list[Series]


@dataclass(slots=True)
class Scalar:
    values: Floats


@dataclass(slots=True)
class String:
    value: str


Value = Vector | Scalar | String


def drop_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != NAME)


def text(labels: Labels) -> str:
    return "{" + ", ".join(f'{k}="{v}"' for k, v in labels) + "}"


def merged(series: list[Series]) -> Vector:
    """Series with the same labels become one, as Prometheus keys its output by label set; two
    of them with a sample at the same step are the error Prometheus reports."""
    out: dict[Labels, Series] = {}
    for s in series:
        if not s.present.any():
            continue
        seen = out.get(s.labels)
        if seen is None:
            out[s.labels] = s
            continue
        if (seen.present & s.present).any():
            raise PromQLError(
                f"vector cannot contain metrics with the same labelset {text(s.labels)}",
                "execution",
            )
        out[s.labels] = Series(
            s.labels,
            np.where(s.present, s.values, seen.values),
            seen.present | s.present,
        )
    return Vector(list(out.values()))
