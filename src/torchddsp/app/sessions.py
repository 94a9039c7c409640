"""Browser sessions: a cookie names a folder of the session's own; idle sessions are removed.

Uploads are found by the ids this module hands out, never by a name or path the
page sends, so one session can neither read nor overwrite another's files.
"""

from __future__ import annotations

import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

COOKIE = "torchddsp_session"
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{22}$")  # secrets.token_urlsafe(16)
KEEP_UPLOADS = 20  # a session's older uploads are deleted as new ones arrive


@dataclass
class Upload:
    """A checked file: ``name`` as the browser gave it (for messages), ``info`` for the page."""

    id: str
    name: str
    kind: str
    path: Path
    info: dict


@dataclass
class Session:
    id: str
    folder: Path
    last_seen: float
    uploads: dict[str, Upload] = field(default_factory=dict)

    def new_upload_path(self, suffix: str) -> tuple[str, Path]:
        upload_id = secrets.token_hex(8)
        folder = self.folder / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        return upload_id, folder / f"{upload_id}{suffix}"

    def add_upload(self, upload: Upload) -> None:
        self.uploads[upload.id] = upload
        while len(self.uploads) > KEEP_UPLOADS:
            oldest = self.uploads.pop(next(iter(self.uploads)))
            oldest.path.unlink(missing_ok=True)

    def upload(self, upload_id: object, kinds: tuple[str, ...]) -> Upload:
        """This session's upload ``upload_id`` of one of ``kinds``; UserError otherwise."""
        found = self.uploads.get(upload_id) if isinstance(upload_id, str) else None
        if found is None or found.kind not in kinds or not found.path.is_file():
            raise UserError("that file is no longer here: upload it again")
        return found


class SessionStore:
    """Sessions by cookie value, each with a folder under ``root``."""

    def __init__(self, root: Path, idle_seconds: float):
        self.root, self.idle_seconds = Path(root), idle_seconds
        self.root.mkdir(parents=True, exist_ok=True)
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, cookie: str | None) -> tuple[Session, bool]:
        """The cookie's session, or a new one (then True): an unknown id is never adopted."""
        now = time.monotonic()
        with self._lock:
            session = self._sessions.get(cookie) if cookie and _SESSION_ID.match(cookie) else None
            if session is not None:
                session.last_seen = now
                return session, False
            session_id = secrets.token_urlsafe(16)
            session = Session(session_id, self.root / session_id, now)
            session.folder.mkdir()
            self._sessions[session_id] = session
            return session, True

    def sweep(self, busy: Callable[[str], bool]) -> list[str]:
        """Remove the sessions idle longer than ``idle_seconds`` and not ``busy``; their ids."""
        deadline = time.monotonic() - self.idle_seconds
        with self._lock:
            idle = [s for s in self._sessions.values() if s.last_seen < deadline and not busy(s.id)]
            for session in idle:
                del self._sessions[session.id]
        for session in idle:
            shutil.rmtree(session.folder, ignore_errors=True)
        return [session.id for session in idle]

    def close(self) -> None:
        with self._lock:
            self._sessions.clear()
        shutil.rmtree(self.root, ignore_errors=True)
