"""The JSON Schema of a scenario file: the one definition of what may be written.

``sipload schema`` prints :data:`SCHEMA` so editors can complete and check
scenarios.  The loader validates each step against the schema of its own kind
(the step's one kind key: ``send``, ``recv`` ...), which gives errors that name
the step's real mistake instead of a "matches none of" over every kind.
"""

from __future__ import annotations

from typing import Any

from sipload.scenario.yamlsource import DURATION_PATTERN

DURATION: dict[str, Any] = {
    "description": "seconds as a number, or a string such as 500ms, 2s, 1.5m",
    "oneOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": DURATION_PATTERN},
    ],
}
TEMPLATE: dict[str, Any] = {
    "type": "string",
    "description": "text in which ${name} is replaced by a variable or keyword",
}
HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "headers to set (a null value removes the header; a list adds several)",
    "additionalProperties": {
        "oneOf": [TEMPLATE, {"type": "null"}, {"type": "integer"},
                  {"type": "array", "items": TEMPLATE}],
    },
}
BODY: dict[str, Any] = {
    "description": "a body: text, or {sdp: offer|answer|hold|resume|inactive}",
    "oneOf": [
        TEMPLATE,
        {"type": "object", "additionalProperties": False, "required": ["sdp"],
         "properties": {"sdp": {"enum": ["offer", "answer", "hold", "resume", "inactive"]}}},
    ],
}
TIMERS: dict[str, Any] = {
    "start_timer": {"type": "string", "description": "start a named timing mark here"},
    "stop_timer": {"type": "string", "description": "stop a named timing mark here"},
}
CODE_SPEC: dict[str, Any] = {
    "description": "a status code (486), a class (2xx), a range (180-183), a method (INVITE)",
    "oneOf": [
        {"type": "integer", "minimum": 100, "maximum": 699},
        {"type": "string", "pattern": r"^([1-6]xx|[1-6][0-9][0-9](-[1-6][0-9][0-9])?)$"},
        {"type": "string", "pattern": r"^[A-Z][A-Z0-9_\-]*$"},
    ],
}
PERCENT: dict[str, Any] = {
    "description": "a fraction (0.01) or a percentage ('1%')",
    "oneOf": [{"type": "number", "minimum": 0},
              {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?%$"}],
}
MEDIA_CHECK: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "description": "conditions on the call's received RTP so far",
    "properties": {
        "min_packets": {"type": "integer", "minimum": 0},
        "max_loss": PERCENT,
        "max_jitter": DURATION,
        "min_mos": {"type": "number", "minimum": 1, "maximum": 4.5},
    },
}
MEDIA_PROPS: dict[str, Any] = {
    "codec": {"description": "PCMU, PCMA, or a list in order of preference",
              "oneOf": [{"enum": ["PCMU", "PCMA"]},
                        {"type": "array", "minItems": 1, "items": {"enum": ["PCMU", "PCMA"]}}]},
    "ptime": DURATION,
    "play": {"type": "string",
             "description": "tone, tone:FREQ (Hz), silence, or a WAV file (relative to the "
                            "scenario)"},
    "echo": {"type": "boolean", "description": "return the RTP that arrives (UAS)"},
    "record": {"type": "string", "description": "directory for received audio, a WAV per call"},
    "dtmf": {"type": "boolean", "description": "offer telephone-event (RFC 4733); default true"},
    "srtp": {"enum": ["sdes"],
             "description": "SRTP keyed with SDES (RFC 4568): RTP/SAVP with a=crypto lines"},
    "srtp_suites": {"description": "the SRTP suites offered and accepted, in order of "
                                   "preference (default: both)",
                    "type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"enum": ["AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"]}},
}
MEDIA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "description": "RTP audio for the calls; `legs` gives a leg its own",
    "properties": {
        **MEDIA_PROPS,
        "legs": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": False, "properties": MEDIA_PROPS}},
    },
}
CAPTURE: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["var", "regex"],
    "properties": {
        "var": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "header": {"type": "string"},
        "body": {"type": "boolean"},
        "uri": {"type": "boolean", "description": "search the Request-URI"},
        "message": {"type": "boolean", "description": "search the whole message"},
        "regex": {"type": "string"},
        "group": {"type": "integer", "minimum": 0,
                  "description": "which group to store (default: 1, or 0 without groups)"},
        "required": {"type": "boolean", "description": "no match fails the call"},
    },
}
CHECK: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "header": {"type": "string"},
        "body": {"type": "boolean"},
        "present": {"type": "boolean"},
        "absent": {"type": "boolean"},
        "uri": {"type": "boolean", "description": "test the Request-URI"},
        "message": {"type": "boolean", "description": "test the whole message"},
        "matches": {"type": "string"},
        "equals": TEMPLATE,
        "media": MEDIA_CHECK,
    },
}
CHALLENGE: dict[str, Any] = {
    "description": "challenge with digest: true, or {realm, algorithm, qop, stale}",
    "oneOf": [
        {"type": "boolean"},
        {"type": "object", "additionalProperties": False, "properties": {
            "realm": TEMPLATE,
            "algorithm": {"enum": ["MD5", "MD5-sess", "SHA-256", "SHA-256-sess",
                                   "SHA-512-256", "SHA-512-256-sess"]},
            "qop": {"oneOf": [{"enum": ["auth", "auth-int", "none"]},
                              {"type": "array", "items": {"enum": ["auth", "auth-int"]}}]},
            "stale": {"type": "boolean"},
        }},
    ],
}
LEG: dict[str, Any] = {
    "type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
    "description": "which call of the scenario the step acts on (default: main)",
}

STEP_KINDS: dict[str, dict[str, Any]] = {
    "send": {
        "description": "send a request; inside a call it goes in the call's dialog",
        "properties": {
            "send": {"type": "string", "pattern": r"^[A-Za-z][A-Za-z0-9_\-.!%*+`'~]*$"},
            "to": TEMPLATE, "from": TEMPLATE, "request_uri": TEMPLATE, "route": TEMPLATE,
            "subject": TEMPLATE, "headers": HEADERS, "body": BODY,
            "content_type": TEMPLATE, "out_of_dialog": {"type": "boolean"},
            "expires": {"type": "integer", "minimum": 0}, "leg": LEG, **TIMERS,
        },
    },
    "reply": {
        "description": "answer the last request received with a status code",
        "properties": {
            "reply": {"type": "integer", "minimum": 100, "maximum": 699},
            "reason": {"type": "string"}, "headers": HEADERS, "body": BODY,
            "content_type": TEMPLATE, "leg": LEG, **TIMERS,
            "challenge": CHALLENGE,
        },
    },
    "recv": {
        "description": "wait for a response (code, class, range) or a request (method)",
        "properties": {
            "recv": {"oneOf": [CODE_SPEC, {"type": "array", "items": CODE_SPEC, "minItems": 1}]},
            "optional": {"type": "boolean"},
            "timeout": DURATION,
            "on": {"type": "object", "description": "code spec or method -> label to jump to",
                   "additionalProperties": {"type": "string"}},
            "on_timeout": {"type": "string", "description": "label to jump to on timeout"},
            "capture": {"type": "array", "items": CAPTURE},
            "check": {"type": "array", "items": CHECK},
            "match": {"type": "array", "items": CHECK,
                      "description": "a message failing these is not for this step"},
            "authenticate": {"type": "boolean",
                             "description": "the request must carry valid digest credentials"},
            "leg": LEG, **TIMERS,
        },
    },
    "pause": {
        "description": "wait: fixed, or drawn from a distribution",
        "properties": {
            "pause": {"oneOf": [
                DURATION,
                {"type": "object", "additionalProperties": False, "minProperties": 1,
                 "maxProperties": 1, "properties": {
                     "uniform": {"type": "array", "items": DURATION, "minItems": 2,
                                 "maxItems": 2},
                     "normal": {"type": "object", "additionalProperties": False,
                                "required": ["mean", "stddev"],
                                "properties": {"mean": DURATION, "stddev": DURATION}},
                     "lognormal": {"type": "object", "additionalProperties": False,
                                   "required": ["mean", "stddev"],
                                   "properties": {"mean": DURATION, "stddev": DURATION}},
                     "exponential": DURATION,
                 }},
            ]},
        },
    },
    "dtmf": {
        "description": "send digits: as INFO application/dtmf-relay (mode: info, one INFO per "
                       "digit) or as RFC 4733 events in the call's RTP (mode: rfc4733)",
        "properties": {
            "dtmf": {"oneOf": [{"type": "string", "pattern": r"^[0-9*#A-Da-d]+$"},
                               {"type": "integer", "minimum": 0}]},
            "duration": DURATION, "gap": DURATION, "leg": LEG,
            "mode": {"enum": ["info", "rfc4733"]},
        },
    },
    "terminate": {
        "description": "end the call: CANCEL, a negative answer or BYE, by its state",
        "properties": {"terminate": {"oneOf": [{"type": "boolean"}, {"type": "null"}]},
                       "leg": LEG, "wait": {"type": "boolean",
                                            "description": "wait until the call is gone"}},
    },
    "label": {"description": "a place to jump to",
              "properties": {"label": {"type": "string"}, **TIMERS}},
    "goto": {
        "description": "jump to a label; `max` bounds how often (loops must be bounded)",
        "properties": {
            "goto": {"type": "string"}, "max": {"type": "integer", "minimum": 1},
            "when": {"type": "object", "additionalProperties": False, "required": ["var"],
                     "properties": {"var": {"type": "string"}, "equals": TEMPLATE,
                                    "matches": {"type": "string"}}},
        },
    },
    "set": {
        "description": "set variables",
        "properties": {"set": {"type": "object", "additionalProperties": TEMPLATE}},
    },
    "check": {
        "description": "check the last message received; a failure fails the call",
        "properties": {"check": {"type": "array", "items": CHECK}, "leg": LEG},
    },
    "fail": {
        "description": "fail the call here, counted with this reason (a branch's verdict)",
        "properties": {
            "fail": {"type": "string", "pattern": r"^[A-Za-z0-9_.\-]{1,64}$",
                     "description": "the failure reason: letters, digits, _ . -"},
            "detail": TEMPLATE,
        },
    },
    "nop": {"description": "nothing (a place for timers)",
            "properties": {"nop": {"type": "null"}, **TIMERS}},
}

for _kind, _spec in STEP_KINDS.items():
    _spec["type"] = "object"
    _spec["required"] = [_kind]
    _spec["additionalProperties"] = False

THRESHOLD: dict[str, Any] = {
    "type": "string",
    "description": "metric OP value, e.g. answer.p95<200ms, asr>=0.99, failed.rate<0.5%",
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sipload scenario",
    "type": "object",
    "additionalProperties": False,
    "required": ["steps"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "role": {"enum": ["uac", "uas"]},
        "transport": {"enum": ["udp", "tcp", "tls", "ws", "wss"]},
        "counterpart": {"type": "string", "description": "the UAS scenario to test against"},
        "to": TEMPLATE,
        "from": TEMPLATE,
        "variables": {"type": "object", "additionalProperties": TEMPLATE},
        "credentials": {
            "type": "object", "additionalProperties": False, "required": ["username", "password"],
            "properties": {"username": TEMPLATE, "password": TEMPLATE, "realm": TEMPLATE},
        },
        "inject": {"type": "string", "description": "CSV file in SIPp -inf format"},
        "recv_timeout": DURATION,
        "allow": {"type": "array", "items": {"type": "string"}},
        "methods": {"type": "array",
                    "items": {"type": "string", "pattern": r"^[A-Z][A-Z0-9_\-]*$"},
                    "description": "private request methods the scenario sends on purpose"},
        "supported": {"type": "array", "items": {"type": "string"}},
        "thresholds": {"type": "array", "items": THRESHOLD},
        "media": MEDIA,
        "steps": {"type": "array", "minItems": 1,
                  "items": {"oneOf": list(STEP_KINDS.values())}},
    },
}
TOP_KEYS = tuple(SCHEMA["properties"])
