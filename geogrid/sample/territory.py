"""Synthetic territory: a fine Voronoi mesh grouped into towns, villages and groups.

Every polygon the generator writes is a union of cells of one Voronoi mesh (a jittered
lattice of seeds, built from :class:`scipy.spatial.Delaunay`). Neighbouring cells share
vertices by index, so unions of disjoint cell sets tile each other *exactly*: the
villages tile the town and the group polygons tile their village, with no slivers.
Regions are grown over the cell graph with a multi-source Dijkstra on noisy edge
weights, which gives irregular but connected shapes.

All coordinates here are metres in the construction CRS (EPSG:4547, CGCS2000 3-degree
Gauss-Kruger, central meridian 114 E).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import shapely
from scipy import sparse
from scipy.sparse import csgraph
from scipy.spatial import Delaunay, cKDTree

__all__ = ["OUTSIDE", "WATER", "Mesh", "build_mesh", "grow_regions"]

#: Label of cells outside every region.
OUTSIDE = -1
#: Label of reservoir cells (a hole in the village and the town).
WATER = -2


@dataclass
class Mesh:
    """A Voronoi mesh: seeds, cells (as Voronoi-vertex index lists) and the cell graph.

    The Voronoi diagram is built from the Delaunay triangulation: vertex ``t`` is the
    circumcentre of triangle ``t``, computed once, so neighbouring cells share vertices
    exactly.
    """

    xy: np.ndarray  # (n, 2) seed coordinates
    finite: np.ndarray  # (n,) bool: the cell is bounded (seed not on the convex hull)
    ei: np.ndarray  # (m,) edge endpoints, i < j, both finite
    ej: np.ndarray
    elen: np.ndarray  # (m,) length of the shared Voronoi edge (metres)
    vertices: np.ndarray  # Voronoi vertices (circumcentres)
    reg_ptr: np.ndarray  # (n + 1,) offsets into reg_idx
    reg_idx: np.ndarray  # Voronoi vertex indices of each cell, counter-clockwise
    tree: cKDTree
    adj_ptr: np.ndarray  # CSR adjacency (both directions) built from ei/ej
    adj_idx: np.ndarray

    @property
    def n(self) -> int:
        return int(self.xy.shape[0])

    def polygons(self, cells: np.ndarray) -> np.ndarray:
        """Shapely polygons of the given (finite) cells."""
        cells = np.asarray(cells, dtype=np.int64)
        start = self.reg_ptr[cells]
        lengths = self.reg_ptr[cells + 1] - start
        owner = np.repeat(np.arange(cells.size), lengths)
        offset = np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        vxy = self.vertices[self.reg_idx[np.repeat(start, lengths) + offset]]
        rings = shapely.linearrings(vxy, indices=owner)
        return np.asarray(shapely.polygons(rings))

    def union(self, cells: np.ndarray) -> shapely.Geometry:
        """Exact union of a set of cells (a coverage union: shared edges dissolve)."""
        return shapely.coverage_union_all(self.polygons(cells))

    def subgraph(self, keep_edge: np.ndarray, weights: np.ndarray) -> sparse.csr_matrix:
        """Symmetric sparse graph over all cells with only the kept edges."""
        i, j, w = self.ei[keep_edge], self.ej[keep_edge], weights[keep_edge]
        g = sparse.coo_matrix(
            (np.concatenate([w, w]), (np.concatenate([i, j]), np.concatenate([j, i]))),
            shape=(self.n, self.n),
        )
        return g.tocsr()


def _circumcentres(p: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    a, b, c = p[simplices[:, 0]], p[simplices[:, 1]], p[simplices[:, 2]]
    bx, by = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
    cx, cy = c[:, 0] - a[:, 0], c[:, 1] - a[:, 1]
    d = 2.0 * (bx * cy - by * cx)
    b2, c2 = bx * bx + by * by, cx * cx + cy * cy
    ux = (cy * b2 - by * c2) / d
    uy = (bx * c2 - cx * b2) / d
    return np.column_stack([a[:, 0] + ux, a[:, 1] + uy])


def build_mesh(
    rng: np.random.Generator, center: tuple[float, float], half_size: float, spacing: float
) -> Mesh:
    """Jittered-lattice Voronoi mesh covering a square of side ``2 * half_size``."""
    k = int(np.ceil(2 * half_size / spacing)) + 1
    ax = np.arange(k, dtype=float) * spacing - half_size
    gx, gy = np.meshgrid(ax, ax)
    gx = gx + (np.arange(k)[:, None] % 2) * spacing / 2  # staggered rows: near-hexagonal
    local = np.column_stack([gx.ravel(), gy.ravel()])
    local = local + rng.uniform(-0.38, 0.38, local.shape) * spacing
    n = local.shape[0]
    tri = Delaunay(local)
    simp = tri.simplices
    # circumcentres in local coordinates (better conditioned), then shifted
    vertices = _circumcentres(local, simp) + np.asarray(center)
    finite = np.ones(n, bool)
    finite[np.unique(tri.convex_hull)] = False
    # cells: incident triangles sorted by angle around the seed
    owner = simp.ravel()
    tri_of = np.repeat(np.arange(simp.shape[0]), 3)
    rel = vertices[tri_of] - (local[owner] + np.asarray(center))
    angle = np.arctan2(rel[:, 1], rel[:, 0])
    order = np.lexsort((angle, owner))
    reg_idx = tri_of[order]
    reg_ptr = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))])
    # edges: each pair of adjacent triangles gives one Voronoi edge between two seeds
    nb = tri.neighbors
    t_idx, k_idx = np.nonzero(nb > np.arange(simp.shape[0])[:, None])
    t2 = nb[t_idx, k_idx]
    p = simp[t_idx, (k_idx + 1) % 3]
    q = simp[t_idx, (k_idx + 2) % 3]
    elen = np.hypot(*(vertices[t_idx] - vertices[t2]).T)
    ok = finite[p] & finite[q] & (elen > 1e-6)
    ei = np.minimum(p, q)[ok]
    ej = np.maximum(p, q)[ok]
    elen = elen[ok]
    order = np.lexsort((ej, ei))
    xy = local + np.asarray(center)
    ei, ej, elen = ei[order], ej[order], elen[order]
    src = np.concatenate([ei, ej])
    dst = np.concatenate([ej, ei])
    by_src = np.lexsort((dst, src))
    adj_ptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    return Mesh(
        xy=xy,
        finite=finite,
        ei=ei,
        ej=ej,
        elen=elen,
        vertices=vertices,
        reg_ptr=reg_ptr,
        reg_idx=reg_idx,
        tree=cKDTree(xy),
        adj_ptr=adj_ptr,
        adj_idx=dst[by_src],
    )


def smooth_field(
    rng: np.random.Generator, xy: np.ndarray, wavelengths: tuple[float, float] = (1500, 6000)
) -> np.ndarray:
    """A smooth random field (sum of plane waves) with zero mean and unit variance."""
    n_waves = 8
    lam = rng.uniform(*wavelengths, n_waves)
    theta = rng.uniform(0, np.pi, n_waves)
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    kx = np.cos(theta) * 2 * np.pi / lam
    ky = np.sin(theta) * 2 * np.pi / lam
    f = np.sin(xy[:, :1] * kx + xy[:, 1:2] * ky + phase).sum(axis=1)
    return np.asarray(f / np.sqrt(n_waves / 2))


def noisy_weights(rng: np.random.Generator, mesh: Mesh, strength: float = 0.9) -> np.ndarray:
    """Edge weights: seed distance scaled by a smooth field and per-edge jitter."""
    mid = (mesh.xy[mesh.ei] + mesh.xy[mesh.ej]) / 2
    dist = np.hypot(*(mesh.xy[mesh.ei] - mesh.xy[mesh.ej]).T)
    f = smooth_field(rng, mid, (900.0, 4000.0))
    return np.asarray(dist * np.exp(strength * f) * rng.lognormal(0.0, 0.35, dist.size))


def grow_regions(graph: sparse.csr_matrix, sources: np.ndarray) -> np.ndarray:
    """Label every node with the index of its nearest source (-1 when unreachable).

    Multi-source Dijkstra: each region is connected (a node's shortest-path predecessor
    has the same nearest source).
    """
    if len(sources) == 0:
        return np.full(graph.shape[0], OUTSIDE, dtype=np.int64)
    _, _, src = csgraph.dijkstra(
        graph, directed=False, indices=np.asarray(sources), min_only=True, return_predecessors=True
    )
    lookup = np.full(graph.shape[0], OUTSIDE, dtype=np.int64)
    lookup[np.asarray(sources)] = np.arange(len(sources))
    out = np.full(graph.shape[0], OUTSIDE, dtype=np.int64)
    reach = src >= 0
    out[reach] = lookup[src[reach]]
    return out


def lloyd_regions(
    mesh: Mesh,
    graph: sparse.csr_matrix,
    members: np.ndarray,
    sources: np.ndarray,
    iterations: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Grow regions from ``sources``, then re-seed at region centroids a few times."""
    labels = grow_regions(graph, sources)
    for _ in range(iterations):
        new_sources = []
        for k in range(len(sources)):
            cells = np.flatnonzero((labels == k) & members)
            if cells.size == 0:
                new_sources.append(sources[k])
                continue
            c = mesh.xy[cells].mean(axis=0)
            new_sources.append(cells[np.argmin(np.hypot(*(mesh.xy[cells] - c).T))])
        sources = np.asarray(new_sources)
        labels = grow_regions(graph, sources)
    return labels, sources


def _grow_with_offsets(
    graph: sparse.csr_matrix, sources: np.ndarray, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest source with an additive head start per source (a graph power diagram)."""
    n = graph.shape[0]
    k = len(sources)
    extra = sparse.coo_matrix(
        (offsets + 1e-6, (np.full(k, n), np.asarray(sources))), shape=(n + 1, n + 1)
    )
    big = sparse.bmat([[graph, None], [None, sparse.csr_matrix((1, 1))]], format="csr") + extra
    dist, pred = csgraph.dijkstra(big, directed=True, indices=n, return_predecessors=True)
    parent = pred[:n].astype(np.int64)
    parent[np.asarray(sources)] = np.asarray(sources)
    unreached = parent < 0
    parent[unreached] = np.flatnonzero(unreached)
    for _ in range(64):
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    lookup = np.full(n, OUTSIDE, dtype=np.int64)
    lookup[np.asarray(sources)] = np.arange(k)
    labels = lookup[parent]
    labels[unreached] = OUTSIDE
    return labels, np.asarray(dist[:n])


def balanced_regions(
    graph: sparse.csr_matrix,
    sources: np.ndarray,
    targets: np.ndarray,
    iterations: int = 12,
) -> np.ndarray:
    """Grow connected regions from ``sources`` with cell counts close to ``targets``.

    Each source gets a head start (an additive offset) that is raised when its region is
    too big and lowered when too small; regions stay connected (shortest-path trees).
    """
    offsets = np.zeros(len(sources))
    targets = np.asarray(targets, dtype=float)
    labels, dist = _grow_with_offsets(graph, sources, offsets)
    reach = labels >= 0
    radius = float(np.median(dist[reach])) if reach.any() else 1.0
    best = labels
    best_err = np.inf
    for _ in range(iterations):
        sizes = np.bincount(labels[labels >= 0], minlength=len(sources)).astype(float)
        err = float(np.abs(np.log(np.maximum(sizes, 1) / targets)).max())
        if err < best_err:
            best, best_err = labels, err
        if err < 0.08:
            break
        offsets = offsets + 0.5 * radius * np.log(np.maximum(sizes, 1) / targets)
        offsets -= offsets.min()
        labels, _ = _grow_with_offsets(graph, sources, offsets)
    return best


def spread_sources(
    rng: np.random.Generator, xy: np.ndarray, cells: np.ndarray, k: int
) -> np.ndarray:
    """Pick ``k`` well-spread cells (randomised farthest-point sampling)."""
    pts = xy[cells]
    chosen = [int(rng.integers(cells.size))]
    d = np.hypot(*(pts - pts[chosen[0]]).T)
    for _ in range(1, k):
        # sample among the 5% farthest to keep it random but spread
        cand = np.flatnonzero(d >= np.quantile(d, 0.95))
        nxt = int(cand[rng.integers(cand.size)])
        chosen.append(nxt)
        d = np.minimum(d, np.hypot(*(pts - pts[nxt]).T))
    return np.asarray(cells[chosen])


def neighbours_of(mesh: Mesh, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (position in ``cells``, neighbour cell id) pairs, from the CSR adjacency."""
    cells = np.asarray(cells, dtype=np.int64)
    start = mesh.adj_ptr[cells]
    lengths = mesh.adj_ptr[cells + 1] - start
    owner = np.repeat(np.arange(cells.size), lengths)
    offset = np.arange(owner.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return owner, mesh.adj_idx[np.repeat(start, lengths) + offset]


def local_graph(
    mesh: Mesh, cells: np.ndarray, rng: np.random.Generator | None = None
) -> sparse.csr_matrix:
    """Graph among sorted ``cells`` only (local indices); unit or random weights."""
    owner, nbr = neighbours_of(mesh, cells)
    pos = np.clip(np.searchsorted(cells, nbr), 0, max(cells.size - 1, 0))
    ok = cells[pos] == nbr if cells.size else np.zeros(0, bool)
    w = np.ones(int(ok.sum())) if rng is None else rng.uniform(1.0, 1.6, int(ok.sum()))
    return sparse.csr_matrix((w, (owner[ok], pos[ok])), shape=(cells.size, cells.size))


def components(mesh: Mesh, cells: np.ndarray) -> list[np.ndarray]:
    """Connected components (largest first) of the cells, as sorted cell-id arrays."""
    cells = np.unique(np.asarray(cells, dtype=np.int64))
    if cells.size == 0:
        return []
    _, lab = csgraph.connected_components(local_graph(mesh, cells), directed=False)
    comps = [cells[lab == k] for k in range(lab.max() + 1)]
    comps.sort(key=lambda c: (-c.size, int(c.min())))
    return comps


def hop_depth(mesh: Mesh, cells: np.ndarray, border: np.ndarray) -> np.ndarray:
    """Hop distance of each (sorted) cell from the ``border`` subset, same order."""
    idx = np.flatnonzero(np.isin(cells, border))
    if idx.size == 0:
        return np.full(cells.size, np.inf)
    d = csgraph.dijkstra(local_graph(mesh, cells), directed=False, indices=idx, min_only=True)
    return np.asarray(d)


def grow_groups(
    rng: np.random.Generator,
    xy: np.ndarray,
    cells: np.ndarray,
    neighbours: dict[int, list[int]],
    households: np.ndarray,
    targets: list[int],
    *,
    presets: tuple[tuple[int, int], ...] = (),
    cap: int = 90,
    minimum: int = 15,
) -> dict[int, int]:
    """Partition a village's cells into connected groups of roughly the target sizes.

    Groups listed in ``presets`` (start cell, household target) grow first; the others
    grow one at a time from the unassigned household cell farthest from the
    village centre, taking the nearest unassigned cells (Euclidean distance to the start)
    until the household target is met; a normal group stops before exceeding ``cap``.
    Empty leftovers join the nearest group through the cell graph; groups smaller than
    ``minimum`` are merged into their smallest neighbour.

    Returns a mapping cell -> group index (0-based, in growth order, compacted).
    """
    hh = dict(zip(cells.tolist(), households.tolist(), strict=True))
    centre = xy[cells].mean(axis=0)
    far = np.hypot(*(xy[cells] - centre).T)
    by_far = cells[np.argsort(-far, kind="stable")].tolist()
    group: dict[int, int] = {}

    def grow(g: int, start: int, target: int, limit: int) -> None:
        total = 0
        sxy = xy[start]
        heap: list[tuple[float, int]] = [(0.0, start)]
        seen = {start}
        while heap:
            _, c = heapq.heappop(heap)
            if total >= minimum and total + hh[c] > limit:
                break
            group[c] = g
            total += hh[c]
            if total >= target:
                break
            for nb in neighbours[c]:
                if nb not in group and nb not in seen:
                    seen.add(nb)
                    dx, dy = xy[nb] - sxy
                    heapq.heappush(heap, (float(dx * dx + dy * dy), nb))

    g = 0
    for start, target in presets:
        if start not in group:
            grow(g, start, target, target + 40)
            g += 1
    t_iter = iter(targets)
    while True:
        nxt = next((c for c in by_far if c not in group and hh[c] > 0), None)
        if nxt is None:
            break
        start = nxt
        target = next(t_iter, int(rng.integers(30, 70)))
        grow(g, start, target, max(cap, target + 20))
        g += 1
    # empty leftovers: breadth-first from the assigned cells (keeps groups connected)
    frontier = [c for c in cells.tolist() if c in group]
    while frontier:
        nxt = []
        for c in frontier:
            for nb in neighbours[c]:
                if nb not in group:
                    group[nb] = group[c]
                    nxt.append(nb)
        frontier = nxt
    # merge tiny groups into their smallest neighbour
    stuck: set[int] = set()
    while True:
        sizes: dict[int, int] = {}
        for c, k in group.items():
            sizes[k] = sizes.get(k, 0) + hh[c]
        small = sorted((s, k) for k, s in sizes.items() if s < minimum and k not in stuck)
        if not small or len(sizes) == 1:
            break
        _, k = small[0]
        members = [c for c, kk in group.items() if kk == k]
        adj = sorted({group[nb] for c in members for nb in neighbours[c] if nb in group} - {k})
        if not adj:
            stuck.add(k)  # an isolated part (e.g. a village exclave): keep it
            continue
        dest = min(adj, key=lambda a: (sizes[a], a))
        for c in members:
            group[c] = dest
    remap = {k: i for i, k in enumerate(sorted(set(group.values())))}
    return {c: remap[k] for c, k in group.items()}
