"""The per-service lock: contention names the holder, a short holder is waited for."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_common import LockTimeoutError
from ansible_collections.msa.platform.plugins.module_utils._bluegreen_lock import ServiceLock


def _hold_lock(state_dir, ready, release):
    with ServiceLock(state_dir, "orders", timeout=5):
        ready.set()
        release.wait(10)


def test_lock_contention_times_out_naming_the_holder(tmp_path):
    ready, release = multiprocessing.Event(), multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        start = time.monotonic()
        with pytest.raises(LockTimeoutError) as info:
            ServiceLock(str(tmp_path), "orders", timeout=0.5, poll=0.05).acquire()
        assert 0.4 < time.monotonic() - start < 3
        assert "pid %d" % holder.pid in info.value.msg
        assert info.value.details["holder_pid"] == str(holder.pid)
    finally:
        release.set()
        holder.join(10)
    # Once the holder is gone the lock is free again.
    with ServiceLock(str(tmp_path), "orders", timeout=1) as lock, open(lock.path) as handle:
        assert handle.read().strip() == str(os.getpid())


def test_lock_waits_for_a_short_holder(tmp_path):
    first = ServiceLock(str(tmp_path), "orders", timeout=1).acquire()
    timer = threading.Timer(0.3, first.release)
    timer.start()
    second = ServiceLock(str(tmp_path), "orders", timeout=5, poll=0.05).acquire()
    second.release()
    timer.join()
