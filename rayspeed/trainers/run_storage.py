"""A run's directory (`run.storage_path/run.name`) on any filesystem pyarrow understands."""

import posixpath
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from rayspeed.config.data import has_uri_scheme
from rayspeed.config.redact import redact_uri
from rayspeed.errors import RunStateError

RAY_SNAPSHOT = "checkpoint_manager_snapshot.json"


@dataclass(frozen=True)
class RunStorage:
    """Where one run lives. `storage_uri` is what Ray gets; `filesystem` + `root` are for our own files."""

    storage_uri: str
    filesystem: pafs.FileSystem
    root: str
    name: str

    @classmethod
    def open(cls, storage_path: str, name: str) -> "RunStorage":
        if has_uri_scheme(storage_path):
            try:
                filesystem, root = pafs.FileSystem.from_uri(storage_path)
            except (pa.ArrowInvalid, OSError) as error:
                raise RunStateError(f"run.storage_path: cannot open {redact_uri(storage_path)}: {error}") from None
            return cls(storage_path, filesystem, root.rstrip("/"), name)
        local = str(Path(storage_path).expanduser().resolve())
        return cls(local, pafs.LocalFileSystem(), local, name)

    @property
    def path(self) -> str:
        return posixpath.join(self.root, self.name)

    def join(self, *parts: str) -> str:
        return posixpath.join(self.path, *parts)

    def display(self, *parts: str) -> str:
        """The location as a user would type it, without credentials."""
        base = redact_uri(self.storage_uri.rstrip("/").split("?")[0])
        return "/".join([base, self.name, *parts])

    def uri(self, fs_path: str) -> str:
        """A filesystem path of this storage as a URI (`s3://bucket/...`), or as-is when local."""
        if self.is_local():
            return fs_path
        return f"{self.storage_uri.split('://', 1)[0]}://{fs_path}"

    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def has_content(self) -> bool:
        info = self.filesystem.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            return False
        return bool(self.filesystem.get_file_info(pafs.FileSelector(self.path, allow_not_found=True)))

    def exists(self, *parts: str) -> bool:
        return self.filesystem.get_file_info(self.join(*parts)).type != pafs.FileType.NotFound

    def has_checkpoint(self) -> bool:
        return self.exists(RAY_SNAPSHOT)

    def read_text(self, *parts: str) -> str | None:
        if not self.exists(*parts):
            return None
        with self.filesystem.open_input_stream(self.join(*parts)) as stream:
            return stream.read().decode()

    def write(self, data: bytes | str, *parts: str) -> None:
        self.filesystem.create_dir(self.path, recursive=True)
        with self.filesystem.open_output_stream(self.join(*parts)) as stream:
            stream.write(data.encode() if isinstance(data, str) else data)
