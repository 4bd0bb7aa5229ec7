"""``python -m examples.gateway.emulator [--host 127.0.0.1] [--port 0]``: serve the emulator, print its URL."""

from __future__ import annotations

import argparse
import json

import uvicorn

from .app import create_emulator_app
from .server import bind_loopback


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.gateway.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = a free port chosen by the kernel")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    sock = bind_loopback(args.port, args.host)
    url = f"http://{args.host}:{sock.getsockname()[1]}"
    print(
        json.dumps(
            {
                "url": url,
                "openai_base_url": url + "/v1",
                "anthropic_base_url": url,
                "bedrock_base_url": url,  # SigV4 with the test keys of emulator/_bedrock.py
                "gemini_base_url": url,
                "control": url + "/_control",
            }
        ),
        flush=True,
    )
    config = uvicorn.Config(
        create_emulator_app(), log_level=args.log_level, access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
