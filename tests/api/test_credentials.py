"""Malformed credentials are a 401 with the JSON error body and the challenge, never a 500 and never a
logged traceback: anyone can send them without an account, as often as they like."""

from __future__ import annotations

import base64
import logging

import pytest
import redis

from tests.api.conftest import PASSWORDS, TOKEN, TestClient
from tests.api.helpers import basic, expect_json, expect_unauthorized, make_token, running


def b64(raw: bytes) -> bytes:
    return base64.b64encode(raw)


MALFORMED = {
    "non-ascii bytes": b"Basic \xff\xfe\xfd\xfc",
    "utf-8 bytes": "Basic jd\u00f6e:pw".encode(),
    "not base64": b"Basic !!!not-base64!!!",
    "bad padding": b"Basic " + b64(b"jdoe:pw")[:-1],
    "no colon": b"Basic " + b64(b"jdoe"),
    "not utf-8": b"Basic " + b64(b"\xff\xfe:pw"),
    "empty user": b"Basic " + b64(b":pw"),
    "newline in user": b"Basic " + b64(b"jdoe\nFAKE LOG LINE:pw"),
    "overlong user": b"Basic " + b64(b"u" * 300 + b":pw"),
    "overlong password": b"Basic " + b64(b"jdoe:" + b"p" * 2000),
    "other scheme": b"Bearer abc",
    "empty": b"",
}


@pytest.mark.parametrize("header", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_basic_credentials_are_401_json(auth_client: TestClient, header: bytes,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        for method in ("GET", "POST"):
            answer = auth_client.request(method, "/api/v1/token", headers={"Authorization": header})
            expect_unauthorized(answer)
            assert answer.json()["code"] == "unauthorized"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info], caplog.text


def test_good_credentials_still_work(auth_client: TestClient) -> None:
    expect_json(auth_client.post("/api/v1/token", headers=basic("jdoe", PASSWORDS["jdoe"])), True, 200)


def test_non_ascii_token_header_is_401(auth_client: TestClient, r: redis.Redis) -> None:
    make_token(r, TOKEN, "jdoe")
    running(r, "pool1", "vm1", token=TOKEN)
    odd = {"X-AUTH-TOKEN": b"\xff" + TOKEN.encode()[1:]}
    expect_unauthorized(auth_client.put("/api/v1/vm/vm1", json={"lifetime": 4}, headers=odd))
    expect_unauthorized(auth_client.delete("/api/v1/vm/vm1", headers=odd))
    expect_unauthorized(auth_client.post("/api/v1/vm/vm1/snapshot", headers=odd))
