"""The window's jobs, without Qt: which request of the open document each job serves, which
one the window is waiting for, and what a finished job does to the document.

The window queues every decomposition on the shared job runner and learns the job's id only
when the runner accepts it (off the GUI thread), so a request first has a tag, then an id.
Keeping that bookkeeping here, as plain values, lets it be tested exactly and keeps the window
to drawing and asking.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

import numpy as np
from layerlift.inference.errors import LayerLiftError
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.job_states import JobState
from layerlift.inference.layers import LayerStack
from layerlift.inference.recursive import splice_sublayers


@dataclass(frozen=True, eq=False)
class WholePicture:
    """Decompose the document's source picture."""

    source: np.ndarray


@dataclass(frozen=True, eq=False)
class SplitLayer:
    """Decompose layer `index` of `stack` again and splice the result in its place."""

    index: int
    stack: LayerStack


Purpose = WholePicture | SplitLayer


@dataclass(frozen=True)
class Landing:
    """What a finished job means for the document: a new stack (or none) and a sentence."""

    stack: LayerStack | None
    status: str
    error: tuple[str, str] | None = None  # (title, message) to show, if something went wrong


@dataclass
class DocumentJobs:
    """Tags and job ids of the window's requests; at most one is the one being waited for."""

    pending_tag: str | None = None  # submitted, not accepted by the runner yet
    current_job: str | None = None  # accepted, not finished
    cancel_requested: bool = False
    _purposes: dict[str, Purpose] = field(default_factory=dict)  # tag or job id -> purpose

    @property
    def busy(self) -> bool:
        return self.current_job is not None or self.pending_tag is not None

    def submit(self, purpose: Purpose) -> str:
        """A new request; returns the tag to submit it under."""
        tag = secrets.token_hex(4)
        self.pending_tag = tag
        self._purposes[tag] = purpose
        return tag

    def accepted(self, tag: str, job_id: str) -> Purpose | None:
        """The runner queued `tag` as `job_id`; None if the tag is not ours."""
        purpose = self._purposes.pop(tag, None)
        if purpose is None:
            return None
        self._purposes[job_id] = purpose
        if tag == self.pending_tag:
            self.pending_tag = None
            self.current_job = job_id
        return purpose

    def refused(self, tag: str) -> bool:
        """The runner refused `tag`; True if it was ours."""
        if self._purposes.pop(tag, None) is None:
            return False
        if tag == self.pending_tag:
            self.pending_tag = None
            self.cancel_requested = False
        return True

    def cancel_now(self) -> str | None:
        """The job id to cancel now; without one yet, remember to cancel once accepted."""
        if self.current_job:
            return self.current_job
        if self.pending_tag:
            self.cancel_requested = True
        return None

    def take_cancel_request(self) -> bool:
        """Was a cancel asked for before the job had an id? (Asked once, then forgotten.)"""
        asked, self.cancel_requested = self.cancel_requested, False
        return asked and self.current_job is not None

    def finished(self, job: JobSnapshot) -> Purpose | None:
        """The current job ended: forget it and return what it was for. For another of our
        jobs (one the user moved on from), forget it and return None."""
        if job.id != self.current_job:
            self._purposes.pop(job.id, None)
            return None
        self.current_job = None
        self.cancel_requested = False
        return self._purposes.pop(job.id, None)


def land(job: JobSnapshot, purpose: Purpose, result: LayerStack, source: np.ndarray | None,
         stack: LayerStack | None) -> Landing:
    """Where a done job's `result` goes, given the document open now (`source`, `stack`)."""
    assert job.state is JobState.DONE
    if isinstance(purpose, SplitLayer):
        if purpose.stack is not stack:
            return Landing(None, "the split finished for a document no longer open; "
                                 "it is in the history")
        try:
            spliced = splice_sublayers(purpose.stack, purpose.index, result, job.backend)
        except (LayerLiftError, ValueError) as exc:
            return Landing(None, "", ("Cannot place the sub-layers", str(exc)))
        name = purpose.stack.layers[purpose.index].name
        return Landing(spliced, f"'{name}' split into {len(result.layers)} layers")
    if purpose.source is not source:
        return Landing(None, "a decomposition finished for a picture no longer open; "
                             "it is in the history")
    quality = job.result.quality.describe() if job.result else "n/a"
    return Landing(result, f"{len(result.layers)} layers from {job.backend} "
                           f"(recomposition {quality})")
