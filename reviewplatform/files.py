"""Files written inside a transaction: rows roll back with it, files on disk would stay."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.core.files.storage import default_storage


@contextlib.contextmanager
def files_deleted_on_error() -> Iterator[list[str]]:
    """Yield a list to append each stored file's name to; should the block raise, those files
    are deleted. Django has no hook on rollback: wrap the whole transaction, its commit
    included."""
    written: list[str] = []
    try:
        yield written
    except BaseException:
        for name in written:
            default_storage.delete(name)
        raise
