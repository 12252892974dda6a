"""The collection view and the list agree: a mark taken away, or put back by undo, in the collection
shows in the list and in the status line's count as soon as the view closes."""

from __future__ import annotations

from tests.helpers.app import make_app, settle, wait_for
from tui.screens.collection import CollectionScreen
from tui.widgets.neuron_list import NeuronList


def _status(app) -> str:
    return str(app.query_one("#status-text").render())


async def test_unmarking_in_the_collection_shows_in_the_list_and_the_status_line(tiny_gguf, tmp_path):
    app = make_app(tiny_gguf, tmp_path / "c")
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, app)
        listing = app.main.query_one(NeuronList)
        first, second = (int(n) for n in listing.order[:2])
        await pilot.press("space", "space", "m")
        await wait_for(pilot, lambda: isinstance(app.screen, CollectionScreen))
        await pilot.press("space")  # unmarks the first row
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CollectionScreen))
        assert len(listing.marked) == 1 and "1 marked" in _status(app), _status(app)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, CollectionScreen))
        await pilot.press("u", "escape")  # the unmark undone
        await wait_for(pilot, lambda: not isinstance(app.screen, CollectionScreen))
        assert listing.marked == {first, second} and "2 marked" in _status(app), _status(app)
