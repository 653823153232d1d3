"""Build the synthetic world: towns, villages, reservoir, exclave, settlements, groups.

The result (:class:`World`) is pure data in the construction CRS (metres); the register,
events and files are derived from it elsewhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from geogrid.sample import names as nm
from geogrid.sample.territory import (
    OUTSIDE,
    WATER,
    Mesh,
    balanced_regions,
    build_mesh,
    components,
    grow_groups,
    hop_depth,
    lloyd_regions,
    local_graph,
    neighbours_of,
    noisy_weights,
    smooth_field,
    spread_sources,
)

log = logging.getLogger(__name__)

#: Construction CRS: CGCS2000 / 3-degree Gauss-Kruger CM 114E (metres).
METRIC_CRS = 4547
#: Rough centre of the sample area (WGS84), hilly country south-east of Wuhan.
CENTRE_LONLAT = (114.30, 30.40)
#: Households must lie at least this far (metres) from their village boundary.
MARGIN_M = 8.0

Step = Callable[[str], None]


@dataclass(frozen=True)
class WorldParams:
    """Size parameters of a generated area (one town or a county of towns)."""

    villages_per_town: tuple[int, ...]
    households_per_town: tuple[int, ...]
    spacing: float = 70.0
    village_area_km2: float = 8.0
    county_code: str = "420117"
    county_name: str = "新洲区"
    first_town_no: int = 105


@dataclass
class Village:
    """One administrative village (村) or community (社区)."""

    index: int
    town: int
    code: str = ""
    name: str = ""
    is_community: bool = False
    n_households: int = 0
    cells: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    natural_names: list[str] = field(default_factory=list)
    natural_xy: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    natural_sizes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    n_groups: int = 0
    register_style: str = "plain"


@dataclass
class Town:
    """One town (镇)."""

    index: int
    code: str
    name: str
    villages: list[int]
    seat: int  # index of the seat village (a community)
    hole_village: int | None = None
    multipart_village: int | None = None
    n_households: int = 0
    big_group_villages: list[int] = field(default_factory=list)


@dataclass
class World:
    """Everything generated, in the construction CRS."""

    params: WorldParams
    mesh: Mesh
    cell_village: np.ndarray  # per cell: village index, OUTSIDE or WATER
    cell_town: np.ndarray  # per cell: town index or -1
    cell_group: np.ndarray  # per cell: group number (1-based) within its village, 0 if none
    towns: list[Town]
    villages: list[Village]
    # households (one row each)
    hh_xy: np.ndarray
    hh_village: np.ndarray
    hh_group: np.ndarray  # 1-based group number within the village
    hh_natural: np.ndarray  # index into the village's natural_names
    hh_arc: np.ndarray  # position along the settlement line (for ordering)


# --------------------------------------------------------------------------- geometry


def _centre_metric() -> tuple[float, float]:
    from pyproj import Transformer

    tr = Transformer.from_crs(4326, METRIC_CRS, always_xy=True)
    x, y = tr.transform(*CENTRE_LONLAT)
    return float(x), float(y)


def _blob(
    rng: np.random.Generator, mesh: Mesh, centre: np.ndarray, area: float, max_radius: float
) -> np.ndarray:
    """Cells of a connected, hole-free blob of roughly ``area`` square metres."""
    ks = np.arange(2, 7)
    amp = rng.uniform(0.03, 0.10, ks.size) / np.sqrt(ks / 2)
    phase = rng.uniform(0, 2 * np.pi, ks.size)
    radius = np.sqrt(area / np.pi / (1 + (amp**2).sum() / 2))
    rel = mesh.xy - centre
    theta = np.arctan2(rel[:, 1], rel[:, 0])
    r = np.hypot(rel[:, 0], rel[:, 1])
    wiggle = 1 + (amp[None, :] * np.cos(ks[None, :] * theta[:, None] + phase)).sum(axis=1)
    wiggle = wiggle + 0.04 * smooth_field(rng, mesh.xy, (800.0, 2500.0))
    inside = mesh.finite & (r < radius * wiggle) & (r < max_radius)
    comps = components(mesh, np.flatnonzero(inside))
    inside = np.zeros(mesh.n, bool)
    inside[comps[0]] = True
    # fill enclosed holes: complement components that do not reach far out
    out = np.flatnonzero(mesh.finite & ~inside)
    for comp in components(mesh, out):
        if np.hypot(*(mesh.xy[comp] - centre).T).max() < radius * 1.3:
            inside[comp] = True
    return inside


def _region_graph(mesh: Mesh, label: np.ndarray, weights: np.ndarray) -> sparse.csr_matrix:
    same = (label[mesh.ei] == label[mesh.ej]) & (label[mesh.ei] >= 0)
    return mesh.subgraph(same, weights)


def _neighbour_labels(mesh: Mesh, label: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Distinct labels of cells adjacent to ``cells`` (excluding ``cells`` themselves)."""
    _, nbr = neighbours_of(mesh, cells)
    nbr = nbr[~np.isin(nbr, cells)]
    return np.unique(label[nbr])


def _adjacent_to(
    mesh: Mesh, label: np.ndarray, cells: np.ndarray, target: set[int], *, invert: bool = False
) -> np.ndarray:
    """Subset of ``cells`` with a neighbour whose label is (or, inverted, is not) in ``target``."""
    owner, nbr = neighbours_of(mesh, cells)
    hit = np.isin(label[nbr], list(target))
    if invert:
        hit = ~hit
    return np.asarray(cells[np.unique(owner[hit])])


def _make_exclave(
    rng: np.random.Generator, mesh: Mesh, label: np.ndarray, town_villages: list[int], seat: int
) -> tuple[int, int] | None:
    """Cut a village in two with a strip of a neighbour's land. Returns (split, cutter)."""
    order = [v for v in town_villages if v != seat]
    rng.shuffle(order)
    for a in order:
        cells_a = np.flatnonzero(label == a)
        nbs = [int(b) for b in _neighbour_labels(mesh, label, cells_a) if b >= 0 and b != seat]
        if not nbs or cells_a.size < 200:
            continue
        b = nbs[int(rng.integers(len(nbs)))]
        g = local_graph(mesh, cells_a)
        border_b = _adjacent_to(mesh, label, cells_a, {b})
        if border_b.size == 0:
            continue
        centre = mesh.xy[cells_a].mean(axis=0)
        start = int(border_b[np.argmin(np.hypot(*(mesh.xy[border_b] - centre).T))])
        far_side = _adjacent_to(mesh, label, cells_a, {a, b}, invert=True)
        if far_side.size == 0:
            continue
        s_loc = int(np.searchsorted(cells_a, start))
        dist, pred = csgraph.dijkstra(g, directed=False, indices=s_loc, return_predecessors=True)
        f_loc = np.searchsorted(cells_a, far_side)
        cand = f_loc[np.isfinite(dist[f_loc])]
        if cand.size == 0:
            continue
        cand = rng.permutation(cand)[:40]
        g_coo = g.tocoo()
        best: tuple[float, np.ndarray] | None = None
        for end in cand:
            path = [int(end)]
            while path[-1] != s_loc:
                path.append(int(pred[path[-1]]))
            # widen the strip to ~3 cells
            wide = np.zeros(cells_a.size, bool)
            wide[path] = True
            wide[g_coo.col[wide[g_coo.row]]] = True
            rest = cells_a[~wide]
            comps = components(mesh, rest)
            if len(comps) < 2:
                continue
            big = [c for c in comps if c.size >= 0.05 * cells_a.size]
            if len(big) != 2:
                continue
            score = min(big[0].size, big[1].size) / cells_a.size
            if score >= 0.15 and (best is None or score > best[0]):
                crumbs = [c for c in comps if c.size < 0.05 * cells_a.size]
                best = (score, np.concatenate([cells_a[wide], *crumbs]))
        if best is None:
            continue
        label[best[1]] = b
        return a, b
    return None


def _make_reservoir(
    rng: np.random.Generator, mesh: Mesh, label: np.ndarray, candidates: list[int]
) -> int | None:
    """Flood a blob deep inside one village (a hole in the village and in the town)."""
    best: tuple[float, int, np.ndarray, np.ndarray] | None = None
    for v in candidates:
        cells = np.flatnonzero(label == v)
        border = _adjacent_to(mesh, label, cells, {v}, invert=True)
        depth = hop_depth(mesh, cells, border)
        d = float(depth[np.isfinite(depth)].max())
        if best is None or d > best[0]:
            best = (d, v, cells, depth)
    if best is None or best[0] < 5:
        return None
    d, v, cells, depth = best
    centre = int(np.argmax(np.where(np.isfinite(depth), depth, -1)))
    g = local_graph(mesh, cells, rng)
    dist = csgraph.dijkstra(g, directed=False, indices=centre, limit=min(4.0, d - 2.5))
    water = cells[np.isfinite(dist) & (depth >= 2)]
    label[water] = WATER
    # anything the reservoir enclosed joins it, so the village stays one piece
    for c in components(mesh, np.flatnonzero(label == v))[1:]:
        if c.size < 0.05 * cells.size:
            label[c] = WATER
    return v


# --------------------------------------------------------------------------- settlement


def locate(world_mesh: Mesh, label: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell label of each point and its distance to the nearest differently-labelled cell.

    The distance is exact for the boundary edges between the point's cell and its eight
    nearest seeds (the perpendicular bisectors), which is all that matters at our scale.
    """
    d, idx = world_mesh.tree.query(xy, k=8)
    lab = label[idx]
    own = lab[:, 0]
    s0 = world_mesh.xy[idx[:, 0]]
    margin = np.full(len(xy), np.inf)
    for j in range(1, idx.shape[1]):
        other = lab[:, j] != own
        sep = np.hypot(*(world_mesh.xy[idx[:, j]] - s0).T)
        dist = (d[:, j] ** 2 - d[:, 0] ** 2) / (2 * np.maximum(sep, 1e-9))
        margin = np.where(other, np.minimum(margin, dist), margin)
    bad = ~world_mesh.finite[idx[:, 0]]
    return np.where(bad, OUTSIDE, own), np.where(bad, 0.0, np.minimum(margin, 1e9))


def _valley(
    rng: np.random.Generator, mesh: Mesh, label: np.ndarray, v: int, start: np.ndarray
) -> np.ndarray:
    """A meandering polyline through ``start`` that stays inside village ``v``."""
    step = 40.0
    n = int(rng.integers(25, 70))
    heading = rng.uniform(0, 2 * np.pi)
    halves = []
    for sign in (1.0, -1.0):
        turn = np.cumsum(rng.normal(0, 0.12, n))
        ang = heading + (0 if sign > 0 else np.pi) + turn
        pts = start + np.cumsum(np.column_stack([np.cos(ang), np.sin(ang)]) * step, axis=0)
        lab, margin = locate(mesh, label, pts)
        bad = (lab != v) | (margin < 40)
        stop = int(np.argmax(bad)) if bad.any() else n
        halves.append(pts[:stop])
    line = np.vstack([halves[1][::-1], start[None, :], halves[0]])
    if len(line) < 3:  # squeezed against the boundary: a short lane
        d = np.array([np.cos(heading), np.sin(heading)]) * 15.0
        line = np.vstack([start - d, start, start + d])
    return line


def _sample_along(
    rng: np.random.Generator, line: np.ndarray, s0: float, spread: float, n: int, width: float
) -> tuple[np.ndarray, np.ndarray]:
    """Points scattered along a polyline around arc position ``s0``; returns (xy, arc)."""
    seg = np.diff(line, axis=0)
    seglen = np.hypot(seg[:, 0], seg[:, 1])
    arc = np.concatenate([[0.0], np.cumsum(seglen)])
    s = np.clip(s0 + rng.normal(0, spread, n), 0, arc[-1])
    x = np.interp(s, arc, line[:, 0])
    y = np.interp(s, arc, line[:, 1])
    k = np.clip(np.searchsorted(arc, s) - 1, 0, len(seg) - 1)
    tx, ty = seg[k, 0] / seglen[k], seg[k, 1] / seglen[k]
    off = rng.normal(0, width, n)
    scatter = rng.random(n) < 0.08
    off = np.where(scatter, rng.normal(0, width * 5, n), off)
    return np.column_stack([x - ty * off, y + tx * off]), s


def _split_integer(rng: np.random.Generator, total: int, weights: np.ndarray) -> np.ndarray:
    """Split ``total`` into integers proportional to ``weights`` (largest remainder)."""
    w = np.asarray(weights, float) / np.sum(weights)
    raw = w * total
    out = np.floor(raw).astype(np.int64)
    rest = total - int(out.sum())
    if rest > 0:
        frac = raw - out + rng.uniform(0, 1e-9, raw.size)
        out[np.argsort(-frac, kind="stable")[:rest]] += 1
    return out


# --------------------------------------------------------------------------- main builder


def build_world(rng: np.random.Generator, params: WorldParams, step: Step | None = None) -> World:
    """Generate towns, villages, settlements and groups.

    Parameters
    ----------
    rng
        The only source of randomness.
    params
        Sizes: villages and households per town, mesh spacing.
    step
        Optional callback receiving a short description of each stage.
    """
    say = step or (lambda _msg: None)
    n_towns = len(params.villages_per_town)
    n_villages = int(sum(params.villages_per_town))
    area = n_villages * params.village_area_km2 * 1e6 * rng.uniform(0.9, 1.1)
    centre = np.asarray(_centre_metric())
    half = np.sqrt(area / np.pi) * 1.35 + 6 * params.spacing

    say("building the cell mesh")
    mesh = build_mesh(rng, (float(centre[0]), float(centre[1])), float(half), params.spacing)
    inside = _blob(rng, mesh, centre, area, float(half - 4 * params.spacing))
    weights = noisy_weights(rng, mesh)

    # towns
    say("drawing town and village boundaries")
    active = np.flatnonzero(inside)
    if n_towns == 1:
        town_of = np.where(inside, 0, -1)
    else:
        g = _region_graph(mesh, np.where(inside, 0, -1), weights)
        src = spread_sources(rng, mesh.xy, active, n_towns)
        _, src = lloyd_regions(mesh, g, inside, src, iterations=2)
        want = np.asarray(params.villages_per_town, float)
        want = rng.permutation(want) / want.sum() * active.size
        lab = balanced_regions(g, src, want)
        town_of = np.where(inside, lab, -1)
        # order towns north-west to south-east, match sizes to village counts
    town_sizes = np.bincount(town_of[inside], minlength=n_towns)
    cen = np.array([mesh.xy[town_of == t].mean(axis=0) for t in range(n_towns)])
    t_order = np.lexsort((cen[:, 0], -np.round(cen[:, 1] / 5000)))
    remap = np.empty(n_towns, np.int64)
    remap[t_order] = np.arange(n_towns)
    town_of = np.where(town_of >= 0, remap[np.maximum(town_of, 0)], -1)
    town_sizes = town_sizes[t_order]
    # the biggest towns get the most villages
    vcounts = np.empty(n_towns, np.int64)
    hcounts = np.empty(n_towns, np.int64)
    by_size = np.argsort(-town_sizes, kind="stable")
    vc_sorted = np.sort(np.asarray(params.villages_per_town))[::-1]
    hc_sorted = np.sort(np.asarray(params.households_per_town))[::-1]
    vcounts[by_size] = vc_sorted
    hcounts[by_size] = hc_sorted

    # villages: grown inside each town
    g_town = _region_graph(mesh, town_of, weights)
    sources = np.concatenate(
        [
            spread_sources(rng, mesh.xy, np.flatnonzero(town_of == t), int(vcounts[t]))
            for t in range(n_towns)
        ]
    )
    _, sources = lloyd_regions(mesh, g_town, inside, sources, iterations=1)
    want = np.concatenate(
        [
            np.full(int(vcounts[t]), (town_of == t).sum() / vcounts[t])
            * rng.lognormal(0, 0.2, int(vcounts[t]))
            for t in range(n_towns)
        ]
    )
    label = balanced_regions(g_town, sources, want)
    label = np.where(inside, label, OUTSIDE)
    if (label[inside] < 0).any():  # unreachable pockets (should not happen)
        label[inside & (label < 0)] = OUTSIDE

    # village order inside each town: north-west first
    village_town = np.repeat(np.arange(n_towns), vcounts)
    vcen = np.array([mesh.xy[label == v].mean(axis=0) for v in range(n_villages)])
    order = np.lexsort((vcen[:, 0], -np.round(vcen[:, 1] / 1500), village_town))
    remap_v = np.empty(n_villages, np.int64)
    remap_v[order] = np.arange(n_villages)
    label = np.where(label >= 0, remap_v[np.maximum(label, 0)], label)
    vcen = vcen[order]

    towns: list[Town] = []
    town_names = [str(x) for x in rng.permutation(np.asarray(nm.TOWN_NAMES))[:n_towns]]
    start = 0
    say("adding the reservoir and the exclave")
    for t in range(n_towns):
        vs = list(range(start, start + int(vcounts[t])))
        start += int(vcounts[t])
        tc = mesh.xy[town_of == t].mean(axis=0)
        seat = vs[int(np.argmin(np.hypot(*(vcen[vs] - tc).T)))]
        town = Town(
            index=t,
            code=f"{params.county_code}{params.first_town_no + t:03d}000",
            name=f"{town_names[t]}镇",
            villages=vs,
            seat=seat,
            n_households=int(hcounts[t]),
        )
        split = _make_exclave(rng, mesh, label, vs, seat)
        if split is None:
            log.warning("town %s: could not make a two-part village", town.name)
        else:
            town.multipart_village = split[0]
        excluded = {seat} | (set(split) if split else set())
        town.hole_village = _make_reservoir(rng, mesh, label, [v for v in vs if v not in excluded])
        if town.hole_village is None:
            log.warning("town %s: no village deep enough for a reservoir", town.name)
        towns.append(town)
    cell_town = np.where(label >= 0, town_of, -1)

    villages = [Village(index=v, town=int(village_town[v])) for v in range(n_villages)]
    for v in villages:
        v.cells = np.flatnonzero(label == v.index)

    say("placing natural villages and households")
    hh = _settle(rng, mesh, label, towns, villages)

    say("forming villager groups")
    cell_group = _form_groups(rng, mesh, label, towns, villages, hh)
    hh_group = cell_group[mesh.tree.query(hh["xy"])[1]]

    _name_places(rng, towns, villages, params)
    return World(
        params=params,
        mesh=mesh,
        cell_village=label,
        cell_town=cell_town,
        cell_group=cell_group,
        towns=towns,
        villages=villages,
        hh_xy=hh["xy"],
        hh_village=hh["village"],
        hh_group=hh_group,
        hh_natural=hh["natural"],
        hh_arc=hh["arc"],
    )


def _settle(
    rng: np.random.Generator,
    mesh: Mesh,
    label: np.ndarray,
    towns: list[Town],
    villages: list[Village],
) -> dict[str, np.ndarray]:
    """Valleys, natural villages and household points for every village."""
    out_xy, out_v, out_nat, out_arc = [], [], [], []
    for town in towns:
        # households per village: by area, with the seat village denser
        vs = town.villages
        size = np.array([villages[v].cells.size for v in vs], float)
        w = size**0.7 * rng.lognormal(0, 0.25, len(vs))
        w[vs.index(town.seat)] *= 1.5
        mean = town.n_households / len(vs)
        for _ in range(5):
            share = w / w.sum() * town.n_households
            share = np.clip(share, 0.45 * mean, 1.6 * mean)
            w = share
        counts = _split_integer(rng, town.n_households, w)
        for v, n_v in zip(vs, counts, strict=True):
            log.debug("village %d: %d households planned", v, n_v)
            villages[v].n_households = int(n_v)
        n_big = int(rng.integers(2, 5))
        others = [v for v in vs if v not in (town.seat, town.multipart_village)]
        picks = rng.choice(others, n_big - 1, replace=False)
        town.big_group_villages = [town.seat, *sorted(int(x) for x in picks)]
        taken: list[str] = []
        for v in vs:
            xy, nat, arc, names, anchors, sizes = _settle_village(
                rng, mesh, label, villages[v], big=v in town.big_group_villages, taken=taken
            )
            taken.extend(names)
            vil = villages[v]
            vil.natural_names, vil.natural_xy, vil.natural_sizes = names, anchors, sizes
            vil.n_households = len(xy)
            out_xy.append(xy)
            out_v.append(np.full(len(xy), v))
            out_nat.append(nat)
            out_arc.append(arc)
        town.n_households = sum(villages[v].n_households for v in vs)
    return {
        "xy": np.vstack(out_xy),
        "village": np.concatenate(out_v).astype(np.int64),
        "natural": np.concatenate(out_nat).astype(np.int64),
        "arc": np.concatenate(out_arc),
    }


def _settle_village(
    rng: np.random.Generator,
    mesh: Mesh,
    label: np.ndarray,
    vil: Village,
    *,
    big: bool,
    taken: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]:
    v = vil.index
    comps = components(mesh, vil.cells)
    # valleys: one or more per component (bigger components get more)
    valleys: list[np.ndarray] = []
    valley_comp: list[int] = []
    for ci, comp in enumerate(comps):
        n_val = 1 if ci > 0 else int(1 + (comp.size > 1400) + (rng.random() < 0.5))
        _, margin = locate(mesh, label, mesh.xy[comp])
        deep = comp[margin >= np.quantile(margin, 0.5)] if comp.size > 10 else comp
        for _ in range(n_val):
            start = mesh.xy[deep[int(rng.integers(deep.size))]]
            valleys.append(_valley(rng, mesh, label, v, start))
            valley_comp.append(ci)
    lens = np.array([max(np.hypot(*np.diff(ln, axis=0).T).sum(), 1.0) for ln in valleys])
    # natural villages: anchors along valleys, at least one per component
    n_nat = int(np.clip(round(vil.n_households / 130) + rng.integers(0, 3), 3, 9))
    anchors: list[tuple[int, float]] = []
    for k in range(n_nat):
        if k < len(comps):
            li = valley_comp.index(k)
        else:
            li = int(rng.choice(len(valleys), p=lens / lens.sum()))
        s = float(rng.uniform(0.1, 0.9) * lens[li])
        anchors.append((li, s))
    sizes_w = rng.gamma(2.0, 1.0, n_nat) + 0.3
    if big:
        sizes_w[0] = sizes_w.sum() * 0.9  # the market town street
    elif rng.random() < 0.35:
        sizes_w[int(rng.integers(n_nat))] += sizes_w.sum() * 0.6
    # exclave natural villages stay small
    for k in range(1, min(len(comps), n_nat)):
        sizes_w[k] = min(sizes_w[k], 0.5)
    sizes = _split_integer(rng, vil.n_households, sizes_w)
    sizes = np.maximum(sizes, 12)
    xy_parts, nat_parts, arc_parts = [], [], []
    for k, ((li, s0), n_k) in enumerate(zip(anchors, sizes, strict=True)):
        line = valleys[li]
        spread = float(np.clip(np.sqrt(n_k) * 22.0, 60.0, 450.0))
        got: list[np.ndarray] = []
        got_arc: list[np.ndarray] = []
        have = 0
        width = 30.0
        centre = _point_at(line, s0)
        for attempt in range(16):
            m = int(n_k * 1.6) + 10
            if attempt < 8:
                cand, arc = _sample_along(rng, line, s0, spread, m, width)
            else:  # squeezed village: scatter around the hamlet instead
                cand = centre + rng.normal(0, spread * 0.15 * (attempt - 6), (m, 2))
                arc = np.full(m, s0)
            lab, margin = locate(mesh, label, cand)
            ok = (lab == v) & (margin >= MARGIN_M)
            got.append(cand[ok])
            got_arc.append(arc[ok] + 1e5 * li)
            have += int(ok.sum())
            if have >= n_k:
                break
            width *= 1.3
        pts = np.vstack(got)[:n_k]
        xy_parts.append(pts)
        nat_parts.append(np.full(len(pts), k))
        arc_parts.append(np.concatenate(got_arc)[:n_k])
    xy = np.vstack(xy_parts)
    # drop near-duplicates (two households on one 2 m spot)
    key = np.round(xy / 2.0).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    keep = np.sort(first)
    names = nm.place_names(rng, n_nat, taken=taken)
    anchor_xy = np.array([_point_at(valleys[li], s) for li, s in anchors])
    nat = np.concatenate(nat_parts)[keep]
    counts = np.bincount(nat, minlength=n_nat)
    return xy[keep], nat, np.concatenate(arc_parts)[keep], names, anchor_xy, counts


def _point_at(line: np.ndarray, s: float) -> np.ndarray:
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(line, axis=0).T))])
    return np.array([np.interp(s, arc, line[:, 0]), np.interp(s, arc, line[:, 1])])


def _form_groups(
    rng: np.random.Generator,
    mesh: Mesh,
    label: np.ndarray,
    towns: list[Town],
    villages: list[Village],
    hh: dict[str, np.ndarray],
) -> np.ndarray:
    """Villager groups as connected unions of cells; returns 1-based group per cell."""
    cell_of_hh = mesh.tree.query(hh["xy"])[1]
    per_cell = np.bincount(cell_of_hh, minlength=mesh.n)
    cell_group = np.zeros(mesh.n, np.int64)
    same = label[mesh.ei] == label[mesh.ej]
    ei, ej = mesh.ei[same], mesh.ej[same]
    order = np.argsort(label[ei], kind="stable")
    ei, ej = ei[order], ej[order]
    bounds = np.searchsorted(label[ei], np.arange(len(villages) + 1))
    for town in towns:
        big_villages = town.big_group_villages
        for v in town.villages:
            vil = villages[v]
            a, b = bounds[v], bounds[v + 1]
            neighbours: dict[int, list[int]] = {int(c): [] for c in vil.cells}
            for i, j in zip(ei[a:b].tolist(), ej[a:b].tolist(), strict=True):
                neighbours[i].append(j)
                neighbours[j].append(i)
            targets = [int(min(18 + rng.gamma(3.0, 9.0), 85)) for _ in range(400)]
            presets: tuple[tuple[int, int], ...] = ()
            if v in big_villages:
                # the biggest natural village hosts the big group(s)
                k = int(np.argmax(vil.natural_sizes))
                members = hh["village"] == v
                nat_cells = cell_of_hh[members & (hh["natural"] == k)]
                dense = np.bincount(nat_cells).argmax()
                presets = ((int(dense), int(rng.integers(215, 260))),)
            mapping = grow_groups(
                rng, mesh.xy, vil.cells, neighbours, per_cell[vil.cells], targets, presets=presets
            )
            missing = [int(c) for c in vil.cells if int(c) not in mapping]
            if missing:  # a part without households: attach to the nearest group
                known = np.array(sorted(mapping))
                near = known[
                    np.argmin(
                        np.hypot(*(mesh.xy[missing][:, None, :] - mesh.xy[known][None, :, :]).T).T,
                        axis=1,
                    )
                ]
                for c, k2 in zip(missing, near, strict=True):
                    mapping[c] = mapping[int(k2)]
            # number groups by position: north-west first
            cells = np.array(sorted(mapping))
            gids = np.array([mapping[int(c)] for c in cells])
            n_g = int(gids.max()) + 1
            gx = np.array([mesh.xy[cells[gids == k]].mean(axis=0) for k in range(n_g)])
            gorder = np.lexsort((gx[:, 0], -np.round(gx[:, 1] / 700)))
            rank = np.empty(n_g, np.int64)
            rank[gorder] = np.arange(1, n_g + 1)
            cell_group[cells] = rank[gids]
            vil.n_groups = n_g
    return cell_group


def _name_places(
    rng: np.random.Generator, towns: list[Town], villages: list[Village], params: WorldParams
) -> None:
    """Codes and names: communities 001.., villages 201.. in geographic order."""
    for town in towns:
        generic = [str(x) for x in rng.permutation(np.asarray(nm.VILLAGE_NAMES))]
        stem = town.name[:-1]
        communities = [town.seat]
        if rng.random() < 0.5:
            special = (town.seat, town.multipart_village, town.hole_village)
            others = [v for v in town.villages if v not in special]
            communities.append(others[int(rng.integers(len(others)))])
        used: set[str] = set()
        n_vil = 0
        for v in town.villages:
            vil = villages[v]
            prefix = town.code[:9]
            if v in communities:
                n_comm = communities.index(v) + 1
                vil.is_community = True
                vil.code = f"{prefix}{n_comm:03d}"
                base = stem if n_comm == 1 else ("新街" if "新街" not in used else generic.pop())
                name = f"{base}社区"
            else:
                n_vil += 1
                vil.code = f"{prefix}{200 + n_vil:03d}"
                if rng.random() < 0.5 and vil.natural_names:
                    k = int(np.argmax(vil.natural_sizes))
                    name = f"{vil.natural_names[k]}村"
                else:
                    name = f"{generic.pop()}村"
                while name in used:
                    name = f"{generic.pop()}村"
            used.add(name)
            vil.name = name
            vil.register_style = "year" if rng.random() < 0.35 else "plain"
