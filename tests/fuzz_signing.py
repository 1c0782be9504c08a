"""A schemathesis hook (`SCHEMATHESIS_HOOKS=fuzz_signing`, tests/fuzz_support.py) that signs every request to
HQ's `/hq/v1/sync/...` as a paired store would (hq_sync.wire `sign_request`), so the fuzzer's bad input gets
past the signature check and reaches the code that reads it. The store and its private key come from
BACKROOM_FUZZ_STORE and BACKROOM_FUZZ_KEY (urlsafe base64)."""

from __future__ import annotations

import os
import time
from typing import Any

import requests
import schemathesis

from hq_sync.wire import sign_request, unb64

_UNSIGNED = ("/hq/v1/sync/pair",)


class StoreSignature(requests.auth.AuthBase):
    """requests' auth hook: it sees the prepared request, so it signs exactly the bytes that are sent."""

    def __init__(self, store_id: str, key: bytes) -> None:
        self.store_id, self.key = store_id, key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode("utf-8")
        request.headers.update(sign_request(self.key, self.store_id, request.method or "GET", request.path_url,
                                            int(time.time()), body))
        return request


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    path = case.operation.path
    if path.startswith("/hq/v1/sync/") and path not in _UNSIGNED and os.environ.get("BACKROOM_FUZZ_KEY"):
        kwargs["auth"] = StoreSignature(os.environ["BACKROOM_FUZZ_STORE"], unb64(os.environ["BACKROOM_FUZZ_KEY"]))
