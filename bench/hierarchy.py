"""Class hierarchies (trees of class names) and the lowest-common-ancestor distances of METHODS §7.

A hierarchy is read from an edge list ("parent child" per line, e.g. WordNet ids) or from a nested mapping
({"animal": {"cat": {}, "dog": ["beagle", "pug"]}}). Its leaves are the classes; sorted, they are the
standard logit order of ImageNet-1k (classifiers index their 1000 outputs by sorted WordNet id).

The mistake severity of predicting class b for class a is the *height of their lowest common ancestor*
(Bertinetto et al. 2020, "Making Better Mistakes"): the tree's height (its deepest leaf's depth) minus the
depth of the LCA, and 0 when a = b. When every leaf lies at the same depth this is the usual height of the
LCA node; it is also exactly what the authors' released ImageNet and tieredImageNet distance tables hold
for every pair of classes (docs/severity.md). Distances between all leaves come from one matrix product
over precomputed ancestor sets, so 1000 classes take milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

IMAGENET_CLASSES = 1000


class HierarchyError(ValueError):
    """A hierarchy that is not a tree (two parents, a cycle, several roots) or a file that cannot be read."""


class Hierarchy:
    """A rooted tree of class names; leaves are classes, in sorted-name order unless told otherwise."""

    def __init__(self, edges: Iterable[tuple[str, str]], source: str = "hierarchy"):
        self.source = source
        parent_of: dict[str, str] = {}
        children: dict[str, list[str]] = {}
        for parent, child in edges:
            if parent == child:
                raise HierarchyError(f"{source}: node {child!r} is its own parent")
            known = parent_of.get(child)
            if known is not None and known != parent:
                raise HierarchyError(
                    f"{source}: {child!r} has two parents ({known!r} and {parent!r}); "
                    "a hierarchy must be a tree"
                )
            if known is None:
                parent_of[child] = parent
                children.setdefault(parent, []).append(child)
        nodes = sorted(set(parent_of) | set(children))
        if not nodes:
            raise HierarchyError(f"{source}: no edges")
        roots = [node for node in nodes if node not in parent_of]
        if len(roots) != 1:
            shown = ", ".join(roots[:5]) if roots else "none (every node has a parent: a cycle)"
            raise HierarchyError(f"{source}: a tree has one root, found {len(roots)}: {shown}")
        self.root = roots[0]
        self.nodes: tuple[str, ...] = tuple(nodes)
        self._index = {node: i for i, node in enumerate(nodes)}
        self._parent_of = parent_of
        self._children = {parent: tuple(sorted(kids)) for parent, kids in children.items()}
        self.depth = self._depths()
        self.leaves: tuple[str, ...] = tuple(node for node in nodes if node not in children)
        self._leaf_index = {leaf: i for i, leaf in enumerate(self.leaves)}
        self.height = max(self.depth[self._index[leaf]] for leaf in self.leaves)

    def _depths(self) -> np.ndarray:
        """Depth of every node (root 0), walking down from the root; nodes not reached lie on a cycle."""
        depth = np.full(len(self.nodes), -1, dtype=np.int64)
        depth[self._index[self.root]] = 0
        frontier = [self.root]
        while frontier:
            following = []
            for node in frontier:
                for child in self._children.get(node, ()):
                    depth[self._index[child]] = depth[self._index[node]] + 1
                    following.append(child)
            frontier = following
        if (depth < 0).any():
            cut = [self.nodes[i] for i in np.flatnonzero(depth < 0)[:5]]
            raise HierarchyError(
                f"{self.source}: nodes not reachable from root {self.root!r} (a cycle): {cut}"
            )
        return depth

    # -- reading ------------------------------------------------------------------------------------------

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str]], source: str = "edges") -> Hierarchy:
        """A hierarchy from (parent, child) pairs."""
        return cls(edges, source)

    @classmethod
    def from_mapping(cls, tree: Mapping[str, Any], source: str = "mapping") -> Hierarchy:
        """A hierarchy from a nested mapping with one top-level key (the root).

        A node's children are a mapping (name → its children), a list of names (leaves, or one-key
        mappings), or empty/None for a leaf.
        """
        if not isinstance(tree, Mapping) or len(tree) != 1:
            raise HierarchyError(f"{source}: a nested hierarchy has exactly one top-level key (the root)")
        edges: list[tuple[str, str]] = []

        def walk(parent: str, below: Any) -> None:
            if below is None:
                return
            if isinstance(below, Mapping):
                items = list(below.items())
            elif isinstance(below, (list, tuple)):
                items = []
                for entry in below:
                    if isinstance(entry, Mapping):
                        items.extend(entry.items())
                    else:
                        items.append((entry, None))
            else:
                raise HierarchyError(
                    f"{source}: children of {parent!r} must be a mapping, a list or empty, "
                    f"got {type(below).__name__}"
                )
            for child, grandchildren in items:
                edges.append((parent, str(child)))
                walk(str(child), grandchildren)

        (root, below), *_ = tree.items()
        walk(str(root), below)
        return cls(edges, source)

    @classmethod
    def load(cls, path: str | Path) -> Hierarchy:
        """Read an edge-list text file ("parent child" per line; '#' comments) or a nested-mapping .json."""
        location = Path(path).expanduser()
        if not location.is_file():
            raise FileNotFoundError(f"hierarchy file not found: {location}")
        if location.suffix.lower() == ".json":
            try:
                tree = json.loads(location.read_text(encoding="utf-8"))
            except json.JSONDecodeError as error:
                raise HierarchyError(f"{location} is not valid JSON: {error}") from error
            return cls.from_mapping(tree, source=str(location))
        return cls(_read_edge_lines(location), source=str(location))

    # -- structure ----------------------------------------------------------------------------------------

    def parent(self, node: str) -> str | None:
        """The parent of `node` (None for the root)."""
        self._check(node)
        return self._parent_of.get(node)

    def children(self, node: str) -> tuple[str, ...]:
        """The children of `node`, sorted (empty for a leaf)."""
        self._check(node)
        return self._children.get(node, ())

    def ancestors(self, node: str) -> list[str]:
        """`node`, its parent, …, the root."""
        self._check(node)
        path = [node]
        while path[-1] in self._parent_of:
            path.append(self._parent_of[path[-1]])
        return path

    def lca(self, first: str, second: str) -> str:
        """The lowest common ancestor of two nodes."""
        mine = set(self.ancestors(first))
        return next(node for node in self.ancestors(second) if node in mine)

    def distance(self, first: str, second: str) -> int:
        """LCA height of two nodes: the tree height minus the depth of their LCA (0 for a node and itself)."""
        if first == second:
            self._check(first)
            return 0
        return int(self.height - self.depth[self._index[self.lca(first, second)]])

    def is_leaf(self, node: str) -> bool:
        """True when `node` is a class (a leaf) of this hierarchy."""
        return node in self._leaf_index

    def leaf_index(self, leaf: str) -> int:
        """Position of `leaf` in the sorted leaf order (the logit index of an ImageNet-style classifier)."""
        try:
            return self._leaf_index[leaf]
        except KeyError:
            what = "an inner node, not a class" if leaf in self._index else "not in the hierarchy"
            raise HierarchyError(f"{leaf!r} is {what} ({self.source})") from None

    @cached_property
    def _leaf_ancestor_matrix(self) -> np.ndarray:
        """(leaves × nodes) 0/1 matrix: which nodes are ancestors (or the leaf itself) of each leaf."""
        matrix = np.zeros((len(self.leaves), len(self.nodes)), dtype=np.float64)
        for row, leaf in enumerate(self.leaves):
            matrix[row, [self._index[node] for node in self.ancestors(leaf)]] = 1.0
        return matrix

    def leaf_distances(self, order: Sequence[str] | None = None) -> np.ndarray:
        """(L, L) int matrix of LCA heights between leaves, in `order` (default: the sorted leaves).

        In a tree the common ancestors of two leaves are the path from the root to their LCA, so their
        count is depth(LCA) + 1: one product of the leaf-ancestor matrix with itself gives every LCA depth.
        """
        matrix = self._leaf_ancestor_matrix
        if order is not None:
            matrix = matrix[[self.leaf_index(leaf) for leaf in order]]
        shared = np.rint(matrix @ matrix.T).astype(np.int64)
        distances = self.height - (shared - 1)
        np.fill_diagonal(distances, 0)
        return distances

    def nearest_leaves(self, leaf: str, k: int, distances: np.ndarray | None = None) -> np.ndarray:
        """Indices (sorted leaf order) of the k leaves nearest to `leaf`, itself excluded; ties by index."""
        matrix = self.leaf_distances() if distances is None else distances
        return nearest_classes(matrix, self.leaf_index(leaf), k)

    def describe(self) -> str:
        """One line: source, number of nodes and classes, height."""
        return f"{self.source}: {len(self.nodes)} nodes, {len(self.leaves)} classes, height {self.height}"

    def _check(self, node: str) -> None:
        if node not in self._index:
            raise HierarchyError(f"{node!r} is not in the hierarchy ({self.source})")


def _read_edge_lines(path: Path) -> list[tuple[str, str]]:
    edges = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        if len(fields) != 2:
            raise HierarchyError(f"{path}:{number}: expected 'parent child', got {line.strip()!r}")
        edges.append((fields[0], fields[1]))
    return edges


def nearest_classes(distances: np.ndarray, index: int, k: int) -> np.ndarray:
    """The k classes nearest to class `index` in a distance matrix, itself excluded; ties by index."""
    if not 1 <= k < len(distances):
        raise ValueError(f"k must lie in 1 … {len(distances) - 1}, got {k}")
    row = np.asarray(distances[index], dtype=np.float64).copy()
    row[index] = np.inf
    return np.argsort(row, kind="stable")[:k]


def imagenet_leaf_order(hierarchy: Hierarchy) -> tuple[str, ...]:
    """The ImageNet-1k logit order (sorted WordNet ids) of a 1000-class hierarchy."""
    if len(hierarchy.leaves) != IMAGENET_CLASSES:
        raise HierarchyError(
            f"{hierarchy.source} has {len(hierarchy.leaves)} classes; the ImageNet-1k order needs "
            f"{IMAGENET_CLASSES}"
        )
    return hierarchy.leaves
