"""The ``emoq`` command's front door. The client's commands (submit, status,
results, cancel) run without loading the operator stack — settings,
SQLAlchemy, torch, FunASR: seconds of start-up a user waiting on
``emoq submit --help`` should not pay; everything else goes to ``ops.cli``."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from client.cli import COMMANDS


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in COMMANDS:
        from client.cli import main as client_main

        return client_main(args)
    from ops.cli import main as operator_main

    return operator_main(args)


if __name__ == "__main__":
    sys.exit(main())
