"""Benchmark: page N users through GraphClient (msgraph-sdk + MSAL) vs plain httpx, same emulator.

    python -m tests.graph.bench_graph_paging --users 100000 [--prerender]

Not collected by pytest (no ``test_`` prefix); prints one line per measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

from licsync.config import TenantConfig
from licsync.graph.auth import TokenSource
from licsync.graph.parse import USER_SELECT, parse_delta_page
from licsync.graph.tls import client_ssl_context


async def with_graph_client(config: TenantConfig) -> tuple[int, int, float]:
    from licsync.graph.client import GraphClient

    client = GraphClient(config)
    start = time.perf_counter()
    users = pages = 0
    try:
        async for page in client.delta_pages(None):
            users += len(page.rows)
            pages += 1
    finally:
        await client.aclose()
    return users, pages, time.perf_counter() - start


async def with_httpx(config: TenantConfig) -> tuple[int, int, float]:
    source = TokenSource(config)
    headers = {"Authorization": f"Bearer {source.get_token()}"}
    start = time.perf_counter()
    users = pages = 0
    url: str | None = f"{config.graph_url}/users/delta?$select={USER_SELECT}"
    async with httpx.AsyncClient(verify=client_ssl_context(config.ca_bundle), trust_env=False) as http:
        while url:
            resp = await http.get(url, headers=headers)
            resp.raise_for_status()
            page = parse_delta_page(resp.content)
            users += len(page.rows)
            pages += 1
            url = page.next_link
    source.close()
    return users, pages, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--prerender", action="store_true")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    # The emulator runs in its own process so that it does not share the GIL with the client.
    command = [sys.executable, "-m", "licsync.graph.emulator", "--users", str(args.users)]
    with tempfile.TemporaryDirectory() as tmp:
        command += ["--workdir", tmp] + (["--prerender"] if args.prerender else [])
        start = time.perf_counter()
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
            try:
                assert proc.stdout is not None
                info = orjson.loads(proc.stdout.readline())
                print(f"emulator ready with {args.users} users: {time.perf_counter() - start:.2f} s")
                secret = Path(tmp) / "secret"
                secret.write_text(info["client_secret"])
                config = TenantConfig(
                    name="bench",
                    tenant_id=info["tenant_id"],
                    client_id=info["client_id"],
                    client_secret=f"file:{secret}",
                    authority=info["authority"],
                    graph_url=info["graph_url"],
                    ca_bundle=info["ca_bundle"],
                )
                asyncio.run(with_httpx(config))  # warm-up: TLS, imports, token
                for name, run in (("httpx", with_httpx), ("GraphClient", with_graph_client)):
                    best = min((asyncio.run(run(config)) for _ in range(args.runs)), key=lambda r: r[2])
                    users, pages, seconds = best
                    print(
                        f"{name:12} {users} users, {pages} pages: best of {args.runs} {seconds:.2f} s "
                        f"({users / seconds:,.0f} users/s)"
                    )
            finally:
                proc.terminate()


if __name__ == "__main__":
    main()
