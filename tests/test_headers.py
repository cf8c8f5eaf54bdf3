"""`Headers`: a packed set of fields reads exactly as the fields it was packed from."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import trio_ws
from trio_ws.http import Headers

from .conftest import ws_url

# Anything `Headers` accepts: names without ":" or line breaks, values without line breaks.
names = st.text(st.characters(blacklist_characters=":\r\n", codec="latin-1"), max_size=12)
values = st.text(st.characters(blacklist_characters="\r\n", codec="latin-1"), max_size=20)


@given(st.lists(st.tuples(names, values), max_size=12), st.lists(names, max_size=4))
def test_packed_headers_read_and_change_as_the_fields_they_hold(
    fields: list[tuple[str, str]], asked: list[str]
) -> None:
    """Values with ": " in them, empty names and values, repeated fields: unpacked on first
    use, every reading is the one before packing, and a change after it sticks."""
    plain, packed = Headers(fields), Headers(fields)
    packed.pack()
    for name in [*asked, *(n for n, _ in fields)]:
        assert packed.get_all(name) == plain.get_all(name)
        assert (name in packed) == (name in plain)
    assert packed.raw_items() == plain.raw_items() == fields == Headers.from_wire(fields).raw_items()
    assert plain.by_name() == {name.lower(): plain.get_all(name) for name, _ in fields}
    assert packed == plain and len(packed) == len(plain) and list(packed) == list(plain)
    packed.pack()
    packed["X-Added"] = "1"
    packed.pack()
    assert packed.raw_items() == [*fields, ("X-Added", "1")]


@pytest.mark.trio
async def test_a_connection_packs_its_request_headers_and_still_reads_them() -> None:
    seen: list[tuple[bool, str, list[tuple[str, str]]]] = []

    async def handler(ws: trio_ws.WebSocket) -> None:
        packed = ws.request.headers._fields is None
        seen.append((packed, ws.request.headers["X-Token"], ws.request.headers.raw_items()))

    async with trio_ws.open_server(handler, "127.0.0.1", 0) as server:
        async with trio_ws.connect(ws_url(server), extra_headers={"X-Token": "a: b, c"}):
            pass
    ((packed, token, items),) = seen
    assert packed and token == "a: b, c"
    assert ("X-Token", "a: b, c") in items and items[0][0] == "Host"
