"""Signs ocean-node compute requests with PyPI's eth-account, independently of c2d's own signing code.

usage: ocean_node_sign.py address KEY
       ocean_node_sign.py sign KEY CONSUMER NONCE COMMAND [bytes|text]

`sign` prints EIP-191 personal_sign of keccak256(CONSUMER + NONCE + COMMAND): over the hash's 32 raw bytes
(`bytes`, what ocean.js does) or over its "0x…" hex text (`text`); ocean-node accepts both.
"""
import sys

from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak


def main(argv):
    if argv[1] == "address":
        print(Account.from_key(argv[2]).address)
        return
    key, consumer, nonce, command = argv[2:6]
    form = argv[6] if len(argv) > 6 else "bytes"
    digest = keccak(text=consumer + nonce + command)
    message = encode_defunct(primitive=digest) if form == "bytes" else encode_defunct(text="0x" + digest.hex())
    print("0x" + Account.sign_message(message, key).signature.hex().removeprefix("0x"))


if __name__ == "__main__":
    main(sys.argv)
