#!/usr/bin/env python3
"""Writes the seed corpora of fuzz/seeds/<target>/ from the repository's own test data.

Run from anywhere: `python3 fuzz/make_seeds.py`. It needs tshark and editcap (Debian package
`tshark`) to pull SIP and RTP payloads out of the captures. The seeds it writes are
committed, so running it again is only needed when the test data or the input formats of the
targets change. Each target keeps at most about 50 seeds of under 64 KB.
"""

import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEEDS = os.path.join(ROOT, "fuzz", "seeds")
LIMIT = 64 * 1024


def out(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    assert len(data) < LIMIT, (target, name, len(data))
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rel(*parts):
    return os.path.join(ROOT, *parts)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def udp_payloads(pcap, display_filter):
    """UDP payloads of the packets of `pcap` that match the filter, in order."""
    res = subprocess.run(
        ["tshark", "-r", pcap, "-Y", display_filter, "-T", "fields", "-e", "udp.payload"],
        check=True,
        capture_output=True,
        text=True,
    )
    return [bytes.fromhex(line.strip().split(",")[-1]) for line in res.stdout.splitlines() if line.strip()]


RFC4475 = sorted(glob.glob(rel("tests", "rfc4475", "*.dat")))
# Near-repeats of others, left out of sip_message so that it keeps 50 seeds.
REPEATS = {"mismatch02.dat", "scalarlg.dat", "unksm2.dat", "cparam02.dat", "esc02.dat",
           "regescrt.dat"}


def sip_from_captures():
    """A few SIP messages of the captures, by (file, frame)."""
    picks = [
        ("tests/captures/simple_invite_scenario.pcap", 1, "invite_sdp"),
        ("tests/captures/simple_invite_scenario.pcap", 4, "ok_sdp"),
        ("tests/captures/aaa.pcap", 30, "register_authorization"),
        ("pcaps/redirect_302.pcap", 4, "redirect_302"),
        ("pcaps/diversion_trusted.pcap", 1, "invite_diversion"),
        ("pcaps/history_info_trusted.pcap", 1, "invite_history_info"),
        ("tests/captures/cancel.pcap", 4, "cancel"),
    ]
    found = []
    for path, frame, name in picks:
        payloads = udp_payloads(rel(path), f"frame.number == {frame}")
        if payloads:
            found.append((name, payloads[0]))
    return found


def sip_message(captured):
    for f in RFC4475:
        if os.path.basename(f) not in REPEATS:
            out("sip_message", os.path.basename(f), read(f))
    for name, data in captured:
        out("sip_message", name, data)


def stream_framing(captured):
    msgs = [read(f) for f in RFC4475]

    def seed(name, max_, sizes, stream):
        head = struct.pack("<H", max_ - 1) + bytes([len(sizes)]) + bytes(s - 1 for s in sizes)
        out("stream_framing", name, head + stream)

    invite = dict(captured)["invite_sdp"]
    ok = dict(captured)["ok_sdp"]
    seed("one_push", 65536, [], invite + ok)
    seed("keepalives", 65536, [3], b"\r\n\r\n" + invite + b"\r\n\r\n\r\n" + ok + b"\r\n")
    seed("byte_by_byte", 65536, [1], invite)
    seed("straddling_blank_line", 65536, [7, 1, 2, 200], invite + ok)
    seed("small_max", 300, [50], invite + ok)
    seed("max_exact", len(invite), [64], invite + invite)
    seed("blank_flood", 16, [4], b"\r\n" * 20 + invite)
    seed("lf_only", 65536, [5], invite.replace(b"\r\n", b"\n") + ok)
    seed("bad_content_length", 65536, [9], invite.replace(b"Content-Length: ", b"Content-Length: -"))
    seed("compact_l", 65536, [11], invite.replace(b"Content-Length:", b"l:"))
    for i, name in enumerate(["wsinv.dat", "dblreq.dat", "mpart01.dat", "clerr.dat", "ncl.dat",
                              "scalar02.dat", "mcl01.dat", "longreq.dat", "esc01.dat",
                              "unreason.dat", "noreason.dat", "badinv01.dat", "bcast.dat",
                              "lwsdisp.dat", "insuf.dat", "zeromf.dat"]):
        data = read(rel("tests", "rfc4475", name))
        seed(f"rfc4475_{name}", 65536, [1 + 17 * i % 97, 3], data + b"\r\n" + msgs[i])


# ---- proxy_core: segments separated by FF FF, each a control byte + message ---------------
# control byte: bits 0-2 peer (or which request to answer), bits 3-4 action (0 message,
# 1 reply, 2 RTP, 3 send error), bits 5-7 clock step (0 none, 1 20ms, 2 500ms, 3 1s, 4 4s,
# 5 33s, 6 181s, 7 700s).
PHONE, PHONE_TCP, PBX, TRUNK, STRANGER, STRANGER_TCP, STRANGER6, TRUSTED6 = range(8)
MSG, REPLY, RTP, SENDERR = 0, 1 << 3, 2 << 3, 3 << 3


def step(n):
    return n << 5


def conversation(*segments):
    data = b"\xff\xff".join(bytes([ctrl]) + (body.encode() if isinstance(body, str) else body)
                            for ctrl, body in segments)
    return data


OFFER = ("v=0\r\no=u 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
         "a=rtpmap:101 telephone-event/8000\r\n")


def request(method, ruri, from_user, branch, cseq=1, host="127.0.0.1", via="127.0.0.1:5061",
            transport="UDP", to_tag="", extra="", body="", from_host="127.0.0.1", call=None,
            to=None):
    """A request; `call` names the call (Call-ID and From tag) when it is not the branch's."""
    call = call or branch
    to = to or ruri
    to_tag = f";tag={to_tag}" if to_tag else ""
    ctype = "Content-Type: application/sdp\r\n" if body.startswith("v=0") else ""
    return (f"{method} {ruri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {via};branch={branch};rport\r\n"
            f"From: <sip:{from_user}@{from_host}>;tag=f-{call}\r\n"
            f"To: <{to}>{to_tag}\r\n"
            f"Call-ID: call-{call}@{host}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{from_user}@{via}>\r\n"
            f"Max-Forwards: 70\r\n{extra}{ctype}"
            f"Content-Length: {len(body)}\r\n\r\n{body}")


def rtp_event(digit, ts, end=True):
    return struct.pack(">BBHII", 0x80, 101, ts & 0xFFFF, ts, 77) + bytes([digit, (0x80 if end else 0) | 10, 0, 160])


def proxy_core():
    seeds = {}
    ruri = "sip:1002@127.0.0.1:5060"
    inv = request("INVITE", ruri, "alice", "z9hG4bK-c1", body=OFFER)
    ok_extra = ("Contact: <sip:1002@127.0.0.9:5070>\r\nRecord-Route: <sip:127.0.0.9:5070;lr>\r\n"
                "Content-Type: application/sdp\r\nContent-Length: " + str(len(OFFER)) + "\r\n\r\n" + OFFER)
    ack = request("ACK", "sip:1002@127.0.0.9:5070", "alice", "z9hG4bK-c1a", to_tag="fz",
                  extra="Route: <sip:127.0.0.1:5060;lr>\r\n", call="z9hG4bK-c1", to=ruri)
    bye = request("BYE", "sip:1002@127.0.0.9:5070", "alice", "z9hG4bK-c1b", cseq=2, to_tag="fz",
                  extra="Route: <sip:127.0.0.1:5060;lr>\r\n", call="z9hG4bK-c1", to=ruri)
    seeds["internal_call"] = conversation(
        (MSG | PHONE, inv), (REPLY | 0, "100"), (REPLY | 0 | step(1), "180"),
        (REPLY | 0 | step(3), "200" + ok_extra), (MSG | PHONE, ack), (MSG | PHONE | step(4), bye),
        (REPLY | 0, "200"))
    ext = request("INVITE", "sip:612345678@127.0.0.1:5060", "alice", "z9hG4bK-e1")
    seeds["external_busy"] = conversation(
        (MSG | PHONE, ext), (REPLY | 0, "486Reason: SIP;cause=486\r\n"),
        (MSG | PHONE | step(2), ext), (MSG | PHONE | step(5), ""))
    seeds["bob_acl_denied"] = conversation(
        (MSG | PHONE, request("INVITE", "sip:0033140000000@127.0.0.1", "bob", "z9hG4bK-d1")),
        (MSG | PHONE, request("ACK", "sip:0033140000000@127.0.0.1", "bob", "z9hG4bK-d1", to_tag="@TAG@")))
    intl = request("INVITE", "sip:0033612345678@127.0.0.1:5060", "alice", "z9hG4bK-p1", body=OFFER)
    events = [(MSG | PHONE, intl), (0 | step(2), "")]
    for i, d in enumerate([1, 2, 3, 4, 11]):
        events.append((RTP | PHONE | step(1), rtp_event(d, 1000 + 800 * i, end=False)))
        events.append((RTP | PHONE, rtp_event(d, 1000 + 800 * i)))
    events += [(REPLY | 0 | step(1), "200" + ok_extra)]
    seeds["pin_by_rtp"] = conversation(*events)
    def info(d, n):
        return request("INFO", "sip:127.0.0.1:5060", "alice", f"z9hG4bK-i{n}", cseq=n,
                       to_tag="@TAG@", extra="Content-Type: application/dtmf-relay\r\n",
                       body=f"Signal={d}\r\nDuration=160\r\n", call="z9hG4bK-p2",
                       to="sip:0033612345678@127.0.0.1:5060")
    intl2 = intl.replace("z9hG4bK-p1", "z9hG4bK-p2")
    seeds["pin_by_info"] = conversation(
        (MSG | PHONE, intl2), *[(MSG | PHONE | step(1), info(d, 2 + i)) for i, d in enumerate("9#1234#")],
        (REPLY | 0, "183"), (REPLY | 0 | step(3), "200" + ok_extra))
    seeds["pin_timeout"] = conversation(
        (MSG | PHONE, intl.replace("z9hG4bK-p1", "z9hG4bK-p3")), (0 | step(4), ""), (0 | step(4), ""))
    cancel = request("CANCEL", "sip:612345678@127.0.0.1:5060", "alice", "z9hG4bK-x1")
    seeds["cancel"] = conversation(
        (MSG | PHONE, request("INVITE", "sip:612345678@127.0.0.1:5060", "alice", "z9hG4bK-x1")),
        (REPLY | 0, "180"), (MSG | PHONE | step(3), cancel), (REPLY | 0, "200"), (REPLY | 1, "487"),
        (MSG | PHONE, request("ACK", "sip:612345678@127.0.0.1:5060", "alice", "z9hG4bK-x1", to_tag="fz")))
    seeds["cancel_held"] = conversation(
        (MSG | PHONE, intl.replace("z9hG4bK-p1", "z9hG4bK-p4")),
        (MSG | PHONE | step(2), request("CANCEL", "sip:0033612345678@127.0.0.1:5060", "alice", "z9hG4bK-p4")))
    seeds["timers"] = conversation(
        (MSG | PHONE, request("INVITE", "sip:1003@127.0.0.1", "alice", "z9hG4bK-t1")),
        (0 | step(5), ""), (MSG | PHONE, request("INVITE", "sip:1003@127.0.0.1", "alice", "z9hG4bK-t2")),
        (REPLY | 0, "180"), (0 | step(6), ""), (0 | step(7), ""),
        (MSG | PHONE, request("MESSAGE", "sip:1003@127.0.0.1", "alice", "z9hG4bK-t3", body="hi")),
        (0 | step(2), ""), (0 | step(4), ""), (0 | step(5), ""))
    seeds["stranger_digest"] = conversation(
        (MSG | STRANGER, request("INVITE", "sip:1002@acme.example.com", "alice", "z9hG4bK-a1",
                                 via="203.0.113.5:5060", from_host="acme.example.com")),
        (MSG | STRANGER, request("ACK", "sip:1002@acme.example.com", "alice", "z9hG4bK-a1",
                                 via="203.0.113.5:5060", from_host="acme.example.com", to_tag="@TAG@")),
        (MSG | STRANGER | step(1), request("INVITE", "sip:1002@acme.example.com", "alice", "z9hG4bK-a2",
                                           via="203.0.113.5:5060", from_host="acme.example.com", cseq=2,
                                           extra="Proxy-Authorization: @AUTH@\r\n")),
        (REPLY | 0, "200" + ok_extra))
    seeds["stranger_beta_wrong"] = conversation(
        (MSG | STRANGER6, request("INVITE", "sip:200@beta.example.org", "zed", "z9hG4bK-b1",
                                  via="[2001:db8::7]:5060", from_host="beta.example.org")),
        (MSG | STRANGER6, request("INVITE", "sip:200@beta.example.org", "zed", "z9hG4bK-b2",
                                  via="[2001:db8::7]:5060", from_host="beta.example.org",
                                  extra='Proxy-Authorization: Digest username="zed", realm="beta", nonce="0.00", uri="sip:200@beta.example.org", response="00", qop=auth, nc=00000001, cnonce="x"\r\n')),
        (MSG | STRANGER6, request("INVITE", "sip:200@beta.example.org", "zed", "z9hG4bK-b3",
                                  via="[2001:db8::7]:5060", from_host="beta.example.org",
                                  extra="Proxy-Authorization: @AUTH@\r\n")))
    flood = [(MSG | STRANGER_TCP, request("OPTIONS", "sip:x@127.0.0.1", "eve", f"z9hG4bK-f{i}",
                                          via="203.0.113.6:40000", transport="TCP")) for i in range(10)]
    seeds["stranger_flood"] = conversation(*flood, (0 | step(5), ""), flood[0])
    seeds["trusted_pai_diversion"] = conversation(
        (MSG | PBX, request("INVITE", "sip:612345678@127.0.0.1:5060", "+34910000000", "z9hG4bK-tr1",
                            via="127.0.0.9:5070", from_host="acme.example.com",
                            extra="P-Asserted-Identity: <sip:1001@acme.example.com>\r\n"
                                  "Diversion: <sip:1003@acme.example.com>;reason=unconditional\r\n")),
        (REPLY | 0, "302Contact: <sip:0033612345678@127.0.0.3>, <sip:1002@127.0.0.1>;q=0.5\r\n"),
        (REPLY | 0, "486"), (MSG | TRUSTED6, request("INVITE", "sip:1001@acme.example.com", "+34666123456",
                                                      "z9hG4bK-tr2", via="[2001:db8::9]:5060",
                                                      extra="History-Info: <sip:1003@acme.example.com?Reason=SIP%3Bcause%3D302>;index=1\r\n")))
    seeds["incall_blocked"] = conversation(
        (MSG | PBX, request("INVITE", "sip:+34910000000@127.0.0.1", "+34666123456", "z9hG4bK-in1",
                            via="127.0.0.9:5070")))
    seeds["dial_prefix"] = conversation(
        (MSG | PHONE, request("INVITE", "sip:**1234*0033612345678@127.0.0.1", "alice", "z9hG4bK-dp1")),
        *[(MSG | PHONE, request("INVITE", "sip:**9999*0033612345678@127.0.0.1", "alice", f"z9hG4bK-dp{i}"))
          for i in range(2, 6)],
        (MSG | PHONE | step(7), request("INVITE", "sip:**1234*0033612345678@127.0.0.1", "alice", "z9hG4bK-dp9")))
    seeds["tcp_phone_and_send_error"] = conversation(
        (MSG | PHONE_TCP, request("INVITE", "sip:1001@127.0.0.1", "bob", "z9hG4bK-tc1",
                                  via="127.0.0.1:5062", transport="TCP")),
        (SENDERR | PBX, ""), (MSG | PHONE_TCP, request("REGISTER", "sip:127.0.0.1", "bob", "z9hG4bK-tc2",
                                                        via="127.0.0.1:5062", transport="TCP")),
        (SENDERR | PHONE_TCP, ""))
    seeds["options_and_loops"] = conversation(
        (MSG | PHONE, request("OPTIONS", "sip:127.0.0.1:5060", "alice", "z9hG4bK-o1")),
        (MSG | PHONE, request("INVITE", "sip:1002@127.0.0.1", "alice", "z9hG4bK-o2").replace(
            "Max-Forwards: 70", "Max-Forwards: 0")),
        (MSG | PHONE, request("INVITE", "sip:1002@127.0.0.1", "alice", "z9hG4bK-o3",
                              extra="Proxy-Require: foo\r\n")),
        (MSG | PHONE, request("BYE", "sip:1002@127.0.0.1", "alice", "z9hG4bK-o4", to_tag="zz",
                              extra="Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.9:5070;lr>\r\n")),
        (MSG | PBX, request("BYE", "sip:alice@127.0.0.1:5061", "1002", "z9hG4bK-o5", to_tag="a-c1",
                            via="127.0.0.9:5070")),
        (MSG | STRANGER, "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnope\r\n"
                         "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
                         "Content-Length: 0\r\n\r\n"),
        (MSG | PHONE, "\r\n\r\n"))
    for name, data in seeds.items():
        out("proxy_core", name, data)
    # Half the RFC 4475 messages, from a phone or from a stranger.
    for i, f in enumerate(RFC4475[::2]):
        ctrl = MSG | (PHONE if i % 2 == 0 else STRANGER)
        out("proxy_core", "rfc4475_" + os.path.basename(f), bytes([ctrl]) + read(f))


def sdp_rtp_dtmf():
    sdps = {
        "offer_core": OFFER,
        "offer_sipp": "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n",
        "offer_pcma": "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 96\r\nc=IN IP4 10.0.0.2/127\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n",
        "offer_v6_video_first": "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=video 5000 RTP/AVP 31\r\nc=IN IP4 0.0.0.0\r\nm=audio 5002/2 RTP/SAVP 18 0\r\n",
        "offer_g729_only": "v=0\nc=IN IP4 1.2.3.4\nm=audio 6000 RTP/AVP 18\na=rtpmap:18 G729/8000\n",
    }
    for name, body in sdps.items():
        out("sdp_rtp_dtmf", name, body)
    for f in sorted(glob.glob(rel("tests", "**", "*.xml"), recursive=True)):
        text = read(f).decode("utf-8", "replace")
        m = re.search(r"(v=0[ \t]*\n(?:[ \t]*[a-z]=[^\n]*\n)+)", text)
        if m:
            body = "\r\n".join(l.strip() for l in m.group(1).splitlines() if l.strip()) + "\r\n"
            for k, v in (("[media_port]", "6000"), ("[media_ip_type]", "4"), ("[local_ip_type]", "4")):
                body = body.replace(k, v)
            body = re.sub(r"\[[a-z_]+\]", "127.0.0.1", body)
            out("sdp_rtp_dtmf", "sipp_" + os.path.basename(f).replace(".xml", ""), body)
    def packets(pkts):
        return b"".join(bytes([len(p)]) + p for p in pkts)
    out("sdp_rtp_dtmf", "rtp_events", packets([rtp_event(d, 1000 + 800 * i, end=(k == 2))
                                               for i, d in enumerate([1, 2, 3, 11]) for k in range(3)]))
    for cap in ["dtmf_2833_1.pcap", "dtmf_2833_pound.pcap"]:
        pl = [p for p in udp_payloads(rel("tests", "captures", cap), "udp") if len(p) < 256]
        out("sdp_rtp_dtmf", "rtp_" + cap.replace(".pcap", ""), packets(pl))
    out("sdp_rtp_dtmf", "rtp_padding_ext_csrc",
        packets([bytes([0xB1, 101, 0, 1, 0, 0, 0, 160, 0, 0, 0, 77, 0, 0, 0, 9, 0xBE, 0xDE, 0, 1, 1, 2, 3, 4, 5, 0x8A, 0, 160, 0, 0, 2])]))
    out("sdp_rtp_dtmf", "info_relay", "Signal=5\r\nDuration=160\r\n")
    out("sdp_rtp_dtmf", "info_relay_star", "signal = 10\r\n")
    out("sdp_rtp_dtmf", "info_dtmf_ct", "application/dtmf;x=1\n#\n")
    out("sdp_rtp_dtmf", "info_relay_ct", "application/dtmf-relay\nSignal=11\nDuration=100\n")


def digest():
    base = ('Digest username="{u}", realm="acme", nonce="{n}", uri="sip:0034612345678@127.0.0.1", '
            'response="{r}", algorithm={a}, cnonce="0a4f113b", qop=auth, nc={nc}')
    seeds = {
        "alice_md5": base.format(u="alice", n="@NONCE@", r="@RESPONSE@", a="MD5", nc="00000001"),
        "alice_sha256": base.format(u="alice", n="@NONCE@", r="@RESPONSE@", a="SHA-256", nc="00000002"),
        "bob_ha1_md5": base.format(u="bob", n="@NONCE@", r="@RESPONSE@", a="MD5", nc="0000000a"),
        "bob_ha1_sha256": base.format(u="bob", n="@NONCE@", r="@RESPONSE@", a="SHA-256", nc="1"),
        "forged_nonce": base.format(u="alice", n="3e8.00", r="@RESPONSE@", a="MD5", nc="00000001"),
        "wrong_response": base.format(u="alice", n="@NONCE@", r="0123", a="md5", nc="ffffffff"),
        "bad_nc": base.format(u="alice", n="@NONCE@", r="@RESPONSE@", a="MD5", nc="zz"),
        "unquoted_and_odd": 'digest   username=alice ,realm=acme,nonce=@NONCE@,response=@RESPONSE@,qop="auth",nc=+1,uri=x',
        "unknown_alg": base.format(u="alice", n="@NONCE@", r="@RESPONSE@", a="SHA-512-256", nc="00000001"),
        "rfc7616": ('Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
                    'algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", nc=00000001, '
                    'cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
                    'response="8ca523f5e9506fed4657c9700eebdbec", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'),
        "basic": "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
        "unterminated_quote": 'Digest username="alice, realm="acme',
    }
    for name, text in seeds.items():
        out("digest", name, text)
    # Authorization headers of a real REGISTER exchange.
    for i, p in enumerate(udp_payloads(rel("tests", "captures", "aaa.pcap"), "sip.Authorization")[:4]):
        for line in p.split(b"\r\n"):
            if line.lower().startswith(b"authorization:"):
                out("digest", f"aaa_{i}", line.split(b":", 1)[1].strip())


def pcap():
    caps = sorted(glob.glob(rel("tests", "captures", "*.pcap*")) + glob.glob(rel("pcaps", "*.pcap")))
    with tempfile.TemporaryDirectory() as tmp:
        for c in caps:
            name = os.path.basename(c)
            data = read(c)
            if len(data) >= LIMIT:
                # Keep the first packets only, so the seed stays small.
                cut = os.path.join(tmp, name)
                for n in (200, 100, 50, 25):
                    subprocess.run(["editcap", "-r", c, cut, f"1-{n}"], check=True, capture_output=True)
                    data = read(cut)
                    if len(data) < LIMIT:
                        break
                name = "head_" + name
            out("pcap", name, data)


def config():
    files = [rel("config", "sipscreen.toml"), rel("tests", "forwarding", "screening.toml"),
             rel("pcaps", "replay.toml"), rel("tests", "captures", "replay.toml")]
    for f in files:
        out("config", os.path.relpath(f, ROOT).replace("/", "_"), read(f))
    base = ('[server]\nlisten = ["udp:127.0.0.1:45060"]\nnext_hop = "udp:127.0.0.1:45070"\n\n'
            '[brand]\nname = "example"\n\n[[tenant]]\nname = "acme"\ncountry = "ES"\n')
    blocks = []
    for f in sorted(glob.glob(rel("tests", "*.rs"))):
        text = read(f).decode()
        for m in re.finditer(r'r#"(.*?)"#', text, re.S):
            b = m.group(1)
            if "=" not in b or "SIP/2.0" in b or "\n" not in b:
                continue
            if "[server]" not in b:
                b = base + b
            if b not in blocks:
                blocks.append(b)
    # Spread the picks over the whole list, up to 46 (50 with the files).
    keep = blocks if len(blocks) <= 46 else [blocks[i * len(blocks) // 46] for i in range(46)]
    for i, b in enumerate(keep):
        out("config", f"tests_{i:02}.toml", b)


def main():
    for tool in ("tshark", "editcap"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is needed (apt-get install tshark)")
    if os.path.isdir(SEEDS):
        shutil.rmtree(SEEDS)
    captured = sip_from_captures()
    sip_message(captured)
    stream_framing(captured)
    proxy_core()
    sdp_rtp_dtmf()
    digest()
    pcap()
    config()
    for t in sorted(os.listdir(SEEDS)):
        files = os.listdir(os.path.join(SEEDS, t))
        print(f"{t}: {len(files)} seeds")


if __name__ == "__main__":
    main()
