"""A union-find over unit labels, the joining tool of every grouping step."""

from __future__ import annotations


class UnionFind:
    """Union-find over unit labels; `join(host, guest)` keeps the host's root."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, item: int) -> int:
        root = item
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[item] != root:
            self.parent[item], item = root, self.parent[item]
        return root

    def join(self, host: int, guest: int) -> None:
        a, b = self.find(host), self.find(guest)
        if a != b:
            self.parent[b] = a
