"""File access in a capsule, under the module path the official SDK uses."""

from __future__ import annotations

from ._async.files import AsyncDownloadStream, AsyncFiles
from ._models_data import FileEntry, ListDirResponse, MakeDirResponse
from ._sync.files import DownloadStream, Files

__all__ = [
    "AsyncDownloadStream",
    "AsyncFiles",
    "DownloadStream",
    "FileEntry",
    "Files",
    "ListDirResponse",
    "MakeDirResponse",
]
