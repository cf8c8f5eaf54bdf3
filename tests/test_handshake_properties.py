"""The server's upgrade check over arbitrary requests: any spelling of the names, repeated
and missing fields, lists in one value, extra fields of any name. `ServerHandshake.accept`
(one pass over the fields) must answer exactly as the rules read field by field with
`Headers.get_all` would. And the answers it writes without h11 (the 101, the refusal of a
malformed request) hold any field h11 would send, refuse any it would not, and read back
through h11 as they were."""

from __future__ import annotations

import base64

import h11
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from trio_ws.handshake import RejectHandshake, ServerHandshake, accept_key
from trio_ws.http import Headers, Request, Response

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


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: " + VALID_KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
# Names and values of any characters, the troublesome ones often: separators, spaces at
# either end, control characters, line breaks, and characters past latin-1.
troublesome = st.sampled_from(
    [" ", "\t", ":", "\r", "\n", "\x00", "\x7f", "\x85", "\xa0", "\x1c", "\xe9", "\u20ac", "(", "\x0b"]
)
any_text = st.lists(st.characters(codec="latin-1") | troublesome, max_size=8).map("".join)
any_name = any_text.filter(bool) | st.sampled_from(["X-Trace", "Set-Cookie", "Server"])
any_fields = st.lists(st.tuples(any_name, any_text | st.just("a b")), max_size=4)


def h11_would_send(status: int, fields: list[tuple[str, str]]) -> bool:
    """Whether h11 takes these fields for a response of `status`."""
    try:
        encoded = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in fields]
        event = h11.InformationalResponse if status < 200 else h11.Response
        event(status_code=status, headers=encoded)
    except (UnicodeEncodeError, h11.LocalProtocolError):
        return False
    return True


def read_back(head: bytes) -> tuple[int, list[tuple[str, str]]]:
    client = h11.Connection(h11.CLIENT)
    upgrade = [("Upgrade", "websocket"), ("Connection", "Upgrade")]
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "a"), *upgrade]))
    client.receive_data(head)
    event = client.next_event()
    assert isinstance(event, (h11.InformationalResponse, h11.Response))
    return event.status_code, [
        (n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers.raw_items()
    ]


@given(any_fields)
@example([("X-A", "\xa0"), ("X-B", "a\x85b")])  # not spaces to HTTP, which knows only ASCII ones
@example([("X A", "b")])
def test_the_101_holds_exactly_the_fields_h11_would_send(fields: list[tuple[str, str]]) -> None:
    handshake = ServerHandshake()
    handshake.receive_data(UPGRADE)
    request = handshake.next_request()
    assert request is not None
    response = handshake.accept(request)
    response.headers = Headers.from_wire(response.headers.raw_items() + fields)  # as process_response may
    if not h11_would_send(101, response.headers.raw_items()):
        with pytest.raises(ValueError):
            handshake.send_response(response)
        return
    assert read_back(handshake.send_response(response)) == (101, response.headers.raw_items())


@given(any_fields)
def test_the_answer_to_a_malformed_request_holds_exactly_the_fields_h11_would_send(
    fields: list[tuple[str, str]],
) -> None:
    handshake = ServerHandshake()
    handshake.receive_data(b"NOT HTTP\r\n\r\n")
    with pytest.raises(RejectHandshake) as rejected:
        handshake.next_request()
    response = Response(400, Headers.from_wire(fields), "bad request\n")
    assert rejected.value.response.status == 400
    written = [*fields, ("Content-Length", "12"), ("Content-Type", "text/plain; charset=utf-8")]
    written += [("Connection", "close")] if not any(n.lower() == "connection" for n, _ in fields) else []
    if not h11_would_send(400, written):
        with pytest.raises(ValueError):
            handshake.send_response(response)
        return
    head = handshake.send_response(response)
    assert head.endswith(b"\r\n\r\nbad request\n")
    status, read = read_back(head)
    assert status == 400 and read == written
