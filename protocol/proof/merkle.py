"""A Merkle tree over the commitment's leaves (SHA-256, with domain-separated leaves and nodes, as
in RFC 6962), padded to a power of two with a fixed empty leaf."""

import hashlib

HASH_BYTES = 32
EMPTY = hashlib.sha256(b"gpuproof/1 empty leaf").digest()


def leaf_hash(index: int, data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + index.to_bytes(8, "big") + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def depth(leaf_count: int) -> int:
    """How many siblings a path has."""
    return max(0, (leaf_count - 1).bit_length())


class MerkleTree:
    def __init__(self, leaves: list[bytes]) -> None:
        if not leaves:
            raise ValueError("a tree needs a leaf")
        width = 1 << depth(len(leaves))
        level = [*leaves, *([EMPTY] * (width - len(leaves)))]
        self.levels = [level]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
            self.levels.append(level)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def path(self, index: int) -> list[bytes]:
        """The siblings from leaf ``index`` up to the root."""
        siblings = []
        for level in self.levels[:-1]:
            siblings.append(level[index ^ 1])
            index //= 2
        return siblings


def root_from_path(leaf: bytes, index: int, path: list[bytes]) -> bytes:
    node = leaf
    for sibling in path:
        node = node_hash(sibling, node) if index & 1 else node_hash(node, sibling)
        index //= 2
    return node
