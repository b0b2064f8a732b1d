#!/usr/bin/env python3
"""INVITEs whose dialed number is a distinct 60,000-digit string, for scripts/soak.

    long_invites.py PROXY_IP PROXY_PORT LOCAL_IP COUNT [DIGITS] [WINDOW] [ack|noack]

Sends COUNT INVITEs from LOCAL_IP to sipscreen, at most WINDOW (default 32) waiting for their
final response at a time, each in one UDP datagram (the number only in the Request-URI, so
that the datagram stays under 65,507 bytes), ACKs every non-2xx final response (RFC 3261
§17.1.1.3, so that sipscreen's transaction ends at once rather than after Timer H; with
`noack`, none is, as a careless or hostile client would), and
prints one line: how many got which final status, and how many got none within 5 s.
Every loop is bounded: COUNT requests, 5 s for each, 3 s for the last answers.
"""

import collections
import select
import socket
import sys
import time

TIMEOUT = 5.0


def main():
    proxy = (sys.argv[1], int(sys.argv[2]))
    local_ip = sys.argv[3]
    count = int(sys.argv[4])
    digits = int(sys.argv[5]) if len(sys.argv) > 5 else 60000
    window = int(sys.argv[6]) if len(sys.argv) > 6 else 32
    send_ack = (sys.argv[7] if len(sys.argv) > 7 else "ack") != "noack"

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    sock.bind((local_ip, 0))
    local = "%s:%d" % sock.getsockname()
    host = "%s:%d" % proxy
    # Distinct numbers without converting a huge integer: a fixed head, the index at the end.
    head = "1" + "0" * (digits - 9)

    def number(i):
        return head + "%08d" % i

    def invite(i):
        return (
            f"INVITE sip:{number(i)}@{host} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local};branch=z9hG4bKlong{i};rport\r\n"
            "Max-Forwards: 70\r\n"
            f'From: "alice" <sip:1001@acme.example.com>;tag=long{i}\r\n'
            "To: <sip:long@acme.example.com>\r\n"
            f"Call-ID: long-{i}@{local_ip}\r\n"
            "CSeq: 1 INVITE\r\n"
            f"Contact: <sip:1001@{local}>\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def ack(i, to):
        return (
            f"ACK sip:{number(i)}@{host} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local};branch=z9hG4bKlong{i};rport\r\n"
            "Max-Forwards: 70\r\n"
            f'From: "alice" <sip:1001@acme.example.com>;tag=long{i}\r\n'
            f"To: {to}\r\n"
            f"Call-ID: long-{i}@{local_ip}\r\n"
            "CSeq: 1 ACK\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    first = invite(0)
    if len(first) > 65507:
        sys.exit(f"an INVITE of {len(first)} bytes does not fit in one UDP datagram")

    started = time.monotonic()
    waiting = {}  # index -> when its INVITE was sent
    finals = collections.Counter()
    lost = 0
    sent = 0
    largest = 0
    while sent < count or waiting:
        while sent < count and len(waiting) < window:
            datagram = invite(sent)
            largest = max(largest, len(datagram))
            sock.sendto(datagram, proxy)
            waiting[sent] = time.monotonic()
            sent += 1
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            data = sock.recv(65535).decode("utf-8", "replace")
            lines = data.split("\r\n")
            try:
                code = int(lines[0].split(" ")[1])
            except (IndexError, ValueError):
                continue
            headers = {}
            for line in lines[1:]:
                if not line:
                    break
                name, _, value = line.partition(":")
                headers.setdefault(name.strip().lower(), value.strip())
            call_id = headers.get("call-id", headers.get("i", ""))
            if not call_id.startswith("long-"):
                continue
            i = int(call_id[5:].split("@")[0])
            if code >= 200 and i in waiting:
                del waiting[i]
                finals[code] += 1
                if code >= 300 and send_ack:
                    sock.sendto(ack(i, headers.get("to", headers.get("t", ""))), proxy)
        now = time.monotonic()
        for i in [i for i, at in waiting.items() if now - at > TIMEOUT]:
            del waiting[i]
            lost += 1
    took = time.monotonic() - started
    summary = ", ".join(f"{code}: {n}" for code, n in sorted(finals.items()))
    print(
        f"{count} INVITEs of up to {largest} bytes ({digits}-digit numbers) in {took:.1f} s: "
        f"{summary or 'no final response'}; no final response: {lost}"
    )


if __name__ == "__main__":
    main()
