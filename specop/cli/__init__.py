"""The ``specop`` command (placeholder until the main-job issue lands)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="specop",
        description="specop command line. PLACEHOLDER: the report/density/top/trace subcommands "
        "are not implemented yet; use the Python API (import specop).",
    )
    parser.parse_args(argv)
    print("specop: the command-line job is not implemented yet; see README.md for the Python API.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
