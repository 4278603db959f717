"""What a job is at one moment, as a frozen value: the runner hands these to its listeners and
callers, the desktop app uses them as they are, and they become JSON only where they leave
the process (the bridge's messages, a job folder's job.json).

The JSON shape is the `job` object of docs/protocol.md. Two rules of that shape live here
and nowhere else: JSON has no infinity, so an exact recomposition (PSNR = inf) travels as
`"psnr": null, "exact": true`; and a peer's unknown state or missing field is read leniently,
because a job.json may come from another version of LayerLift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from layerlift.inference.job_states import JobState, parse_state

Scalar = str | int | float | bool


def _finite_or_none(value: Any) -> float | None:
    """JSON (and JavaScript's JSON.parse) has no infinity or NaN: those travel as null."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Quality:
    """How closely a stack recomposites to its picture: PSNR in dB, infinite when exact."""

    psnr: float | None = None

    @property
    def exact(self) -> bool:
        return self.psnr == math.inf

    def describe(self) -> str:
        """`exact`, `56.3 dB`, or `n/a`, as the window and the CLI print it."""
        if self.exact:
            return "exact"
        return f"{self.psnr:.1f} dB" if self.psnr is not None else "n/a"

    @classmethod
    def of(cls, psnr: Any) -> Quality:
        return cls(_number(psnr))

    def to_json(self) -> dict[str, Any]:
        return {"psnr": _finite_or_none(self.psnr), "exact": self.exact}

    @classmethod
    def from_json(cls, psnr: Any, exact: Any) -> Quality:
        return cls(math.inf if exact is True else _number(psnr))


@dataclass(frozen=True)
class JobParams:
    """What was asked: the layer count (None = the backend decides), seed, backend options,
    and the size of the submitted picture."""

    layers: int | None = None
    seed: int = 0
    options: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    width: int = 0
    height: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"layers": self.layers, "seed": self.seed, "options": dict(self.options),
                "width": self.width, "height": self.height}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobParams:
        layers = data.get("layers")
        return cls(layers=layers if isinstance(layers, int) else None,
                   seed=int(data.get("seed") or 0),
                   options=_frozen(data.get("options") if isinstance(data.get("options"), dict)
                                   else None),
                   width=int(data.get("width") or 0), height=int(data.get("height") or 0))


@dataclass(frozen=True)
class JobProgress:
    stage: str = str(JobState.QUEUED)
    fraction: float = 0.0
    step: int | None = None
    total: int | None = None
    message: str = ""

    def describe(self) -> str:
        """The message, with `(step 3/50)` when steps are counted."""
        text = self.message or self.stage
        if self.step is not None and self.total:
            text = f"{text} (step {self.step}/{self.total})"
        return text

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "fraction": round(self.fraction, 4), "step": self.step,
                "total": self.total, "message": self.message}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], stage: str) -> JobProgress:
        return cls(stage=str(data.get("stage", stage)),
                   fraction=float(_number(data.get("fraction")) or 0.0),
                   step=data.get("step") if isinstance(data.get("step"), int) else None,
                   total=data.get("total") if isinstance(data.get("total"), int) else None,
                   message=str(data.get("message") or ""))


@dataclass(frozen=True)
class JobError:
    code: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    @classmethod
    def from_json(cls, data: Any) -> JobError | None:
        if not isinstance(data, Mapping):
            return None
        return cls(str(data.get("code") or "error"), str(data.get("message") or ""))


@dataclass(frozen=True)
class JobResult:
    """What a finished job produced. `details` are the facts its backend reports to the user
    (the caption it used, its memory mode, …): scalars, shown as they are."""

    layers: int
    names: tuple[str, ...] = ()
    quality: Quality = Quality()
    quality_before: Quality = Quality()  # before the exact-recomposition refinement
    note: str | None = None
    details: Mapping[str, Scalar] = field(default_factory=lambda: _frozen(None))

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"layers": self.layers, "names": list(self.names),
                                **self.quality.to_json(),
                                "psnr_before": _finite_or_none(self.quality_before.psnr),
                                "note": self.note}
        for key, value in self.details.items():
            data.setdefault(key, value)
        return data

    @classmethod
    def from_json(cls, data: Any) -> JobResult | None:
        if not isinstance(data, Mapping):
            return None
        known = {"layers", "names", "psnr", "exact", "psnr_before", "note"}
        return cls(
            layers=int(data.get("layers") or 0),
            names=tuple(str(n) for n in data.get("names") or ()),
            quality=Quality.from_json(data.get("psnr"), data.get("exact")),
            quality_before=Quality.of(data.get("psnr_before")),
            note=data.get("note") if isinstance(data.get("note"), str) else None,
            details=_frozen({k: v for k, v in data.items()
                             if k not in known and isinstance(v, (str, int, float, bool))}),
        )


@dataclass(frozen=True)
class JobSnapshot:
    """One job at one moment. Compare states with `JobState`, never with strings."""

    id: str
    state: JobState
    backend: str
    created: float
    params: JobParams = JobParams()
    progress: JobProgress = JobProgress()
    started: float | None = None
    finished: float | None = None
    position: int | None = None  # 1 = next to run, while queued
    error: JobError | None = None
    result: JobResult | None = None

    @property
    def terminal(self) -> bool:
        return self.state.terminal

    def to_json(self) -> dict[str, Any]:
        """The `job` object of docs/protocol.md (and of a job folder's job.json)."""
        return {
            "id": self.id,
            "state": str(self.state),
            "backend": self.backend,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "position": self.position,
            "params": self.params.to_json(),
            "progress": self.progress.to_json(),
            "error": self.error.to_json() if self.error else None,
            "result": self.result.to_json() if self.result else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSnapshot:
        """Read a `job` object; raises KeyError without an id, tolerates the rest."""
        state = parse_state(data.get("state"))
        params = data.get("params") if isinstance(data.get("params"), Mapping) else {}
        progress = data.get("progress") if isinstance(data.get("progress"), Mapping) else {}
        return cls(
            id=str(data["id"]),
            state=state,
            backend=str(data.get("backend") or ""),
            created=float(_number(data.get("created")) or 0.0),
            params=JobParams.from_json(params),
            progress=JobProgress.from_json(progress, str(state)),
            started=_number(data.get("started")),
            finished=_number(data.get("finished")),
            position=data.get("position") if isinstance(data.get("position"), int) else None,
            error=JobError.from_json(data.get("error")),
            result=JobResult.from_json(data.get("result")),
        )
