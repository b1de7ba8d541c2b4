"""Reads an event stream with httpx-sse and prints each event as one JSON line.

    python python_client.py URL COUNT

Prints {"client": "httpx-sse", "open": true} once the response has arrived, then one line
{"type", "data", "lastEventId"} per event exactly as httpx-sse gives it (no filtering, no
fixing up), and exits after COUNT events. Run by driver.mjs; exits 1 on any error.
"""

import json
import sys

import httpx
from httpx_sse import connect_sse


def emit(value):
    # ensure_ascii keeps the output plain ASCII, so no terminal or pipe encoding can alter
    # what is compared; lone surrogates could not get here (httpx decodes UTF-8).
    sys.stdout.write(json.dumps(value, ensure_ascii=True) + "\n")
    sys.stdout.flush()


def main():
    url, count = sys.argv[1], int(sys.argv[2])
    received = 0
    # No read timeout: the driver bounds the whole run with its own guard.
    with httpx.Client(timeout=httpx.Timeout(10.0, read=None)) as client:
        with connect_sse(client, "GET", url) as source:
            response = source.response
            if response.status_code != 200:
                raise SystemExit(f"httpx-sse: {url} answered {response.status_code}")
            emit({"client": "httpx-sse", "open": True})
            if count == 0:
                return
            for event in source.iter_sse():
                emit({"type": event.event, "data": event.data, "lastEventId": event.id})
                received += 1
                if received == count:
                    return
    raise SystemExit(f"httpx-sse: the stream ended after {received} of {count} events")


if __name__ == "__main__":
    main()
