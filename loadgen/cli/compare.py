"""``easload compare BASELINE CURRENT``: per command the change of p50/p90/p99, error rate and throughput
between two results (loadgen/results/compare.py); exit 0 no regression beyond the tolerances, 1 a
regression, 2 a usage error (a file that is not a result, a bad ``--tolerance``)."""

import sys
from pathlib import Path


def add_parser(sub, parser_class=None):
    c = sub.add_parser("compare", help="compare two results (summary.json, --out directories or shards): "
                                       "p50/p90/p99, error rate and throughput per command; exit 1 on a regression")
    c.add_argument("baseline", help="the last good result: summary.json, an --out directory, or a directory "
                                    "(or glob) of shards, merged first")
    c.add_argument("current", help="the result to judge, in the same forms")
    c.add_argument("--tolerance", action="append", default=[], metavar="METRIC=VALUE",
                   help="allowed change, repeatable: p50, p90, p99, throughput relative (default 10%%), "
                        "error_rate in percentage points (default 0.1%%); e.g. --tolerance p99=5%%")
    c.add_argument("--junit", metavar="FILE", help="write the comparison as JUnit XML (a test case per command "
                                                   "and metric)")
    c.set_defaults(func=cmd_compare)
    return c


def cmd_compare(args):
    from loadgen.cli.app import EXIT_FAILED, EXIT_OK, UsageError, _damaged_errors, _load_summaries
    from loadgen.results import compare as cmp
    from loadgen.results.merge import MergeError

    try:
        tolerances = dict(cmp.DEFAULT_TOLERANCES)
        for text in args.tolerance:
            cmp.parse_tolerance(text, tolerances)
        sides = []
        for name in (args.baseline, args.current):
            summaries = _load_summaries(cmp.result_files(name))
            try:
                sides.append(cmp.Side(summaries, name))
            except MergeError as exc:
                raise UsageError("%s: %s" % (name, exc)) from None
            except _damaged_errors() as exc:
                raise UsageError("%s: not a valid easload summary (%s)" % (name, type(exc).__name__)) from None
    except cmp.CompareError as exc:
        raise UsageError(str(exc)) from None
    result = cmp.compare(sides[0], sides[1], tolerances)
    print(cmp.text(result))
    if args.junit:
        try:
            Path(args.junit).write_text(cmp.junit(result))
        except OSError as exc:
            raise UsageError("--junit %s: %s" % (args.junit, exc.strerror or exc)) from None
    for note in result["notes"]:
        print("warning: %s" % note, file=sys.stderr)
    return EXIT_FAILED if result["regressions"] else EXIT_OK
