"""The states a job goes through, defined once for every Python side of LayerLift.

Standard library only and free of package-relative imports: the GIMP plug-in, whose Python
has nothing else, ships this very file (as `ll_job_states.py`, see
`layerlift.desktop.plugin_sources`), so the plug-in, the bridge's client, the desktop app and
the job runner all compare against the same names. On the wire a state is its string value.
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is. The runner moves it forward only; the last three are final."""

    QUEUED = "queued"
    LOADING = "loading"
    RUNNING = "running"
    REFINING = "refining"
    WRITING = "writing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Finished one way or another: no event about this job follows."""
        return self in TERMINAL

    @property
    def working(self) -> bool:
        """The backend is busy with it (loading excluded: that is the model, not the job)."""
        return self in WORKING


TERMINAL = frozenset({JobState.DONE, JobState.FAILED, JobState.CANCELLED})
ACTIVE = frozenset(JobState) - TERMINAL
WORKING = frozenset({JobState.RUNNING, JobState.REFINING, JobState.WRITING})
UNSUCCESSFUL = frozenset({JobState.FAILED, JobState.CANCELLED})


def parse_state(value: object, default: JobState = JobState.FAILED) -> JobState:
    """The state a peer sent, or `default` for anything this version does not know."""
    try:
        return JobState(value)
    except ValueError:
        return default
