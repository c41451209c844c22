"""``python -m subsession lock|sync|check [CONFIG ...]`` (docs/config.md "Requirements").

Config files default to ``$SUBSESSION_CONFIG``. Errors are one line on stderr and exit
status 1; nothing is half-written.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional

__all__ = ["main"]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subsession",
        description="Lock and install the requirements of studio-config sessions.",
    )
    verbs = parser.add_subparsers(dest="verb", required=True)
    lock = verbs.add_parser(
        "lock", help="resolve every session's requirements for every target into the lock"
    )
    sync = verbs.add_parser(
        "sync", help="install the locked wheels of this Python into the shared store"
    )
    check = verbs.add_parser("check", help="say what the store lacks, as Maya's start-up does")
    for sub in (lock, sync, check):
        sub.add_argument("config", nargs="*", help="config files (default: $SUBSESSION_CONFIG)")
        sub.add_argument("--lock", help="the lock file (default: beside the last config)")
    lock.add_argument("--no-index", action="store_true", help="only the find_links wheelhouses")
    lock.add_argument("--offline", action="store_true", help="no network: uv's cache only")
    sync.add_argument("--target", help="another Python/platform, e.g. 3.11-windows_x86_64")
    for sub in (sync, check):
        sub.add_argument("--store", help="the store folder (default: $SUBSESSION_STORE)")
    args = parser.parse_args(argv)

    from subsession import _requirements, _store
    from subsession.config import ConfigError, config_paths, parse_config

    files = config_paths(args.config or None)
    try:
        if not files:
            raise _requirements.RequirementsError(
                "no config: name config files or set SUBSESSION_CONFIG"
            )
        if args.verb == "lock":
            path = _requirements.lock(
                files, lock_file=args.lock, no_index=args.no_index, offline=args.offline
            )
            print(f"wrote {path}")
        elif args.verb == "sync":
            report = _store.sync(files, lock_file=args.lock, target=args.target, root=args.store)
            print(report)
        else:
            if args.lock:
                import os

                os.environ[_requirements.LOCK_ENV] = args.lock
            _, problems = _store.session_paths(parse_config(files), files, root=args.store)
            for problem in problems:
                print(problem)
            if problems:
                return 1
            print("every locked wheel is in the store")
    except (ConfigError, _requirements.RequirementsError, OSError) as error:
        print(f"subsession {args.verb}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
