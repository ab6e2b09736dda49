"""Where a store lives: a local folder, or an S3 location `s3://bucket/prefix`.

A `Location` is the few file operations the store needs (read, write, list, move, remove a
file), on the local file system or on S3 through pyarrow's file system, and the options
polars and deltalake need to read the same place. Credentials come the usual AWS way
(environment variables, profiles, instance roles); `AWS_ENDPOINT_URL` names an
S3-compatible server and `AWS_ALLOW_HTTP=true` lets it be plain http. Errors of the remote
store become one line (`describe`): a missing bucket, a denied access, an unreachable server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from bounce_analyzer.errors import StoreError

__all__ = ["Location", "describe", "is_url", "locate"]

#: The URL schemes a store may have (besides a local path).
SCHEMES = ("s3",)

#: The environment variables passed on to polars and deltalake (object_store's names).
_AWS_OPTIONS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_PROFILE",
    "AWS_S3_LOCKING_PROVIDER",
    "AWS_S3_ALLOW_UNSAFE_RENAME",
)


def is_url(text: str | Path) -> bool:
    """Whether `text` names a place by URL (`scheme://...`) rather than a local path."""
    return isinstance(text, str) and "://" in text


@dataclass(frozen=True)
class Location:
    """A store's place: its URI (an absolute local path, or `s3://bucket/prefix`), its root as
    a path of `filesystem` (None: the local file system, through `os`), and the storage
    options polars and deltalake take for it."""

    uri: str
    root: Path
    filesystem: pafs.FileSystem | None = None
    storage_options: dict[str, str] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return self.filesystem is None

    def path(self, *parts: str) -> Path:
        """A path under the root (a key path on S3)."""
        return self.root.joinpath(*parts)

    def uri_of(self, path: Path | str) -> str:
        """The URI polars and deltalake read `path` (of this location) by."""
        return str(path) if self.local else f"s3://{path}"

    def options(self) -> dict[str, str] | None:
        """The storage options to pass, None for a local store."""
        return None if self.local else dict(self.storage_options)

    def parquet(self, path: Path) -> pq.ParquetFile:
        if self.filesystem is None:
            return pq.ParquetFile(str(path))
        return pq.ParquetFile(self.filesystem.open_input_file(str(path)))

    def read_bytes(self, path: Path) -> bytes:
        """The content of `path`; FileNotFoundError when there is none."""
        if self.filesystem is None:
            return path.read_bytes()
        try:
            with self.filesystem.open_input_stream(str(path)) as stream:
                return bytes(stream.read())
        except FileNotFoundError:
            raise
        except OSError as error:
            if "NO_SUCH_KEY" in str(error) or "does not exist" in str(error).lower():
                raise FileNotFoundError(str(path)) from None
            raise

    def write_bytes(self, path: Path, data: bytes) -> None:
        """Write `path` whole: locally through a synced temporary file renamed into place;
        on S3 one put (atomic there)."""
        if self.filesystem is not None:
            with self.filesystem.open_output_stream(str(path)) as stream:
                stream.write(data)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()

    def exists(self, path: Path) -> bool:
        if self.filesystem is None:
            return path.exists()
        found: bool = self.filesystem.get_file_info(str(path)).type != pafs.FileType.NotFound
        return found

    def names(self, folder: Path) -> list[str]:
        """The names of the files directly in `folder` ([] when there is none)."""
        if self.filesystem is None:
            try:
                return sorted(child.name for child in folder.iterdir() if child.is_file())
            except (FileNotFoundError, NotADirectoryError):
                return []
        selector = pafs.FileSelector(str(folder), allow_not_found=True)
        return sorted(
            Path(info.path).name
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

    def unlink(self, path: Path) -> None:
        """Remove the file `path` if it is there."""
        if self.filesystem is None:
            path.unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.filesystem.delete_file(str(path))

    def replace(self, source: Path, target: Path) -> None:
        if self.filesystem is None:
            os.replace(source, target)
        else:
            self.filesystem.move(str(source), str(target))

    def size_and_time(self, path: Path) -> tuple[int, int]:
        """The size of the file `path` in bytes and its modification time in milliseconds."""
        if self.filesystem is None:
            status = path.stat()
            return status.st_size, int(status.st_mtime * 1000)
        info = self.filesystem.get_file_info(str(path))
        mtime = info.mtime
        millis = int(mtime.timestamp() * 1000) if mtime is not None else 0
        return int(info.size or 0), millis

    def mkdir(self, path: Path) -> None:
        if self.filesystem is None:
            path.mkdir(parents=True, exist_ok=True)


def _aws_options() -> dict[str, str]:
    return {name: os.environ[name] for name in _AWS_OPTIONS if os.environ.get(name)}


def _s3_filesystem(options: dict[str, str]) -> pafs.S3FileSystem:
    endpoint = options.get("AWS_ENDPOINT_URL")
    kwargs: dict[str, object] = {}
    if endpoint:
        scheme, _, rest = endpoint.partition("://")
        kwargs["endpoint_override"] = rest.rstrip("/") if rest else endpoint
        kwargs["scheme"] = scheme if rest else "https"
    region = options.get("AWS_REGION") or options.get("AWS_DEFAULT_REGION")
    if region:
        kwargs["region"] = region
    return pafs.S3FileSystem(**kwargs)


def locate(where: str | Path) -> Location:
    """The location `where` names: a local path (made absolute) or `s3://bucket/prefix`.

    Raises `StoreError` for a URL of another scheme or without a bucket.
    """
    if not is_url(where):
        root = Path(where).expanduser().absolute()
        return Location(uri=str(root), root=root)
    text = str(where)
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in SCHEMES:
        raise StoreError(
            f"{text}: unsupported store URL (a store is a local folder or s3://bucket/prefix)"
        )
    bucket, _, prefix = rest.strip("/").partition("/")
    if not bucket or any(c in bucket for c in " \\?#") or "//" in prefix:
        raise StoreError(f"{text}: not a valid S3 location (s3://bucket/prefix)")
    key = f"{bucket}/{prefix.strip('/')}".rstrip("/")
    options = _aws_options()
    try:
        filesystem = _s3_filesystem(options)
    except (OSError, ValueError) as error:
        raise StoreError(f"{text}: cannot reach the store ({describe(error)})") from None
    return Location(
        uri=f"s3://{key}", root=Path(key), filesystem=filesystem, storage_options=options
    )


def describe(error: BaseException) -> str:
    """An error of the local or remote store in a few words, on one line."""
    text = str(error)
    upper = text.upper()
    if "NO_SUCH_BUCKET" in upper or "NOSUCHBUCKET" in upper:
        return "the bucket does not exist"
    if "ACCESS_DENIED" in upper or "ACCESSDENIED" in upper or " 403" in text:
        return "access denied"
    if "INVALIDACCESSKEYID" in upper or "SIGNATUREDOESNOTMATCH" in upper:
        return "the credentials were refused"
    if isinstance(error, OSError) and error.strerror:
        return " ".join(error.strerror.split())
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    first = "".join(c for c in first if c.isprintable())
    return first if len(first) <= 160 else first[:157] + "..."
