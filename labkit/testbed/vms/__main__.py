"""``python -m labkit.testbed.vms {up,down,fetch} --env crownlabs [--dry-run] [--airgap]``.

A stop-gap command line until ``invoke up/down --env crownlabs [--dry-run]`` delegate here
(:func:`main` is what those tasks should call).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from labkit.config import ConfigError, load_env
from labkit.testbed.base import TestbedError
from labkit.testbed.vms import VmsTestbed, artifacts, dry_run
from labkit.testbed.vms.options import VmsOptions


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m labkit.testbed.vms", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("up", "down", "fetch"), help="bring up, tear down, or fetch air-gap files")
    parser.add_argument("--env", default="crownlabs", help="env name in envs/ or a YAML path (default: crownlabs)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every command per host, in order; connect to nothing")
    parser.add_argument("--airgap", action="store_true",
                        help="copy k3s, liqoctl, charts and images from the control machine")
    args = parser.parse_args(argv)
    try:
        env = load_env(args.env)
        options = VmsOptions(airgap=args.airgap)
        if args.action == "fetch":
            for path in artifacts.fetch(env, options):
                print(f"[vms] fetched {path}")
            return 0
        if args.dry_run:
            print(dry_run(env, options, down=args.action == "down"))
            return 0
        testbed = VmsTestbed(options)
        if args.action == "up":
            testbed.up(env)
        else:
            testbed.teardown(env)
            testbed.down()
    except (ConfigError, TestbedError) as err:
        print(f"vms {args.action}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
