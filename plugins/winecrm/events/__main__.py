"""``python -m winecrm.events serve`` (``make webhooks``): the public receiver on
``CRM_WEBHOOK_HOST``:``CRM_WEBHOOK_PORT`` (default 127.0.0.1:8765), one uvicorn worker."""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m winecrm.events", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the receiver")
    serve.add_argument("--host", default=os.environ.get("CRM_WEBHOOK_HOST", "127.0.0.1"))
    serve.add_argument("--port", type=int, default=int(os.environ.get("CRM_WEBHOOK_PORT", "8765")))
    args = parser.parse_args(argv)
    import uvicorn

    from winecrm.events.receiver import create_app

    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
