# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform Vault modules and lookup and may change in
# any release, even a bugfix release.

"""KV version 2 secrets over a :class:`~._vault_client.Connection`.

:class:`KV2` checks first that the mount is a KV version 2 engine (a KV v2 write to a version 1
mount would quietly create a key named ``data/<path>``), then reads, writes with check-and-set
and deletes. :func:`key_changes` and :func:`key_diff` describe a change by key names only.
Managed-node code: Python 3.9 or later (tests/config.yml).
"""

from __future__ import annotations

import re

from ansible_collections.msa.platform.plugins.module_utils._vault_client import VaultError

HIDDEN = "(value hidden)"
HIDDEN_CHANGED = "(new value hidden)"
PATH_RE = re.compile(r"^[^\s/][^\s]*$")


def clean_path(name, value):
    """``value`` without surrounding slashes; VaultError for an empty path or one with spaces."""
    cleaned = (value or "").strip("/")
    if not cleaned or not PATH_RE.match(cleaned) or "//" in cleaned:
        raise VaultError("%s must be a path without spaces or empty segments, got %r" % (name, value))
    return cleaned


class KV2:
    """One KV version 2 mount. Raises :class:`VaultError` for a missing or non-KV-v2 mount."""

    def __init__(self, conn, mount, path):
        self.conn = conn
        self.mount = clean_path("mount", mount)
        self.path = clean_path("path", path)
        info = conn.mount_info(self.path, self.mount)
        kind = info.get("type")
        version = str((info.get("options") or {}).get("version") or "1")
        if kind != "kv":
            raise VaultError(
                "the mount %s/ is a %s secrets engine, not KV; use a KV version 2 mount" % (self.mount, kind),
                reason="wrong_engine",
            )
        if version != "2":
            raise VaultError(
                "the mount %s/ is KV version %s; these modules work on KV version 2 only (upgrade it with "
                "msa.platform.vault_mount options version=2, or use community.hashi_vault for KV version 1)"
                % (self.mount, version),
                reason="kv_version",
            )

    @property
    def where(self):
        return "%s/%s" % (self.mount, self.path)

    def read(self, version=None):
        """``(data, metadata)`` of the latest (or given) version.

        ``data`` is None when the secret never existed or that version was deleted or destroyed;
        ``metadata`` then still says which version is current (``version``, 0 for none).
        """
        query = "?version=%d" % version if version else ""
        answer = self.conn.get("%s/data/%s%s" % (self.mount, self.path, query), "read %s" % self.where)
        if answer is None:
            meta = self.metadata()
            current = (meta or {}).get("current_version") or 0
            return None, {"version": version or current, "exists": meta is not None}
        body = answer.get("data") or {}
        meta = dict(body.get("metadata") or {})
        meta["exists"] = True
        return body.get("data"), meta

    def metadata(self):
        answer = self.conn.get("%s/metadata/%s" % (self.mount, self.path), "read the metadata of %s" % self.where)
        return None if answer is None else (answer.get("data") or {})

    def current_version(self):
        return (self.metadata() or {}).get("current_version") or 0

    def write(self, data, cas=None):
        """Write a new version; returns its number. A check-and-set mismatch is a clear VaultError."""
        body = {"data": data}
        if cas is not None:
            body["options"] = {"cas": cas}
        try:
            answer = self.conn.write("post", "%s/data/%s" % (self.mount, self.path), "write %s" % self.where, body)
        except VaultError as exc:
            if "check-and-set" in exc.msg:
                raise VaultError(
                    "check-and-set failed for %s: the secret is at version %s, not %s; read it again and retry"
                    % (self.where, self.current_version(), cas),
                    reason="cas",
                ) from None
            raise
        return ((answer or {}).get("data") or {}).get("version")

    def delete_latest(self):
        self.conn.write("delete", "%s/data/%s" % (self.mount, self.path), "delete %s" % self.where)

    def purge(self):
        self.conn.write("delete", "%s/metadata/%s" % (self.mount, self.path), "delete every version of %s" % self.where)


def key_changes(before, after):
    """``{"added": [...], "changed": [...], "removed": [...]}``: key names only."""
    before = before or {}
    after = after or {}
    return {
        "added": sorted(k for k in after if k not in before),
        "changed": sorted(k for k in after if k in before and before[k] != after[k]),
        "removed": sorted(k for k in before if k not in after),
    }


def key_diff(before, after, where):
    """A diff naming keys, with every value replaced by a marker (changed values get another one)."""
    before = before or {}
    after = after or {}
    return {
        "before_header": where,
        "after_header": where,
        "before": {k: HIDDEN for k in sorted(before)},
        "after": {k: HIDDEN if k in before and before[k] == after[k] else HIDDEN_CHANGED for k in sorted(after)},
    }
