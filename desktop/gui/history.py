"""Recent jobs, read from the job runner (and so from the job folders on disk).

Job records do not say which file a picture came from (plug-ins send pixels, not paths), so
the window remembers the names of the pictures it sent in a small JSON file beside the jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from pathlib import Path

from layerlift.inference import paths
from layerlift.inference.atomic import atomic_writer
from layerlift.inference.job_snapshot import JobSnapshot
from layerlift.inference.job_states import JobState
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QWidget

log = logging.getLogger(__name__)

NAMES_FILE = "desktop-names.json"
_MAX_NAMES = 500
JOB_ID_ROLE = Qt.ItemDataRole.UserRole


class SourceNames:
    """job id -> the file name the picture was opened from; best effort, never fatal."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.data_dir() / NAMES_FILE
        self._names: dict[str, str] = {}
        with contextlib.suppress(OSError, ValueError, TypeError):
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if isinstance(data, dict):
                self._names = {str(k): str(v) for k, v in data.items()}

    def get(self, job_id: str) -> str | None:
        return self._names.get(job_id)

    def set(self, job_id: str, name: str) -> None:
        self._names[job_id] = name
        if len(self._names) > _MAX_NAMES:
            for key in list(self._names)[: len(self._names) - _MAX_NAMES]:
                del self._names[key]
        try:
            with atomic_writer(self.path) as handle:
                handle.write(json.dumps(self._names).encode("utf-8"))
        except OSError as exc:
            log.warning("could not save picture names: %s", exc)


def describe(job: JobSnapshot, name: str | None) -> str:
    """One line per job: when, what, how it ended."""
    when = time.strftime("%d %b %H:%M", time.localtime(job.finished or job.created))
    what = name or f"picture {job.params.width}×{job.params.height}"
    if job.state is JobState.DONE and job.result is not None:
        outcome = f"{job.result.layers} layers"
    elif job.state is JobState.FAILED:
        outcome = "failed: " + (job.error.message if job.error else "")
    else:
        outcome = str(job.state)
    return f"{when}  {what}  ·  {outcome}  ·  {job.backend}"


class HistoryList(QListWidget):
    """Finished jobs, newest first; activating a finished one asks to reopen it."""

    reopen_requested = Signal(str)

    def __init__(self, names: SourceNames, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.names = names
        self.setAlternatingRowColors(True)
        self.itemActivated.connect(self._on_activated)

    def populate(self, jobs: list[JobSnapshot], limit: int = 100) -> None:
        finished = [job for job in jobs if job.terminal]
        finished.sort(key=lambda job: job.finished or job.created, reverse=True)
        self.clear()
        for job in finished[:limit]:
            item = QListWidgetItem(describe(job, self.names.get(job.id)))
            item.setData(JOB_ID_ROLE, job.id)
            if job.state is not JobState.DONE:
                item.setForeground(QColor(140, 140, 140))
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsSelectable)
            item.setToolTip(f"job {job.id}")
            self.addItem(item)

    def job_ids(self) -> list[str]:
        return [self.item(i).data(JOB_ID_ROLE) for i in range(self.count())]

    def _on_activated(self, item: QListWidgetItem) -> None:
        if item.flags() & Qt.ItemFlag.ItemIsSelectable:
            self.reopen_requested.emit(item.data(JOB_ID_ROLE))
