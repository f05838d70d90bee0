# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform modules and may change in any release.

"""Replace a file so that readers only ever see the old or the new content."""

from __future__ import annotations

import os
import tempfile


def write_atomic(path, content, mode, sync_dir=False, owner=None):
    """Write ``content`` to a temp file beside ``path``, fsync it, set ``mode``, rename it over ``path``.

    With ``sync_dir`` the directory is fsynced too, so the rename itself survives a crash.
    ``owner`` is a ``(uid, gid)`` pair given to the new file before the rename (to keep the
    owner of the file it replaces).
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % os.path.basename(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content)
            handle.flush()
            if owner is not None:
                current = os.fstat(handle.fileno())
                if (current.st_uid, current.st_gid) != tuple(owner):
                    os.fchown(handle.fileno(), owner[0], owner[1])
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if sync_dir:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path
