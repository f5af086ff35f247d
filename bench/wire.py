"""The client wire protocol, as much of it as the benchmark scripts speak (see
wire/src/protocol/mod.rs): frames, Hello with the auth token, Shake, Heartbeat, and
reading a ShakeReply."""

import asyncio
import hashlib
import hmac
import struct

HELLO, SHAKE, HEARTBEAT, SHAKE_REPLY, ERROR = 0x01, 0x05, 0x03, 0x06, 0x7F


def frame(kind, body=b""):
    payload = bytes([1, kind]) + body
    return struct.pack(">I", len(payload)) + payload


def auth_token(user, key):
    mac = hmac.new(key, struct.pack(">I", 4) + b"auth" + struct.pack(">Q", user), hashlib.sha256)
    return mac.digest()[:16]


def hello(user, key):
    token = auth_token(user, key)
    return frame(HELLO, struct.pack(">QH", user, len(token)) + token)


def shake(cookie=b""):
    return frame(SHAKE, struct.pack(">H", len(cookie)) + cookie)


def heartbeat():
    return frame(HEARTBEAT)


def parse_shake_reply(payload):
    """(outcome tag, cookie) of a ShakeReply payload; None for any other frame."""
    if len(payload) < 3 or payload[1] != SHAKE_REPLY:
        return None
    tag, i = payload[2], 3
    if tag == 1:
        count = payload[i + 2]
        i += 3 + 4 * count
    elif tag == 2:
        (n,) = struct.unpack_from(">H", payload, i)
        i += 2 + n + 2 + 4
    i += 1 + 4
    (n,) = struct.unpack_from(">H", payload, i)
    return tag, payload[i + 2:i + 2 + n]


async def read_frame(reader):
    (n,) = struct.unpack(">I", await reader.readexactly(4))
    return await reader.readexactly(n)


async def login(addr, user, key):
    """A logged-in long connection of `user` to the gateway at HOST:PORT: (reader, writer)."""
    host, port = addr.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(hello(user, key))
    await read_frame(reader)
    return reader, writer
