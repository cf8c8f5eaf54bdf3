"""The server's upgrade check over arbitrary requests: any spelling of the names, repeated
and missing fields, lists in one value, extra fields of any name. `ServerHandshake.accept`
(one pass over the fields) must answer exactly as the rules read field by field with
`Headers.get_all` would."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from trio_ws.handshake import RejectHandshake, ServerHandshake, accept_key
from trio_ws.http import Headers, Request

VALID_KEY = base64.b64encode(b"0123456789abcdef").decode()
ORIGINS = ["https://a.example", None]
SUBPROTOCOLS = ["chat"]


def any_case(name: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(c.upper() if u else c.lower() for c, u in zip(name, upper, strict=True))
    )


def field(name: str, values: list[str], good: str | None = None) -> st.SearchStrategy[list[tuple[str, str]]]:
    """None, one or two fields of `name` (in any case), each with one of `values`; with a
    `good` value, half the time that one field alone, so that many requests pass, and a
    quarter of the time that field and more of the same name."""
    anything = st.lists(st.tuples(any_case(name), st.sampled_from(values)), max_size=2)
    if good is None:
        return anything
    one_good = any_case(name).map(lambda spelled: [(spelled, good)])
    good_and_more = st.tuples(one_good, anything).map(lambda both: both[0] + both[1])
    return st.integers(0, 3).flatmap(lambda draw: (anything, good_and_more, one_good, one_good)[draw])


other_names = st.text(st.characters(blacklist_characters=":\r\n", codec="ascii"), min_size=1, max_size=8)
other_values = st.text(st.characters(blacklist_characters="\r\n", codec="latin-1"), max_size=12)

requests = st.tuples(
    field("Upgrade", ["websocket", "WebSocket", "h2c", "h2c, websocket", ""], "websocket"),
    field("Connection", ["Upgrade", "keep-alive, upgrade", "close", ","], "Upgrade"),
    field("Sec-WebSocket-Version", ["13", "8", "13, 8"], "13"),
    field("Sec-WebSocket-Key", [VALID_KEY, "short", ""], VALID_KEY),
    field("Content-Length", ["0", " 0 ", "5"]),
    field("Transfer-Encoding", ["chunked"]),
    field("Origin", ["https://a.example", "https://b.example"]),
    field("Sec-WebSocket-Protocol", ["chat", "other", "other, chat", ""]),
    st.lists(st.tuples(other_names, other_values), max_size=4),
).flatmap(lambda parts: st.permutations([pair for part in parts for pair in part]))


def expected(headers: Headers) -> tuple[int, str | None]:
    """The status (and subprotocol) the rules give, read field by field."""

    def tokens(name: str) -> list[str]:
        return [t.strip() for v in headers.get_all(name) for t in v.split(",") if t.strip()]

    if "websocket" not in [t.lower() for t in tokens("Upgrade")]:
        return 426, None
    if "upgrade" not in [t.lower() for t in tokens("Connection")]:
        return 400, None
    if "Transfer-Encoding" in headers or headers.get("Content-Length", "0").strip() != "0":
        return 400, None
    if headers.get_all("Sec-WebSocket-Version") != ["13"]:
        return 426, None
    if headers.get_all("Sec-WebSocket-Key") != [VALID_KEY]:
        return 400, None
    if headers.get("Origin") not in ORIGINS:
        return 403, None
    offered = tokens("Sec-WebSocket-Protocol")
    if offered and "chat" not in offered:
        return 400, None
    return 101, "chat" if offered else None


@given(requests)
def test_accept_answers_every_request_as_the_rules_read_field_by_field(fields: list[tuple[str, str]]) -> None:
    headers = Headers(fields)
    handshake = ServerHandshake(origins=ORIGINS, subprotocols=SUBPROTOCOLS)
    try:
        response = handshake.accept(Request(path="/", headers=Headers.from_wire(fields)))
    except RejectHandshake as rejection:
        status, subprotocol = rejection.response.status, None
    else:
        status, subprotocol = response.status, response.headers.get("Sec-WebSocket-Protocol")
        assert response.headers["Sec-WebSocket-Accept"] == accept_key(VALID_KEY)
    assert (status, subprotocol) == expected(headers)
