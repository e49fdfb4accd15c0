"""A tiny check runner shared by the client suites: each check is a named function; a failure
(an assertion or any exception the client raises) is reported with its reason and counted, the
run goes on, and the last line is `N passed, N failed` (the Rust test reads it)."""

import os
import sys
import traceback


class Checks:
    def __init__(self, suite: str):
        self.suite = suite
        self.passed = 0
        self.failed = 0

    def run(self, name, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            self.failed += 1
            print(f"FAIL {self.suite}: {name}: {type(e).__name__}: {e}")
            if os.environ.get("CHECKS_TRACEBACK"):
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"ok   {self.suite}: {name}")
        sys.stdout.flush()

    async def run_async(self, name, coro_fn, *args):
        try:
            await coro_fn(*args)
        except Exception as e:  # noqa: BLE001
            self.failed += 1
            print(f"FAIL {self.suite}: {name}: {type(e).__name__}: {e}")
            if os.environ.get("CHECKS_TRACEBACK"):
                traceback.print_exc()
        else:
            self.passed += 1
            print(f"ok   {self.suite}: {name}")
        sys.stdout.flush()

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 1 if self.failed else 0


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set: run this suite through `cargo test -p berth --test it clients`")
    return value


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{os.urandom(3).hex()}"
