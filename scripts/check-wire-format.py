"""Runs the Python decoder printed in docs/wire-format.md (with python-blosc) on the
document's own test vectors: each container must decode to the message shown before it.
Usage: python check-wire-format.py docs/wire-format.md"""
import re
import sys

doc = open(sys.argv[1]).read()
decoder = re.search(r"```python\n(.*?)```", doc, re.S).group(1)
namespace = {}
exec(decoder, namespace)
blocks = [bytes.fromhex(b.replace("\n", " ")) for b in re.findall(r"```\n([0-9a-f \n]+?)```", doc)]
checked = 0
for message, container in zip(blocks, blocks[1:]):
    if container.startswith(b"BLCR") and not message.startswith(b"BLCR"):
        decoded = namespace["decode"](container)
        assert decoded == message, f"vector {checked + 1}: {decoded.hex()} != {message.hex()}"
        checked += 1
assert checked >= 3, f"only {checked} vectors found"
print(f"{checked} vectors decoded")
