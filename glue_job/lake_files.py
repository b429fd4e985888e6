"""Small JSON documents under the lake root (job status, app identity), local or on S3, written whole.

The tables themselves are Delta tables (glue_job/sink.py); these are the job's own state files.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from core.durable import write_atomically


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
        not at all: locally through a hidden temporary file, fsync'ed and renamed (core/durable.py), which
        a failed write removes."""
        parent = target.rpartition("/")[0]
        self.fs.create_dir(parent, recursive=True)
        if not self.local:
            write(target)  # an S3 PUT is atomic and durable: readers see the old object or the new one
            return
        # The job trusts these after a crash (the app identity guards exactly-once): on disk, not only renamed.
        write_atomically(Path(target), lambda temporary: write(str(temporary)))

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
