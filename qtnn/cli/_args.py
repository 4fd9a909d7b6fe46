"""Small argparse helpers shared by the ``qtnn`` subcommands."""

from __future__ import annotations

import argparse
import sys
from typing import Any


class RenamedOption(argparse.Action):
    """Store the value; when given under a deprecated spelling, say so once on stderr.

    ``add_argument("--max-bond", "--bond", action=RenamedOption, deprecated=("--bond",), ...)``:
    the old spelling keeps working for one release.
    """

    def __init__(self, option_strings: list[str], dest: str, deprecated: tuple[str, ...] = (),
                 **kwargs: Any) -> None:
        self.deprecated_strings = tuple(deprecated)
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if option_string in self.deprecated_strings:
            print(f"qtnn: warning: {option_string} is deprecated, use {self.option_strings[0]} "
                  "(the old spelling goes away in the next release)", file=sys.stderr)
        setattr(namespace, self.dest, values)
