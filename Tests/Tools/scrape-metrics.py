#!/usr/bin/python3
"""Fetches an otpd /metrics URL (or reads the text on stdin with "-") and parses it with the
Prometheus client library's own parser (Debian's python3-prometheus-client). Prints one JSON
object: {"status": HTTP status, "content_type": ..., "samples": [[name, {labels}, value], ...]}.
Exits 1 when the text does not parse."""
import json
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

source = sys.argv[1]
if source == "-":
    status, content_type, text = 200, "", sys.stdin.read()
else:
    try:
        with urllib.request.urlopen(source, timeout=10) as response:
            status = response.status
            content_type = response.headers.get("Content-Type", "")
            text = response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        print(json.dumps({"status": error.code, "content_type": "", "samples": []}))
        sys.exit(0)
samples = []
try:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.append([sample.name, sample.labels, sample.value])
except Exception as error:  # the parser's own refusal
    print(f"not valid Prometheus text: {error}", file=sys.stderr)
    sys.exit(1)
print(json.dumps({"status": status, "content_type": content_type, "samples": samples}))
