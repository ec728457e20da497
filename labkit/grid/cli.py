"""What the data-plane programs' command lines share: logging and the upstream connection."""

from __future__ import annotations

import argparse
import logging

LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


def add_logging(ap: argparse.ArgumentParser) -> None:
    """``--log-level`` (default INFO)."""
    ap.add_argument("--log-level", default="INFO", help="Python logging level")


def setup_logging(args: argparse.Namespace) -> None:
    """Configure logging from ``--log-level`` with the kit's format."""
    logging.basicConfig(level=args.log_level, format=LOG_FORMAT)


def add_upstream(ap: argparse.ArgumentParser) -> None:
    """Where a client (recorder, state estimator) connects: ``--host`` and ``--port``/``--port-file``, ``--idcode``."""
    ap.add_argument("--host", default="127.0.0.1")
    port = ap.add_mutually_exclusive_group(required=True)
    port.add_argument("--port", type=int, help="server port")
    port.add_argument("--port-file", help="read the server port from this file (waits until it exists)")
    ap.add_argument("--idcode", type=int, required=True,
                    help="IDCODE of the stream to read (commands are addressed to it; a server ignores others)")
