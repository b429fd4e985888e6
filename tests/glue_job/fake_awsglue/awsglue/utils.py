"""Stand-in for awsglue.utils: getResolvedOptions as Glue parses job arguments."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


class GlueArgumentError(Exception):
    """A required job argument is missing or malformed (Glue raises rather than exits)."""


class GlueArgumentParser(argparse.ArgumentParser):
    """An argument parser that raises GlueArgumentError instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise GlueArgumentError(message)


def getResolvedOptions(args: Sequence[str], options: Sequence[str]) -> dict[str, str]:
    """Return the named `--name value` arguments; every name asked for is required, unknown ones ignored."""
    parser = GlueArgumentParser()
    for option in options:
        parser.add_argument(f"--{option}", required=True)
    parsed, _unknown = parser.parse_known_args(list(args)[1:])  # args[0] is the script, as in sys.argv
    return vars(parsed)
