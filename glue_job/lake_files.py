"""Small JSON documents under the lake root (job status, app identity), local or on S3, written whole.

The tables themselves are Delta tables (glue_job/sink.py); these are the job's own state files.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pyarrow.fs as pafs


class LakeFiles:
    """Files under the lake root, local or on S3, written whole (readers never see half a file)."""

    def __init__(self, root_uri: str) -> None:
        self.uri = root_uri.rstrip("/")
        self.fs, self.root = pafs.FileSystem.from_uri(root_uri)
        self.local = isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, relative: str) -> str:
        """Return the absolute path of a file under the root."""
        return f"{self.root.rstrip('/')}/{relative}"

    def write_atomically(self, target: str, write: Callable[[str], None]) -> None:
        """Have write(path) write the file at the absolute path target, which readers then see whole or
        not at all: locally through a hidden temporary file and a rename, which a failed write removes."""
        parent, _, name = target.rpartition("/")
        self.fs.create_dir(parent, recursive=True)
        if not self.local:
            write(target)  # an S3 PUT is atomic: readers see the old object or the new one
            return
        temporary = f"{parent}/.{name}.{uuid.uuid4().hex[:8]}.tmp"
        with contextlib.ExitStack() as unless_moved:
            unless_moved.callback(self._delete_if_present, temporary)
            write(temporary)
            self.fs.move(temporary, target)
            unless_moved.pop_all()

    def _delete_if_present(self, path: str) -> None:
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            self.fs.delete_file(path)

    def write_json(self, relative: str, document: Any) -> None:
        """Write a JSON document at the relative path."""
        data = json.dumps(document, indent=1, default=str).encode()

        def put(path: str) -> None:
            with self.fs.open_output_stream(path) as out:
                out.write(data)

        self.write_atomically(self.path(relative), put)

    def read_json(self, relative: str) -> Any | None:
        """Return a JSON document, or None when it does not exist."""
        try:
            with self.fs.open_input_stream(self.path(relative)) as stream:
                return json.loads(stream.read())
        except (FileNotFoundError, OSError, ValueError):
            return None

    def exists(self, relative: str) -> bool:
        """Return whether a file or folder exists at the relative path."""
        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def move_aside(self, relative: str, suffix: str) -> str | None:
        """Move a folder to `<relative><suffix>`, keeping it for an operator to inspect; return the new
        relative path, or None when there was nothing to move. On S3 (no rename) its objects are deleted:
        the bucket's versioning keeps them as noncurrent versions."""
        if not self.exists(relative):
            return None
        if not self.local:
            self.fs.delete_dir(self.path(relative))
            return None
        target = f"{relative}{suffix}"
        self.fs.move(self.path(relative), self.path(target))
        return target
