"""The `vaelab` command: one subcommand per job, thin over vaelab.api.

``parser`` builds the options, ``commands`` turns each command's options into one call of the API;
``main`` runs one command line and turns a VaelabError into one line on stderr and exit status 2."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import Interrupted, VaelabError
from ..progress import is_quiet, set_quiet
from .parser import build_parser


def _refuse_existing(args: argparse.Namespace) -> None:
    import os
    import stat

    from ..errors import ConfigError
    from ..fileio import write_error

    out = Path(args.out)
    try:
        st = os.lstat(out)
    except FileNotFoundError:
        return
    except OSError as e:  # a name too long, a path under a file...
        raise write_error(out, e) from None
    if stat.S_ISDIR(st.st_mode):
        return  # each command says itself that it wants a file name, not a folder
    if not args.force:
        raise ConfigError(f"--out {out} already exists; vaelab replaces no file without --force. Pass --force to "
                          "replace it, or choose a new name")


def _log_to_stderr() -> None:
    """vaelab's progress and notes (the 'vaelab' logger) go to stderr, one line each; stdout keeps
    the results (JSON, paths)."""
    import logging

    class StderrHandler(logging.StreamHandler):
        """Writes to the sys.stderr of the moment, not the one of its creation: main() may run
        several times in one process (a notebook, a test) with stderr redirected in between."""

        @property  # type: ignore[override]
        def stream(self):
            return sys.stderr

        @stream.setter
        def stream(self, _value) -> None:
            pass

    logger = logging.getLogger("vaelab")
    if not any(getattr(h, "_vaelab_cli", False) for h in logger.handlers):
        h = StderrHandler()
        h.setFormatter(logging.Formatter("vaelab: %(message)s"))
        h._vaelab_cli = True  # type: ignore[attr-defined]
        logger.addHandler(h)
    logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _log_to_stderr()
    try:  # detect, export and app import the --import modules while parsing: their scores' options become flags
        args = build_parser().parse_args(argv)
    except VaelabError as e:
        print(f"vaelab: error: {e}", file=sys.stderr)
        return 2
    was_quiet = is_quiet()
    set_quiet(getattr(args, "quiet", False))  # for this command only: main() run in a notebook or a test returns to what was
    try:
        if getattr(args, "out_file", False):
            _refuse_existing(args)
        if getattr(args, "imports", None):
            from ..api import import_modules

            import_modules(args.imports)
        if getattr(args, "trust_imports", False):
            from ..api import trust_imports

            with trust_imports():
                return args.func(args)
        return args.func(args)
    except VaelabError as e:
        if isinstance(e, Interrupted):
            print(f"vaelab: {e}", file=sys.stderr)
            return 130
        print(f"vaelab: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a file-system error no stage turned into a VaelabError: still one line
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        print(f"vaelab: error: {where}{e.strerror or e}; check the path, its permissions and the free space", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vaelab: interrupted; a training run keeps its last checkpoint (resume it with vaelab train --resume RUN)",
              file=sys.stderr)
        return 130
    finally:
        set_quiet(was_quiet)


if __name__ == "__main__":
    sys.exit(main())

