#!/usr/bin/env python3
"""An Oblivious HTTP client (RFC 9458) written apart from the project: HPKE
from PyPI's `pyhpke`, the response AEAD and HKDF from `cryptography`,
Binary HTTP (RFC 9292) and the key configuration (RFC 9458 section 3) coded
here from the RFCs. It fetches the gateway's keys through a Signpost relay,
sends one LoST findService through it, and prints the decapsulated answer
as one JSON line: {"status", "content_type", "body", "key_id", "aead"}.

Run by resolver/tests/oblivious.rs; it needs `pip install pyhpke`.
"""

import argparse
import json
import os
import socket
import ssl
import struct
import sys

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

LOST_CT = "application/lost+xml"


def varint(n):
    """RFC 9000 section 16 variable-length integer."""
    if n < 0x40:
        return bytes([n])
    if n < 0x4000:
        return struct.pack(">H", 0x4000 | n)
    if n < 0x40000000:
        return struct.pack(">I", 0x80000000 | n)
    return struct.pack(">Q", 0xC000000000000000 | n)


def read_varint(b, i):
    first = b[i]
    length = 1 << (first >> 6)
    v = first & 0x3F
    for k in range(1, length):
        v = (v << 8) | b[i + k]
    return v, i + length


def vec(b):
    return varint(len(b)) + b


def read_vec(b, i):
    n, i = read_varint(b, i)
    if i + n > len(b):
        raise ValueError("binary HTTP: truncated")
    return b[i:i + n], i + n


def bhttp_request(method, authority, path, content_type, body):
    """A known-length request (RFC 9292 section 3)."""
    out = varint(0)
    for part in (method, "https", authority, path):
        out += vec(part.encode())
    fields = vec(b"content-type") + vec(content_type.encode())
    out += vec(fields)
    out += vec(body)
    out += varint(0)  # no trailers
    return out


def bhttp_response(b):
    framing, i = read_varint(b, 0)
    if framing != 1:
        raise ValueError("binary HTTP: expected a known-length response, framing %d" % framing)
    while True:
        status, i = read_varint(b, i)
        fields, i = read_vec(b, i)
        if status >= 200:
            break
    headers = {}
    j = 0
    while j < len(fields):
        name, j = read_vec(fields, j)
        value, j = read_vec(fields, j)
        headers[name.decode().lower()] = value.decode()
    content, i = read_vec(b, i)
    return status, headers, content


def parse_key_configs(b):
    """application/ohttp-keys (RFC 9540 section 3): length-prefixed configs."""
    configs = []
    i = 0
    while i < len(b):
        (n,) = struct.unpack(">H", b[i:i + 2])
        c = b[i + 2:i + 2 + n]
        i += 2 + n
        key_id = c[0]
        (kem,) = struct.unpack(">H", c[1:3])
        if kem != 0x0020:
            continue
        pk = c[3:35]
        (sl,) = struct.unpack(">H", c[35:37])
        suites = [struct.unpack(">HH", c[37 + k:41 + k]) for k in range(0, sl, 4)]
        configs.append((key_id, kem, pk, suites))
    if not configs:
        raise ValueError("no usable X25519 key configuration")
    return configs


def hkdf_extract(salt, ikm):
    h = hmac.HMAC(salt, hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def hkdf_expand(prk, info, length):
    out, t, k = b"", b"", 1
    while len(out) < length:
        h = hmac.HMAC(prk, hashes.SHA256())
        h.update(t + info + bytes([k]))
        t = h.finalize()
        out += t
        k += 1
    return out[:length]


def https(args, method, path, content_type, body):
    """One HTTP/1.1 exchange over mutual TLS; the certificate is checked
    against --relay-name while the socket goes to --relay (loopback)."""
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    host, port = args.relay.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=args.relay_name) as s:
            head = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nContent-Length: %d\r\n" % (method, path, args.relay_name, len(body))
            if content_type:
                head += "Content-Type: %s\r\n" % content_type
            s.sendall(head.encode() + b"\r\n" + body)
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        rest = rest[:int(headers["content-length"])]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        body, i = b"", 0
        while True:
            j = rest.index(b"\r\n", i)
            n = int(rest[i:j], 16)
            if n == 0:
                break
            body += rest[j + 2:j + 2 + n]
            i = j + 2 + n + 2
        rest = body
    return status, headers, rest


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--relay", required=True, help="host:port of the relay")
    p.add_argument("--relay-name", required=True, help="the relay's certificate name")
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--csi", required=True, help="e.g. tel:+4915112345678")
    p.add_argument("--aead", choices=["aes128gcm", "chacha20poly1305"], default="aes128gcm")
    args = p.parse_args()

    status, headers, keys = https(args, "GET", "/relay/keys", None, b"")
    if status != 200 or not headers.get("content-type", "").startswith("application/ohttp-keys"):
        sys.exit("key configuration: HTTP %d %r" % (status, headers.get("content-type")))
    key_id, kem, pk, suites = parse_key_configs(keys)[0]
    aead_id = 0x0001 if args.aead == "aes128gcm" else 0x0003
    if (0x0001, aead_id) not in suites:
        sys.exit("the gateway does not offer %s" % args.aead)

    lost = ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<findService xmlns="urn:ietf:params:xml:ns:lost1" xmlns:sp="urn:signpost:params:xml:ns:disc1" recursive="true">'
            '<location id="l1" profile="sp-csi"><sp:csi>%s</sp:csi></location>'
            '<service>urn:service:mimi</service></findService>' % args.csi)
    request = bhttp_request("POST", "resolver", "/lost", LOST_CT, lost.encode())

    suite = CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256,
                            AEADId.AES128_GCM if aead_id == 1 else AEADId.CHACHA20_POLY1305)
    header = bytes([key_id]) + struct.pack(">HHH", kem, 0x0001, aead_id)
    info = b"message/bhttp request" + b"\x00" + header
    enc, sender = suite.create_sender_context(suite.kem.deserialize_public_key(pk), info=info)
    encapsulated = header + enc + sender.seal(request, aad=b"")

    status, headers, answer = https(args, "POST", "/relay", "message/ohttp-req", encapsulated)
    if status != 200 or not headers.get("content-type", "").startswith("message/ohttp-res"):
        sys.exit("relay: HTTP %d %r %r" % (status, headers.get("content-type"), answer[:300]))

    nk = 16 if aead_id == 1 else 32
    secret = sender.export(b"message/bhttp response", nk)
    nonce, ct = answer[:nk], answer[nk:]
    prk = hkdf_extract(enc + nonce, secret)
    key = hkdf_expand(prk, b"key", nk)
    iv = hkdf_expand(prk, b"nonce", 12)
    cipher = AESGCM(key) if aead_id == 1 else ChaCha20Poly1305(key)
    inner = cipher.decrypt(iv, ct, b"")
    status, headers, content = bhttp_response(inner)
    print(json.dumps({"status": status, "content_type": headers.get("content-type", ""),
                      "body": content.decode(), "key_id": key_id, "aead": args.aead}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
