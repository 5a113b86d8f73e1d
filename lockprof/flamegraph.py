"""A flame graph of folded stacks, with the frames that acquire a lock coloured by lock and mode.

Renderer only: which frames acquire which lock comes from :func:`lockprof.stacks.classify`.
For a stack it classifies, the frame that names the lock and every frame above it (the
mutex, the futex wait) are lock frames; everything nearer the root is ordinary code and is
drawn in pale neutral tones, so the eye goes to the coloured tops. Identical prefixes are
merged into one box (the usual flame-graph tree), siblings are sorted by name as in
flamegraph.pl, labels appear only where they fit, and very deep stacks keep their root and
leaf ends with an elision box in between, so the lock frames at the leaf are never cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from lockprof.stacks import classify, split

# (lock, mode) -> legend label and colour; mode None matches any mode of that lock.
CATEGORIES: list[tuple[str, str | None, str, str]] = [
    ("parts", "exclusive", "parts mutex, exclusive", "#d62728"),
    ("parts", "shared", "parts mutex, shared", "#ff9f1c"),
    ("parts", None, "parts mutex", "#ff9f1c"),
    ("table_rwlock", "exclusive", "table RWLock, exclusive", "#6a3d9a"),
    ("table_rwlock", None, "table RWLock, shared", "#b394d6"),
    ("context", None, "Context mutex", "#1f9fb4"),
    ("global_thread_pool", None, "thread pool mutex", "#2ca02c"),
    ("local_thread_pool", None, "thread pool mutex", "#2ca02c"),
    ("other_mutex", None, "other mutex", "#8c564b"),
]
LOCK_COLORS = {label: color for _, _, label, color in CATEGORIES}
# Ordinary frames: pale, alternating by name so neighbours stay distinguishable.
PLAIN_COLORS = ("#e9e4d8", "#ddd6c6", "#efe9dc", "#d8d2c4")
ELIDED = "…"
TRACE_ORDER = ("Real", "CPU", "ProfileEvent")


def category(lock: str, mode: str) -> str:
    """The legend label of a lock and mode."""
    for name, want, label, _ in CATEGORIES:
        if name == lock and (want is None or want == mode):
            return label
    return "other mutex"


@dataclass
class Node:
    frame: str
    depth: int
    path: str = ""  # root..this frame, ';'-joined: the box's id in the figure
    weight: float = 0.0
    lock_weight: dict[str, float] = field(default_factory=dict)  # category -> weight passing here as a lock frame
    children: dict[str, Node] = field(default_factory=dict)

    @property
    def category(self) -> str | None:
        """The lock this box belongs to: the category holding at least half its weight as lock frames."""
        if not self.lock_weight:
            return None
        name, weight = max(self.lock_weight.items(), key=lambda kv: kv[1])
        return name if weight >= 0.5 * self.weight else None


def _trim(frames: list[str], lock_index: int | None, max_depth: int) -> tuple[list[str], int | None]:
    """At most ``max_depth`` frames: the root end, an elision box, and the leaf end (where the locks are)."""
    if len(frames) <= max_depth:
        return frames, lock_index
    head = max_depth // 3
    tail = max_depth - head - 1
    cut = len(frames) - tail
    if lock_index is not None:
        lock_index = head + 1 + (lock_index - cut) if lock_index >= cut else max(head + 1, 0)
    return frames[:head] + [ELIDED] + frames[cut:], lock_index


def build_tree(stacks: pd.DataFrame, weight: str = "samples", max_depth: int = 32) -> Node:
    """Merge the folded stacks into one prefix tree, marking lock frames per :func:`lockprof.stacks.classify`."""
    root = Node("all", -1)
    grouped = stacks.groupby("stack", sort=False)[weight].sum() if not stacks.empty else pd.Series(dtype=float)
    for stack, value in grouped.items():
        value = float(value)
        if value <= 0:
            continue
        frames = split(stack)
        site = classify(frames)
        lock_index = None
        label = None
        if site is not None:
            label = category(site.lock, site.mode)
            # The owner frame nearest the leaf is the one classify() matched.
            lock_index = max(i for i, f in enumerate(frames) if f == site.frame)
        frames, lock_index = _trim(frames, lock_index, max_depth)
        root.weight += value
        node = root
        for depth, frame in enumerate(frames):
            if frame not in node.children:
                node.children[frame] = Node(frame, depth, f"{node.path};{frame}" if node.path else frame)
            node = node.children[frame]
            node.weight += value
            if label is not None and lock_index is not None and depth >= lock_index:
                node.lock_weight[label] = node.lock_weight.get(label, 0.0) + value
    return root


_ARGS = re.compile(r"\[abi:[^\]]*\]")


def short_name(frame: str) -> str:
    """A frame without its argument list and ABI tags, for labels (the full name stays in the data)."""
    text = _ARGS.sub("", frame)
    if text.endswith(")") or text.endswith(") const"):
        depth = 0
        end = text.rfind(")")
        for i in range(end, -1, -1):
            depth += {")": 1, "(": -1}.get(text[i], 0)
            if depth == 0:
                text = text[:i]
                break
    return text.replace("std::__1::", "std::").strip() or frame


def _draw(ax, root: Node, title: str, min_label_fraction: float, chars_per_unit: float) -> set[str]:
    """Draw the tree root-at-bottom; return the lock categories drawn."""
    total = root.weight or 1.0
    used: set[str] = set()
    depth_max = 0
    stack: list[tuple[Node, float]] = []
    x = 0.0
    for child in sorted(root.children.values(), key=lambda n: n.frame):
        stack.append((child, x))
        x += child.weight / total
    plain = 0
    while stack:
        node, left = stack.pop()
        width = node.weight / total
        depth_max = max(depth_max, node.depth)
        cat = node.category
        if cat is not None:
            color = LOCK_COLORS[cat]
            used.add(cat)
        else:
            color = PLAIN_COLORS[plain % len(PLAIN_COLORS)]
            plain += 1
        rect = Rectangle((left, node.depth), width, 0.95, facecolor=color, edgecolor="white", linewidth=0.3)
        rect.set_gid(node.path)
        ax.add_patch(rect)
        if width >= min_label_fraction:
            room = int(width * chars_per_unit)
            name = short_name(node.frame)
            if room >= 4:
                text = name if len(name) <= room else name[: room - 1] + "…"
                ax.text(left + 0.003, node.depth + 0.45, text, va="center", ha="left", fontsize=6.5, clip_on=True,
                        color="white" if cat and cat.endswith("exclusive") else "#222")
        x = left
        for child in sorted(node.children.values(), key=lambda n: n.frame):
            stack.append((child, x))
            x += child.weight / total
    ax.set_xlim(0, 1)
    ax.set_ylim(0, depth_max + 1)
    ax.set_yticks([])
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], labels=["0%", "25%", "50%", "75%", "100%"])
    ax.set_title(title, fontsize="small", loc="left")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return used


def flame_graph(stacks: pd.DataFrame, weight: str = "samples", max_depth: int = 32, by_trace_type: bool = True,
                width: float = 12.0, min_label_fraction: float = 0.04) -> Figure:
    """Folded stacks as a flame graph (root at the bottom), one panel per trace type, lock frames coloured.

    ``weight`` is the column that sizes the boxes (``samples``, or ``weight`` to size ProfileEvent samples by
    their increment). Boxes narrower than ``min_label_fraction`` of the panel get no label.
    """
    if by_trace_type and "trace_type" in stacks and not stacks.empty:
        present = list(stacks["trace_type"].astype(str).unique())
        types = [t for t in TRACE_ORDER if t in present] + sorted(t for t in present if t not in TRACE_ORDER)
        panels = [(t, stacks[stacks["trace_type"].astype(str) == t]) for t in types]
    else:
        panels = [("all samples", stacks)]
    trees = [(name, build_tree(frame, weight, max_depth)) for name, frame in panels]
    heights = [max(_depth(tree), 1) for _, tree in trees]
    fig = Figure(figsize=(width, min(0.2 * sum(heights) + 1.2 * len(trees) + 0.6, 40)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(trees), 1, squeeze=False, height_ratios=heights)[:, 0]
    used: set[str] = set()
    chars_per_unit = width * 72 / 6.5 / 0.62  # characters across a full-width panel at the label font size
    for ax, (name, tree) in zip(axes, trees):
        if tree.weight <= 0:
            ax.text(0.5, 0.5, "no stack samples", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        samples = f"{tree.weight:,.0f} {'samples' if weight == 'samples' else weight}"
        used |= _draw(ax, tree, f"{name}: {samples}, frames that acquire a lock in colour", min_label_fraction,
                      chars_per_unit)
    axes[-1].set_xlabel(f"share of {weight} (boxes merged by identical prefix, root at the bottom)")
    handles = [Patch(facecolor=LOCK_COLORS[c], label=c) for c in LOCK_COLORS if c in used]
    if handles:
        fig.legend(handles=handles, loc="outside upper right", fontsize="small", ncols=min(len(handles), 4))
    return fig


def _depth(node: Node) -> int:
    return max([node.depth + 1] + [_depth(c) for c in node.children.values()])


def waiting_locks(stacks: pd.DataFrame, weight: str = "samples") -> pd.DataFrame:
    """Lock-waiting samples (a blocking primitive on top) by lock and mode, heaviest first, with their share."""
    columns = ["lock", "mode", "category", weight, "share_of_waiting", "share_of_all", "frame"]
    if stacks.empty:
        return pd.DataFrame(columns=columns)
    sites = [classify(split(s)) for s in stacks["stack"]]
    rows = [
        {"lock": s.lock, "mode": s.mode, "category": category(s.lock, s.mode), weight: float(v), "frame": s.frame}
        for s, v in zip(sites, stacks[weight]) if s is not None and s.waiting
    ]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    out = (frame.groupby(["lock", "mode", "category"], as_index=False)
           .agg(**{weight: (weight, "sum"), "frame": ("frame", lambda f: f.value_counts().index[0])})
           .sort_values(weight, ascending=False, ignore_index=True))
    out["share_of_waiting"] = out[weight] / out[weight].sum()
    out["share_of_all"] = out[weight] / float(stacks[weight].sum())
    return out[columns]
