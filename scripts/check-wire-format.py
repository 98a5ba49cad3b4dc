"""Runs the Python decoders printed in docs/wire-format.md (with python-blosc) on the
document's own test vectors: each version-1 container must decode to the message shown
before it, and each version-2 run (a ```run block) to the ```message block before it.
Usage: python check-wire-format.py docs/wire-format.md"""
import re
import struct
import sys
import zlib

import blosc

doc = open(sys.argv[1]).read()
namespace = {"struct": struct, "zlib": zlib, "blosc": blosc}
for decoder in re.findall(r"```python\n(.*?)```", doc, re.S):
    exec(decoder, namespace)


def unhex(block):
    return bytes.fromhex(block.replace("\n", " "))


blocks = [unhex(b) for b in re.findall(r"```\n([0-9a-f \n]+?)```", doc)]
checked = 0
for message, container in zip(blocks, blocks[1:]):
    if container.startswith(b"BLCR") and not message.startswith(b"BLCR"):
        decoded = namespace["decode"](container)
        assert decoded == message, f"vector {checked + 1}: {decoded.hex()} != {message.hex()}"
        checked += 1
assert checked >= 3, f"only {checked} version-1 vectors found"

messages = [unhex(b) for b in re.findall(r"```message\n([0-9a-f \n]*?)```", doc)]
runs = [unhex(b) for b in re.findall(r"```run\n([0-9a-f \n]+?)```", doc)]
assert len(messages) == len(runs) >= 2, f"{len(messages)} messages for {len(runs)} runs"
for message, run in zip(messages, runs):
    decoded = namespace["decode_stream"](run)
    assert decoded == [message], f"run {run[:32].hex()}...: {decoded} != [{message.hex()}]"
    # The same run twice on one stream gives the message twice.
    assert namespace["decode_stream"](run + run) == [message, message]
    checked += 1
print(f"{checked} vectors decoded")
