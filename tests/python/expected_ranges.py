"""Writing a message and the tensor byte ranges bloscar's locator must report for it.

Format of `<case>.ranges`, one line per item:
    method <gRPC method path>          (one or more)
    direction request|response
    range <offset> <len> <elem_size> <dtype> <name>
Ranges are listed in offset order; `<case>.bin` holds the serialized message.
"""

import pathlib


def find_unique(message: bytes, payload: bytes) -> int:
    """Offset of `payload` in `message`; it must occur exactly once."""
    offset = message.find(payload)
    assert offset >= 0, "payload not found in the serialized message"
    assert message.find(payload, offset + 1) == -1, "payload occurs more than once"
    return offset


def packed_payload(field_message: bytes) -> bytes:
    """The payload of a message holding one length-delimited field (a 1-byte tag)."""
    length, shift, pos = 0, 0, 1
    while True:
        byte = field_message[pos]
        length |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if byte < 0x80:
            break
    payload = field_message[pos:]
    assert len(payload) == length
    return payload


class Case:
    """A serialized message and the ranges expected in it."""

    def __init__(self, name, methods, direction, message: bytes):
        self.name = name
        self.methods = methods
        self.direction = direction
        self.message = message
        self.ranges = []

    def expect(self, payload: bytes, elem_size: int, dtype: str, tensor: str):
        """Expects `payload`, found by its own bytes in the message."""
        if payload:
            offset = find_unique(self.message, payload)
            self.ranges.append((offset, len(payload), elem_size, dtype, tensor))

    def write(self, out_dir: pathlib.Path):
        (out_dir / f"{self.name}.bin").write_bytes(self.message)
        lines = [f"method {m}" for m in self.methods]
        lines.append(f"direction {self.direction}")
        for offset, length, elem_size, dtype, tensor in sorted(self.ranges):
            lines.append(f"range {offset} {length} {elem_size} {dtype} {tensor}")
        (out_dir / f"{self.name}.ranges").write_text("\n".join(lines) + "\n")
