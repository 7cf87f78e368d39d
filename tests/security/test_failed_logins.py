"""Issue 18 item 2: the failed-login limiter never refuses a valid credential for others' failures, and
believes forwarded addresses only from ``[api] trusted_proxies``. A real ``licsync serve`` (uvicorn's
own proxy-header handling used to believe ``X-Forwarded-For`` from loopback).
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.security.server import serve

ACCESS = "/api/v1/tenants/contoso/access/u-1"
JUNK = {"Authorization": "Bearer lsy_0123456789abcdef_" + "x" * 43}


def test_junk_from_one_address_does_not_lock_out_a_valid_token(tmp_path: Path) -> None:
    with serve(tmp_path) as srv, httpx.Client(base_url=srv.base) as c:
        for _ in range(25):
            c.get(ACCESS, headers=JUNK)
        assert c.get(ACCESS, headers=JUNK).status_code == 429  # the guesser is braked …
        r = c.get(ACCESS, headers={"Authorization": f"Bearer {srv.token}"})
        assert r.status_code == 200, r.text  # … the platform behind the same address is not


def test_forwarded_headers_are_ignored_unless_the_peer_is_a_trusted_proxy(tmp_path: Path) -> None:
    with serve(tmp_path) as srv, httpx.Client(base_url=srv.base) as c:
        codes = [c.get(ACCESS, headers=JUNK | {"X-Forwarded-For": f"198.51.100.{i}",
                                               "Forwarded": f"for=203.0.113.{i}"}).status_code
                 for i in range(22)]
        assert codes[:20] == [401] * 20 and codes[20:] == [429, 429], codes  # rotating the header evades nothing
        assert "Secure" not in c.get("/ui/login", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]


def test_a_trusted_proxys_forwarded_address_is_the_client(tmp_path: Path) -> None:
    with serve(tmp_path, {"trusted_proxies": ["127.0.0.0/8"], "failed_auth_limit": 3}) as srv, \
            httpx.Client(base_url=srv.base) as c:
        for _ in range(3):
            assert c.get(ACCESS, headers=JUNK | {"X-Forwarded-For": "198.51.100.7"}).status_code == 401
        assert c.get(ACCESS, headers=JUNK | {"X-Forwarded-For": "198.51.100.7"}).status_code == 429
        # a client that prepends a forged address still counts as the address the proxy saw
        assert c.get(ACCESS, headers=JUNK | {"X-Forwarded-For": "10.9.9.9, 198.51.100.7"}).status_code == 429
        assert c.get(ACCESS, headers=JUNK | {"X-Forwarded-For": "198.51.100.8"}).status_code == 401  # another client
        assert c.get(ACCESS, headers=JUNK | {"Forwarded": 'for="198.51.100.7"'}).status_code == 429  # RFC 7239
        # the proxy's X-Forwarded-Proto is believed too: the dashboard's cookies are Secure behind TLS
        assert "Secure" in c.get("/ui/login", headers={"X-Forwarded-Proto": "https"}).headers["set-cookie"]
