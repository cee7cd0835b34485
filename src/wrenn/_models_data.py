"""Wire models of a capsule's agent (the data plane): commands, processes, files.

With their reused decoders. The bases and the rules they share are in ``_models_base``.
"""

from __future__ import annotations

import msgspec

from ._models_base import _Model, _OpenEnum, _Request

__all__ = [
    "BackgroundExecResponse",
    "Encoding",
    "ExecRequest",
    "ExecResponse",
    "FileEntry",
    "FileType",
    "ListDirRequest",
    "ListDirResponse",
    "MakeDirRequest",
    "MakeDirResponse",
    "ProcessEntry",
    "ProcessListResponse",
    "ReadFileRequest",
    "RemoveRequest",
    "Type1",
]


class FileType(_OpenEnum):
    """Kind of a file-system entry."""

    file = "file"
    directory = "directory"
    symlink = "symlink"
    unknown = "unknown"


class Encoding(_OpenEnum):
    """Encoding of exec output: text, or base64 when either stream was not valid UTF-8."""

    utf_8 = "utf-8"
    base64 = "base64"


# The official SDK's generated name for the same enum.
Type1 = FileType


class ExecResponse(_Model, kw_only=True, frozen=True, gc=False):
    sandbox_id: str | None = None
    cmd: str | None = None
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    duration_ms: int | None = None
    encoding: Encoding | None = None


class BackgroundExecResponse(_Model, kw_only=True, frozen=True, gc=False):
    sandbox_id: str | None = None
    cmd: str | None = None
    pid: int
    tag: str | None = None


class ProcessEntry(_Model, kw_only=True, frozen=True, gc=False):
    pid: int
    tag: str | None = None
    cmd: str | None = None
    args: list[str] | None = None


class ProcessListResponse(_Model, kw_only=True, frozen=True, gc=False):
    processes: list[ProcessEntry] = msgspec.field(default_factory=list)


class FileEntry(_Model, kw_only=True, frozen=True, gc=False):
    name: str
    path: str | None = None
    type: FileType | None = None
    size: int | None = None
    mode: int | None = None
    permissions: str | None = None
    owner: str | None = None
    group: str | None = None
    modified_at: int | None = None
    symlink_target: str | None = None


class ListDirResponse(_Model, kw_only=True, frozen=True, gc=False):
    entries: list[FileEntry] = msgspec.field(default_factory=list)


class MakeDirResponse(_Model, kw_only=True, frozen=True, gc=False):
    entry: FileEntry


# --- request bodies (unset fields are not sent) -------------------------------------


class ExecRequest(_Request, kw_only=True):
    cmd: str
    args: list[str] | None = None
    timeout_sec: int | None = None
    background: bool = False
    tag: str | None = None
    envs: dict[str, str] | None = None
    cwd: str | None = None


class ReadFileRequest(_Request, kw_only=True):
    path: str


class ListDirRequest(_Request, kw_only=True):
    path: str
    depth: int | None = None


class MakeDirRequest(_Request, kw_only=True):
    path: str


class RemoveRequest(_Request, kw_only=True):
    path: str


# Decoders are built once and reused: building one compiles a type-specific parser.
exec_decoder = msgspec.json.Decoder(ExecResponse)
background_exec_decoder = msgspec.json.Decoder(BackgroundExecResponse)
process_list_decoder = msgspec.json.Decoder(ProcessListResponse)
list_dir_decoder = msgspec.json.Decoder(ListDirResponse)
make_dir_decoder = msgspec.json.Decoder(MakeDirResponse)
