"""The container's HEALTHCHECK: is hbsm itself working? Exit 0 yes, 1 no.

It asks the API's /health on 127.0.0.1:$HEARTBEAT_PORT. A 503 there may only mean a monitored
critical service is down, which is hbsm doing its job, not hbsm being ill: the container is
unhealthy when the API does not answer, or answers that the event log cannot be written (then
the monitor can neither record nor act). Standard library only: it runs in the image's Python
without importing hbsm, so it stays cheap every interval.
"""

import json
import os
import sys
import urllib.error
import urllib.request

port = os.environ.get("HEARTBEAT_PORT", "5000")
url = f"http://127.0.0.1:{port}/health"
# No proxy: HTTP(S)_PROXY set for the monitored services must not carry a loopback request.
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    try:
        answer = opener.open(url, timeout=4)
    except urllib.error.HTTPError as error:  # 503: read the body all the same
        answer = error
    with answer:
        body = json.load(answer)
    writable = body["event_log"]["writable"]
except (OSError, ValueError, KeyError, TypeError) as exc:
    print(f"hbsm healthcheck: {url}: {exc}", file=sys.stderr)
    sys.exit(1)
if not writable:
    print(f"hbsm healthcheck: event log not writable: {body['event_log']}", file=sys.stderr)
sys.exit(0 if writable else 1)
