"""Parses a Prometheus/OpenMetrics exposition from stdin with the Python client's two
parsers (prometheus_client from PyPI) and prints what they found as JSON:
{"openmetrics": {family: {"type", "samples": [[name, labels, value], ...]}}, "text": {...}}.
Any parse error is a traceback and exit status 1."""
import json
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

text = sys.stdin.read()
out = {}
for key, parse in (("openmetrics", openmetrics_families), ("text", text_families)):
    families = {}
    for f in parse(text):
        families[f.name] = {
            "type": f.type,
            "samples": [[s.name, s.labels, s.value] for s in f.samples],
        }
    out[key] = families
json.dump(out, sys.stdout)
