"""Shared bits of the Python driver tests: connection settings from the environment and a
PASS/FAIL check runner. See scripts/test-drivers."""

import os
import sys
import time
import traceback

HOST = os.environ.get("DRIVER_HOST", "127.0.0.1")
PORT = int(os.environ.get("DRIVER_PORT", "6432"))
USER = os.environ.get("DRIVER_USER", "app")
PASSWORD = os.environ.get("DRIVER_PASSWORD", "secret")
DB = os.environ.get("DRIVER_DB", "app")
TARGET = os.environ.get("DRIVER_TARGET", "unknown")  # direct, transaction or session
# a suffix that keeps table names of concurrent runs apart
TAG = f"{TARGET[:3]}_{os.getpid()}"


class Checks:
    def __init__(self, driver):
        self.driver = driver
        self.passed = 0
        self.failed = 0
        self.hung = False

    def record(self, name, ok, detail="", secs=0.0):
        if ok:
            self.passed += 1
            print(f"PASS {self.driver} {TARGET}: {name} ({secs:.2f}s)", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {self.driver} {TARGET}: {name}: {detail}", flush=True)

    def run(self, name, fn, timeout=60):
        """Runs fn() in a thread; an exception, an AssertionError or a hang longer than timeout
        seconds is a failure."""
        import threading

        t = time.monotonic()
        err = []

        def body():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001
                err.append(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")

        th = threading.Thread(target=body, daemon=True)
        th.start()
        th.join(timeout)
        if th.is_alive():
            self.hung = True
            self.record(name, False, f"no answer after {timeout}s (hung)")
        elif err:
            self.record(name, False, err[0])
        else:
            self.record(name, True, secs=time.monotonic() - t)

    async def arun(self, name, coro_fn, timeout=60):
        import asyncio

        t = time.monotonic()
        try:
            await asyncio.wait_for(coro_fn(), timeout)
        except BaseException as e:  # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            self.record(name, False, f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        else:
            self.record(name, True, secs=time.monotonic() - t)

    def finish(self):
        print(f"{self.driver} {TARGET}: {self.passed} passed, {self.failed} failed", flush=True)
        code = 1 if self.failed or not self.passed else 0
        if self.hung:
            os._exit(code)  # a hung check's thread would keep the interpreter alive
        sys.exit(code)


def eq(actual, expected, what=""):
    if actual != expected:
        raise AssertionError(f"{what}: expected {expected!r}, got {actual!r}")
