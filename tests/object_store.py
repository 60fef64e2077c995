"""A Beam file system with object-store semantics for tests: ``fakestore://bucket/key`` objects kept as files under
a local folder, no directories (``mkdirs`` does nothing, a rename makes its destination's "folder"), and listing by
key prefix, as on GCS or S3. Beam finds it by its scheme once this module is imported."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem

SCHEME = "fakestore"
PREFIX = f"{SCHEME}://"


class FakeObjectStore(LocalFileSystem):
    root: Path | None = None
    """Where the objects live; set by the test (the store refuses to work without it)."""

    @classmethod
    def scheme(cls) -> str:
        return SCHEME

    @classmethod
    def local(cls, url: str) -> str:
        if cls.root is None or not url.startswith(PREFIX):
            raise ValueError(f"not a {SCHEME} URL, or no root set: {url}")
        return str(cls.root / url.removeprefix(PREFIX))

    @classmethod
    def url(cls, local: str) -> str:
        return PREFIX + Path(local).relative_to(cls.root).as_posix()

    def join(self, basepath: str, *paths: str) -> str:
        return "/".join([basepath.rstrip("/"), *(path.strip("/") for path in paths)])

    def split(self, path: str) -> tuple[str, str]:
        head, _, tail = path.rpartition("/")
        return head, tail

    def has_dirs(self) -> bool:
        return False

    def mkdirs(self, path: str) -> None:
        """An object store has no folders."""

    def _list(self, dir_or_prefix: str) -> Iterator[FileMetadata]:
        for folder, _, files in os.walk(self.root):
            for name in files:
                url = self.url(os.path.join(folder, name))
                if url.startswith(dir_or_prefix):
                    yield FileMetadata(url, os.path.getsize(self.local(url)), os.path.getmtime(self.local(url)))

    def create(self, path: str, mime_type: str = "application/octet-stream",
               compression_type: str = CompressionTypes.AUTO) -> BinaryIO:
        return super().create(self.local(path), mime_type, compression_type)

    def open(self, path: str, mime_type: str = "application/octet-stream",
             compression_type: str = CompressionTypes.AUTO) -> BinaryIO:
        return super().open(self.local(path), mime_type, compression_type)

    def copy(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        for source, destination in zip(source_file_names, destination_file_names, strict=True):
            os.makedirs(os.path.dirname(self.local(destination)), exist_ok=True)
            shutil.copy2(self.local(source), self.local(destination))

    def rename(self, source_file_names: list[str], destination_file_names: list[str]) -> None:
        """Copy, then delete, object by object (GCS and S3 have no rename)."""
        self.copy(source_file_names, destination_file_names)
        self.delete(source_file_names)

    def exists(self, path: str) -> bool:
        return os.path.isfile(self.local(path))

    def size(self, path: str) -> int:
        return os.path.getsize(self.local(path))

    def last_updated(self, path: str) -> float:
        return os.path.getmtime(self.local(path))

    def checksum(self, path: str) -> str:
        return str(self.size(path))

    def metadata(self, path: str) -> FileMetadata:
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths: list[str]) -> None:
        for path in paths:
            os.remove(self.local(path))


def objects(prefix: str = PREFIX) -> list[str]:
    """Every object's URL under ``prefix``, sorted."""
    return sorted(metadata.path for metadata in FakeObjectStore(None)._list(prefix))

