"""The flame graph: lock frames (per lockprof.stacks' classification) drawn in their lock's colour and no
other frame."""

from __future__ import annotations

import pandas as pd
import pytest
from matplotlib.colors import to_hex
from stack_cases import CASES, stack_frame

from lockprof.flamegraph import LOCK_COLORS, PLAIN_COLORS, build_tree, flame_graph, short_name, waiting_locks
from lockprof.report import stacks_sentence

EXPECTED_COLOR = {
    "prefix_exclusive_std_mutex": LOCK_COLORS["parts mutex, exclusive"],
    "postfix_shared": LOCK_COLORS["parts mutex, shared"],
    "rwlock_write": LOCK_COLORS["table RWLock, exclusive"],
    "rwlock_read": LOCK_COLORS["table RWLock, shared"],
    "context_shared": LOCK_COLORS["Context mutex"],
    "global_thread_pool_schedule": LOCK_COLORS["thread pool mutex"],
}


def _boxes(fig) -> list[tuple[str, str]]:
    """(path root..frame, colour) of every box drawn."""
    return [(p.get_gid(), to_hex(p.get_facecolor())) for ax in fig.axes for p in ax.patches if p.get_gid()]


def _lock_boxes(frames: list[str]) -> set[str]:
    """The boxes (as paths) from the frame that names the lock to the leaf."""
    from lockprof.stacks import classify

    site = classify(frames)
    start = max(i for i, f in enumerate(frames) if f == site.frame)
    return {";".join(frames[:i + 1]) for i in range(start, len(frames))}


@pytest.mark.parametrize("name", sorted(EXPECTED_COLOR))
def test_lock_frames_take_their_lock_colour_and_other_frames_stay_plain(name: str) -> None:
    frames = CASES[name][0]
    fig = flame_graph(stack_frame({name: 5}, {"reading": 5, "idle_pool_worker": 3}))
    lock = _lock_boxes(frames)
    boxes = _boxes(fig)
    colored = {path for path, color in boxes if color in LOCK_COLORS.values()}
    assert colored == lock
    assert {color for path, color in boxes if path in lock} == {EXPECTED_COLOR[name]}
    plain = {to_hex(c) for c in PLAIN_COLORS}
    # the idle pool worker's condition-variable wait is not a lock: its boxes stay plain
    assert all(color in plain for path, color in boxes if path not in lock)
    assert any(path.endswith("pthread_cond_wait") and color in plain for path, color in boxes)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [c for c, v in LOCK_COLORS.items() if v == EXPECTED_COLOR[name]][0] in legend


def test_identical_prefixes_merge_into_one_box_and_deep_stacks_keep_their_lock_frames() -> None:
    stacks = stack_frame({"prefix_exclusive_std_mutex": 6, "postfix_shared": 2}, {"reading": 2})
    root = build_tree(stacks)
    assert list(root.children) == ["start_thread"] and root.children["start_thread"].weight == 10
    # 200 filler frames between the query and the lock: trimmed in the middle, the lock end kept.
    frames = CASES["prefix_exclusive_std_mutex"][0]
    deep = frames[:3] + [f"DB::f{i}()" for i in range(200)] + frames[3:]
    tree = build_tree(pd.DataFrame({"stack": [";".join(deep)], "samples": [1]}), max_depth=20)
    node, path = tree, []
    while node.children:
        node = next(iter(node.children.values()))
        path.append((node.frame, node.category))
    assert len(path) == 20 and "…" in [f for f, _ in path]
    assert path[-1] == ("__lll_lock_wait", "parts mutex, exclusive")
    assert ("DB::MergeTreeData::lockParts() const", "parts mutex, exclusive") in path


def test_labels_are_short_and_only_on_wide_boxes() -> None:
    assert short_name("DB::MergeTreeData::lockParts() const") == "DB::MergeTreeData::lockParts"
    assert short_name("std::__1::shared_lock<DB::SharedMutex>::shared_lock[abi:v15000](DB::SharedMutex&)") == \
        "std::shared_lock<DB::SharedMutex>::shared_lock"
    fig = flame_graph(stack_frame({"prefix_exclusive_std_mutex": 1}, {"reading": 999}))
    labels = {t.get_text() for ax in fig.axes for t in ax.texts}
    assert "DB::MergeTreeRangeReader::read" in labels
    assert not any("lockParts" in t for t in labels)  # 0.1% wide: no label


def test_waiting_samples_point_at_the_heaviest_lock_and_mode() -> None:
    stacks = stack_frame({"prefix_exclusive_std_mutex": 6, "postfix_shared": 2}, {"reading": 12})
    waits = waiting_locks(stacks)
    assert list(waits["category"]) == ["parts mutex, exclusive", "parts mutex, shared"]
    assert waits["share_of_waiting"].tolist() == pytest.approx([0.75, 0.25])
    sentence = stacks_sentence(stacks)
    assert sentence.startswith("8 of the 20 stack samples (40%) were waiting for a lock; 75% of those point at "
                               "the parts mutex, exclusive (acquired in DB::MergeTreeData::lockParts)")
    assert "None of the 3" in stacks_sentence(stack_frame({}, {"reading": 3}))
