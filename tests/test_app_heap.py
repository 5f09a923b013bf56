"""The app's heap settling (``state.settle_heap``): freeze once, keep collecting what comes later."""

from __future__ import annotations

import gc

from nutrilearn_app import state


def test_settle_heap_freezes_once_a_page_and_later_cycles_are_still_collected(monkeypatch):
    monkeypatch.setattr(state, "_settled", set())  # as in a new process
    try:
        state.settle_heap("drift")
        frozen = gc.get_freeze_count()
        assert frozen > 0
        kept = [[] for _ in range(1000)]  # made after: not frozen by the same page again
        state.settle_heap("drift")
        assert gc.get_freeze_count() <= frozen  # (frozen objects can still be freed by refcount)
        before = gc.get_freeze_count()
        state.settle_heap("monitoring")  # another page's first run: what it left is frozen too
        assert gc.get_freeze_count() >= before + len(kept)

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle made after the freeze
        del a, b
        assert gc.collect() >= 2  # found and freed: later garbage is collected as before
        del kept
    finally:
        gc.unfreeze()  # the rest of the test session as it was
