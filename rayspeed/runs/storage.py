"""A run's directory (`run.storage_path/run.name`) on any filesystem pyarrow understands.

Every write replaces a file whole and atomically: on a local disk through a temporary file and a
rename, on object stores by the single PUT that makes an object visible. A kill never leaves half
a file behind.
"""

import os
import posixpath
import secrets
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs

from rayspeed.config.data import has_uri_scheme
from rayspeed.config.redact import redact_uri
from rayspeed.errors import RunStateError


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

    @classmethod
    def at(cls, run_dir: str) -> "RunStorage":
        """A run directory given whole (`runs/x`, `s3://b/runs/x?endpoint_override=...`): its parent is
        the storage path (keeping a URI's options), its last part the name."""
        if not has_uri_scheme(run_dir):
            local = Path(run_dir).expanduser().resolve()
            return cls.open(str(local.parent), local.name)
        location, separator, query = run_dir.partition("?")
        parent, name = posixpath.split(location.rstrip("/"))
        return cls.open(parent + separator + query, name)

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

    def nested(self, folder: str, name: str) -> "RunStorage":
        """A run kept inside this one, in `folder` (a sweep's trials); a URI keeps its query last."""
        base, separator, query = self.storage_uri.partition("?")
        return RunStorage(posixpath.join(base, self.name, folder) + separator + query, self.filesystem,
                          self.join(folder), name)

    def download(self, local_dir: str | Path, *parts: str) -> None:
        """Copies a directory of this run to a local directory."""
        pafs.copy_files(self.join(*parts), str(local_dir), source_filesystem=self.filesystem,
                        destination_filesystem=pafs.LocalFileSystem())

    def upload(self, local_dir: str | Path, *parts: str) -> None:
        """Copies a local directory into this run."""
        pafs.copy_files(str(local_dir), self.join(*parts), source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.filesystem)

    def move(self, source: str, target: str) -> None:
        """Moves a directory of this run to another name in it (object stores: a copy, then a delete)."""
        source, target = self.join(source), self.join(target)
        self.filesystem.create_dir(posixpath.dirname(target), recursive=True)
        if self.is_local():
            self.filesystem.move(source, target)
            return
        pafs.copy_files(source, target, source_filesystem=self.filesystem, destination_filesystem=self.filesystem)
        self.filesystem.delete_dir(source)

    def is_local(self) -> bool:
        return isinstance(self.filesystem, pafs.LocalFileSystem)

    def has_content(self) -> bool:
        info = self.filesystem.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            return False
        return bool(self.filesystem.get_file_info(pafs.FileSelector(self.path, allow_not_found=True)))

    def unused(self, folder: str, name: str) -> str:
        """`folder/name`, or `folder/name.2`, `.3`, ... when taken: what is written there never replaces
        an earlier one."""
        target, number = f"{folder}/{name}", 1
        while self.exists(target):
            number += 1
            target = f"{folder}/{name}.{number}"
        return target

    def exists(self, *parts: str) -> bool:
        return self.filesystem.get_file_info(self.join(*parts)).type != pafs.FileType.NotFound

    def read_text(self, *parts: str) -> str | None:
        content = self.read_bytes(*parts)
        return None if content is None else content.decode()

    def read_bytes(self, *parts: str) -> bytes | None:
        if not self.exists(*parts):
            return None
        with self.filesystem.open_input_stream(self.join(*parts)) as stream:
            return stream.read()

    def write(self, data: bytes | str, *parts: str) -> None:
        """Replaces the file whole and atomically."""
        payload = data.encode() if isinstance(data, str) else data
        target = self.join(*parts)
        self.filesystem.create_dir(posixpath.dirname(target), recursive=True)
        if not self.is_local():
            with self.filesystem.open_output_stream(target) as stream:  # visible only once complete
                stream.write(payload)
            return
        os.replace(self._local_temporary(target, payload), target)

    @staticmethod
    def _local_temporary(target: str, payload: bytes) -> str:
        temporary = f"{target}.{secrets.token_hex(4)}.tmp"
        with open(temporary, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        return temporary

    def append(self, text: str, *parts: str) -> None:
        """Adds complete lines at the end: one write(2) on a local disk (a kill cannot split it),
        a whole new object on object stores."""
        target = self.join(*parts)
        if not self.is_local():
            self.write((self.read_text(*parts) or "") + text, *parts)
            return
        self.filesystem.create_dir(posixpath.dirname(target), recursive=True)
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            payload = text.encode()
            while payload:
                payload = payload[os.write(descriptor, payload):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    def create_exclusively(self, data: str, *parts: str) -> bool:
        """Writes the file only if it does not exist yet; False when another process has it.

        Atomic on a local or shared POSIX disk (a hard link fails if the name exists). Object stores
        offer no create-if-absent through pyarrow: there an existence check, a write and a read-back
        catch all but two processes racing within those three requests.
        """
        target = self.join(*parts)
        self.filesystem.create_dir(posixpath.dirname(target), recursive=True)
        if self.is_local():
            temporary = self._local_temporary(target, data.encode())
            try:
                os.link(temporary, target)  # fails if the target exists; readers never see it half written
            except FileExistsError:
                return False
            finally:
                os.unlink(temporary)
            return True
        if self.exists(*parts):
            return False
        self.write(data, *parts)
        return self.read_text(*parts) == data
