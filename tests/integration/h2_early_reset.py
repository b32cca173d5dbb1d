#!/usr/bin/env python3
"""One gRPC call sent the way gRPC C++ sends a call it cancelled at once
(grpc/grpc#19655): a RST_STREAM for a stream whose HEADERS never went out,
then another call on the same connection. Frames are written by hand here,
so the bytes are exactly these, whatever any HTTP/2 library would do.

Prints "answered" when the call's trailers come back, or "goaway CODE" if the
server ended the connection instead; exits 0 either way (the caller judges).
  h2_early_reset.py HOST PORT CA_FILE PATH
"""
import socket
import ssl
import struct
import sys


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    # HPACK literal header field without indexing, new name, no Huffman.
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def main():
    host, port, ca, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection((host, port), timeout=5)
    tls = ctx.wrap_socket(raw)
    if tls.selected_alpn_protocol() != "h2":
        print("no h2")
        return
    block = b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", path),
        (b":authority", b"ca"), (b"content-type", b"application/grpc"), (b"te", b"trailers")])
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(0x4, 0, 0)
    out += frame(0x3, 0, 5, struct.pack(">I", 8))   # RST_STREAM(CANCEL) for stream 5: never opened
    out += frame(0x1, 0x4, 1, block)                 # HEADERS, END_HEADERS, stream 1
    out += frame(0x0, 0x1, 1, b"\x00\x00\x00\x00\x00")  # one empty message, END_STREAM
    tls.sendall(out)

    buf = b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = tls.recv(65536)
            if not chunk:
                print("closed")
                return
            buf += chunk
        length = int.from_bytes(buf[:3], "big")
        ftype, flags = buf[3], buf[4]
        stream = int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        payload, buf = buf[9:9 + length], buf[9 + length:]
        if ftype == 0x7:
            print("goaway", int.from_bytes(payload[4:8], "big"))
            return
        if ftype == 0x4 and not flags & 0x1:
            tls.sendall(frame(0x4, 0x1, 0))  # SETTINGS ACK
        if ftype == 0x1 and stream == 1 and flags & 0x1:
            print("answered")
            return


main()
