"""``conformance.html``: a conformance run's report, from ``conformance.json`` alone.

Self-contained (inline CSS, no script, nothing fetched): a header with the
target and the verdict counts, a table of every case (ID, RFC section, pack,
verdict, the requirement level and quoted RFC sentence of the rule broken,
reason, duration), then each case's message ladder with every
message's full text in a ``<details>`` element.  The template is Jinja2 with
autoescape on: every string from the wire (messages, reasons, URIs) is escaped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import DictLoader, Environment, StrictUndefined

HTML_NAME = "conformance.html"
JSON_NAME = "conformance.json"

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>sipload conformance — {{ doc.target }}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f3f3f3}
.v{font-weight:bold;white-space:nowrap}.pass{color:#1a7f37}.fail{color:#c00}
.warn{color:#bc4c00}.error{color:#8250df}.rule{font-size:12px;color:#555}.inconclusive{color:#9a6700}.not_applicable{color:#777}
.counts span{margin-right:1.2em}pre{white-space:pre-wrap;background:#f7f7f7;padding:6px;
margin:2px 0 8px 0;font-size:12px}.ladder td{font-family:monospace;font-size:12px}
.out{color:#0550ae}.in{color:#6e3c00}h2{margin-top:2em}
</style></head><body>
<h1>SIP conformance: {{ doc.target }} ({{ doc.transport }})</h1>
<p>Profile <b>{{ doc.profile.name }}</b> (roles {{ doc.profile.roles | join(", ") }};
extensions {{ doc.profile.extensions | join(", ") or "none" }}) —
started {{ doc.started }}, {{ "%.1f" | format(doc.duration) }} s, sipload {{ doc.version }}</p>
<p class="counts">{% for k, n in doc.counts.items() %}<span class="v {{ k }}">{{ k }}: {{ n }}
</span>{% endfor %}</p>
<table><thead><tr><th>case</th><th>reference</th><th>pack</th><th>verdict</th>
<th>purpose</th><th>reason</th><th>time</th></tr></thead><tbody>
{% for c in doc.cases %}<tr><td><a href="#{{ c.id }}">{{ c.id }}</a></td>
<td>{{ c.reference }}</td><td>{{ c.pack }}</td>
<td class="v {{ c.verdict }}">{{ c.verdict }}</td><td>{{ c.purpose }}</td>
<td>{{ c.reason }}{% if c.get("rule") %}<div class="rule"><b>{{ c.rule.level }}</b>
{{ c.rule.ref }}: “{{ c.rule.text }}”</div>{% endif %}</td>
<td>{{ "%.2f" | format(c.duration) }} s</td></tr>
{% endfor %}</tbody></table>
{% for c in doc.cases %}{% if c.ladder %}
<h2 id="{{ c.id }}">{{ c.id }} — <span class="v {{ c.verdict }}">{{ c.verdict }}</span></h2>
<p>{{ c.reference }}: {{ c.purpose }}<br>{{ c.reason }}</p>
{% if c.get("rules") %}<ul class="rule">{% for r in c.rules %}<li><b>{{ r.level }}</b>
{{ r.ref }}: “{{ r.text }}”</li>{% endfor %}</ul>{% endif %}
<table class="ladder"><tbody>
{% for e in c.ladder %}<tr><td>{{ "%.3f" | format(e.t) }}</td>
<td class="{{ e.dir }}">{{ "tester →" if e.dir == "out" else "← " }} {{ e.peer }}</td>
<td><details><summary>{{ e.first_line }}</summary><pre>{{ e.text }}</pre></details></td></tr>
{% endfor %}</tbody></table>{% endif %}{% endfor %}
</body></html>
"""


def environment() -> Environment:
    """The Jinja2 environment of the report (autoescape on)."""
    return Environment(loader=DictLoader({"conformance.html": _TEMPLATE}), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(document: dict[str, Any]) -> str:
    page: str = environment().get_template("conformance.html").render(doc=document)
    return page


def write_conformance_html(run_dir: str | Path) -> Path:
    """Read ``conformance.json`` in ``run_dir`` and write ``conformance.html`` beside it."""
    d = Path(run_dir)
    document = json.loads((d / JSON_NAME).read_text(encoding="utf-8"))
    out = d / HTML_NAME
    out.write_text(render(document), encoding="utf-8")
    return out
