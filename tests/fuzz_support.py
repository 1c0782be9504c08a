"""Schemathesis against a real server, for tests/test_api_fuzz.py (the hub) and tests/test_api_fuzz_hq.py (HQ):
its own CLI (`st run`, as docs/api-fuzz.md runs it by hand) in a subprocess, with a fixed budget."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from hq_sync.wire import b64

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# The coverage phase only: every operation gets the boundary values of each parameter and body field, one past
# them (a 30-digit integer, a string past its maxLength), missing and wrongly typed fields, unexpected methods:
# derandomized, the same cases every run (a few thousand requests per server). The hand run adds random examples.
# One worker: with two, Python 3.11's ast.parse (Hypothesis describing a filter's lambda) failed now and then in
# schemathesis's threads ("AST constructor recursion depth mismatch"), an error in no server.
FUZZ = ["--checks", CHECKS, "--phases", "coverage", "--generation-deterministic", "--request-timeout", "15",
        "--workers", "1", "--no-color", "--output-truncate", "false", "--warnings", "off"]


def login(url: str, path: str, body: dict[str, str]) -> str:
    r = httpx.post(url + path, json=body, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def fuzz(url: str, token: str, *exclude: str, cwd: Path, include: str | None = None,
         store: tuple[str, bytes] | None = None) -> subprocess.CompletedProcess[str]:
    """`st run` against `url`'s OpenAPI document as the holder of `token`, leaving out the paths matching the
    regular expressions `exclude` (only those matching `include`, if given). With `store` (id, private key)
    the requests to HQ's sync endpoints are signed as that paired store's (tests/fuzz_signing.py)."""
    args = [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/schema/openapi.json", *FUZZ,
            "--header", f"Authorization: Bearer {token}"]
    for pattern in exclude:
        args += ["--exclude-path-regex", pattern]
    if include is not None:
        args += ["--include-path-regex", include]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHEMATHESIS_", "BACKROOM_FUZZ_"))}
    if store is not None:
        tests = Path(__file__).resolve().parent
        env.update(SCHEMATHESIS_HOOKS="fuzz_signing", BACKROOM_FUZZ_STORE=store[0], BACKROOM_FUZZ_KEY=b64(store[1]),
                   PYTHONPATH=os.pathsep.join([str(tests), str(tests.parent), env.get("PYTHONPATH", "")]))
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, env=env)


def no_tracebacks(log: Path) -> None:
    """An error the server caught and answered as a 4xx is fine; one it logged as unhandled is a defect."""
    text = log.read_text("utf-8", "replace") if log.exists() else ""
    assert "Traceback" not in text, text[max(0, text.index("Traceback") - 300):][:4000]


def passed(done: subprocess.CompletedProcess[str], operations: int) -> None:
    """The run found nothing, and it did reach (at least) `operations` operations of the document."""
    assert done.returncode == 0, done.stdout[-20000:] + done.stderr[-3000:]
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert tested is not None and int(tested.group(1)) >= operations, done.stdout[-3000:]
