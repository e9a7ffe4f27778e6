"""python -m benchmarks --list | NAME [ARGS...]: list the benchmarks by topic, or run one.

NAME is a benchmark's file name without .py (unique across topics); `python -m benchmarks NAME --help`
gives its options, those shared by every benchmark among them (--runs, --results, --smoke, --jobs, --name)."""
from __future__ import annotations

import sys

from benchmarks._harness import registry, run, summary


def listing() -> str:
    topics: dict[str, list[str]] = {}
    for name, topic in registry().items():
        topics.setdefault(topic, []).append(name)
    width = max(len(n) for names in topics.values() for n in names)
    out = []
    for topic, names in topics.items():
        out.append(f"{topic}/")
        out += [f"  {n.ljust(width)}  {summary(n)}" for n in sorted(names)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    if argv[0] == "--list":
        print(listing())
        return 0
    run(argv[0], argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
