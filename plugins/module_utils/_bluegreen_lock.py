# Copyright: msa.platform contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# FOR INTERNAL COLLECTION USE ONLY
# The interfaces in this file serve the msa.platform blue/green modules and may change in any
# release, even a bugfix release. The contract with the roles is docs/design/bluegreen.md.

"""The per-service lock ``<state_dir>/<svc>.lock``: ``fcntl.flock`` with a bounded wait."""

from __future__ import annotations

import errno
import fcntl
import os
import time

from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import (
    STATE_MODE,
    LockTimeoutError,
    validate_service,
)


class ServiceLock:
    """Exclusive ``flock`` on ``<state_dir>/<svc>.lock``, waiting at most ``timeout`` seconds.

    The holder writes its pid into the file so a waiter can name it. The file is never removed
    (removing a lock file under flock invites two holders).
    """

    def __init__(self, state_dir, service, *, timeout=30, poll=0.2, sleep=time.sleep, clock=time.monotonic):
        self.path = os.path.join(state_dir, "%s.lock" % validate_service(service))
        self.service = service
        self.state_dir = state_dir
        self.timeout = timeout
        self.poll = poll
        self.sleep = sleep
        self.clock = clock
        self.fd = None

    def holder(self):
        try:
            with open(self.path) as handle:
                text = handle.read().strip()
        except OSError:
            return None
        return text or None

    def acquire(self):
        os.makedirs(self.state_dir, mode=0o750, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, STATE_MODE)
        deadline = self.clock() + max(0, self.timeout)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    os.close(fd)
                    raise
                if self.clock() >= deadline:
                    os.close(fd)
                    holder = self.holder()
                    raise LockTimeoutError(
                        "another flip of %s holds %s (%s); gave up after %ss. Wait for it to finish, "
                        "or if that process is gone, run again (flock locks die with their process)."
                        % (self.service, self.path, "pid %s" % holder if holder else "holder unknown", self.timeout),
                        lock_file=self.path,
                        holder_pid=holder,
                    ) from exc
                self.sleep(self.poll)
        os.ftruncate(fd, 0)
        os.write(fd, ("%d\n" % os.getpid()).encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        return False
