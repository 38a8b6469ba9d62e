"""``sipload validate``, ``sipload schema`` and ``sipload import-sipp``.

``validate SCENARIO...`` loads each scenario (and the CSV it injects) as a run
would: exit 0 when all are valid, 2 on the first error, printed as
``file:line:col: message``; warnings (``file:line:col: warning: ...``: a method
neither known nor declared, steps that can never run) go to stderr and do not
change the exit code.  ``schema`` prints the scenario JSON Schema.
``import-sipp FILE.xml [-o OUT.yaml] [--rtp-echo]`` writes the equivalent
scenario; what it cannot translate is listed on stderr with the XML line.  The
audio of ``rtp_stream`` (a G.711 WAV or raw file) and ``play_pcap_audio`` (the
RTP of a capture) is written as a 16-bit WAV beside the output
(``OUT.<source>.wav``; in the current directory when printing) and played by
``media:``; a capture's RFC 4733 events become a ``dtmf:`` step.  Exit 0 when the
result validates, 2 when the XML is not well-formed or the result does not
validate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import wave
from pathlib import Path
from typing import Any

from sipload.exitcodes import EXIT_OK, EXIT_USAGE
from sipload.media import g711
from sipload.media.errors import MediaConfigError
from sipload.media.sippaudio import capture_audio, g711_file_audio
from sipload.scenario.loader import ScenarioError, load_file, load_text
from sipload.scenario.schema import SCHEMA
from sipload.scenario.sipp_import import import_sipp
from sipload.scenario.sipp_media import AudioSource, Resolved, Resolver
from sipload.stats.pcap import PcapError, read_udp


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
    p.add_argument("--rtp-echo", action="store_true",
                   help="the scenario ran with SIPp's -rtp_echo: media: {echo: true}")
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
    if args.output and not Path(args.output).parent.is_dir():
        print(f"-o {args.output}: no such directory", file=sys.stderr)
        return EXIT_USAGE
    try:
        out_dir = Path(args.output).parent if args.output else Path(".")
        stem = Path(args.output).stem if args.output else src.stem
        result = import_sipp(data, str(src), rtp_echo=args.rtp_echo,
                             resolve=audio_resolver(src.parent, out_dir, stem))
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


def audio_resolver(xml_dir: Path, out_dir: Path, stem: str) -> Resolver:
    """Reads the audio files an imported scenario names (relative to the XML) and
    writes what sipload cannot play as it is as ``OUT_DIR/STEM.<source>.wav``."""

    def write_wav(name: str, samples: g711.Samples) -> str:
        path = out_dir / f"{stem}.{name}.wav"
        with path.open("wb") as f, wave.open(f, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(g711.CLOCK_RATE)
            out.writeframes(samples.astype("<i2").tobytes())
        return path.name

    def resolve(src: AudioSource) -> Resolved:
        path = Path(src.path)
        if not path.is_absolute():
            path = xml_dir / path
        try:
            data = path.read_bytes()
        except OSError as e:
            return Resolved(warning=f"cannot read {path}: {e.strerror}; left out")
        try:
            if src.kind == "rtp_stream":
                samples = g711_file_audio(data, src.codec, str(path))
                if samples is None:  # a PCM WAV: sipload plays it as it is
                    return Resolved(play=os.path.relpath(path.resolve(), out_dir.resolve()))
                return Resolved(play=write_wav(path.stem, samples))
            capture = read_udp(data)
            audio = capture_audio(d.payload for d in capture.datagrams)
        except (MediaConfigError, PcapError) as e:
            return Resolved(warning=f"{e}; left out")
        except OSError as e:
            return Resolved(warning=f"cannot write the WAV file: {e.strerror}; left out")
        notes = []
        if audio.streams > 1:
            notes.append(f"{audio.streams} RTP streams in the capture: the G.711 one with "
                         "the most packets is played")
        if audio.samples is None and not audio.digits:
            notes.append("no G.711 audio or RFC 4733 event in the capture; left out")
        try:
            play = write_wav(path.stem, audio.samples) if audio.samples is not None else ""
        except OSError as e:
            return Resolved(warning=f"cannot write the WAV file: {e.strerror}; left out")
        return Resolved(play=play, codec=audio.codec, digits=audio.digits,
                        warning="; ".join(notes))

    return resolve
