"""``sipload validate``, ``sipload schema`` and ``sipload import-sipp``.

``validate SCENARIO...`` loads each scenario (and the CSV it injects) as a run
would: exit 0 when all are valid, 2 on the first error, printed as
``file:line:col: message``; warnings (``file:line:col: warning: ...``: a method
neither known nor declared, steps that can never run) go to stderr and do not
change the exit code.  ``schema`` prints the scenario JSON Schema.
``import-sipp FILE.xml [-o OUT.yaml]`` writes the equivalent scenario; what
it cannot translate is listed on stderr with the XML line.  Exit 0 when the
result validates, 2 when the XML is not well-formed or the result does not
validate.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from sipload.exitcodes import EXIT_OK, EXIT_USAGE
from sipload.scenario.loader import ScenarioError, load_file, load_text
from sipload.scenario.schema import SCHEMA
from sipload.scenario.sipp_import import import_sipp


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check scenario files; errors as file:line:col")
    p.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario file(s) (YAML)")
    p.add_argument("--quiet", action="store_true", help="print errors only")
    p.set_defaults(func=validate)
    p = sub.add_parser("schema", help="print the scenario JSON Schema")
    p.set_defaults(func=schema)
    p = sub.add_parser("import-sipp", help="translate a SIPp XML scenario to YAML")
    p.add_argument("xml", metavar="FILE.xml", help="the SIPp scenario")
    p.add_argument("-o", "--output", metavar="OUT.yaml", help="write here (default: stdout)")
    p.set_defaults(func=import_cmd)


def validate(args: argparse.Namespace) -> int:
    for name in args.scenarios:
        try:
            prog = load_file(name)
        except ScenarioError as e:
            print(e, file=sys.stderr)
            return EXIT_USAGE
        for w in prog.warnings:
            print(w, file=sys.stderr)
        if not args.quiet:
            warned = f", {len(prog.warnings)} warning(s)" if prog.warnings else ""
            print(f"{name}: ok ({prog.role}, {len(prog.steps)} steps{warned})")
    return EXIT_OK


def schema(args: argparse.Namespace) -> int:
    print(json.dumps(SCHEMA, indent=2))
    return EXIT_OK


def import_cmd(args: argparse.Namespace) -> int:
    src = Path(args.xml)
    try:
        data = src.read_bytes()
    except OSError as e:
        print(f"{src}:1:1: cannot read: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = import_sipp(data, str(src))
    except ScenarioError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    for line, text in result.warnings:
        where = f"{src}:{line}" if line else str(src)
        print(f"{where}: warning: {text}", file=sys.stderr)
    out_name = args.output or f"{src.with_suffix('.yaml').name}"
    try:
        load_text(result.yaml, out_name)
    except ScenarioError as e:
        print(f"the translation does not validate: {e}", file=sys.stderr)
        if args.output:
            Path(args.output).write_text(result.yaml, encoding="utf-8")
        return EXIT_USAGE
    if args.output:
        Path(args.output).write_text(result.yaml, encoding="utf-8")
    else:
        sys.stdout.write(result.yaml)
    return EXIT_OK
