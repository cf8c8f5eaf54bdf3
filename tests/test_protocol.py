"""The sans-I/O protocol: fragmentation, UTF-8, closing handshake, size limits."""

from __future__ import annotations

import pytest

from trio_ws.frames import Frame, FrameParser, Opcode, serialize_frame
from trio_ws.protocol import Close, Ping, Pong, Protocol, Role, State


def client_frame(opcode: Opcode, payload: bytes = b"", fin: bool = True) -> bytes:
    return serialize_frame(Frame(opcode, payload, fin), mask=True)


def sent_frames(proto: Protocol, *, masked: bool = False) -> list[Frame]:
    parser = FrameParser(require_mask=masked)
    parser.feed(proto.data_to_send())
    frames = []
    while (frame := parser.next_frame()) is not None:
        frames.append(frame)
    return frames


def test_fragmented_text_with_interleaved_control_frames() -> None:
    proto = Protocol(Role.SERVER)
    wire = (
        client_frame(Opcode.TEXT, "héllo ".encode()[:2], fin=False)
        + client_frame(Opcode.PING, b"p1")
        + client_frame(Opcode.CONTINUATION, "héllo ".encode()[2:], fin=False)
        + client_frame(Opcode.PONG, b"p2")
        + client_frame(Opcode.CONTINUATION, b"world", fin=True)
    )
    assert proto.receive_data(wire) == [Ping(b"p1"), Pong(b"p2"), "héllo world"]
    assert [(f.opcode, f.payload) for f in sent_frames(proto)] == [(Opcode.PONG, b"p1")]


def test_fragmented_binary_in_byte_sized_pieces() -> None:
    proto = Protocol(Role.SERVER)
    wire = client_frame(Opcode.BINARY, b"ab", fin=False) + client_frame(Opcode.CONTINUATION, b"cd")
    events = []
    for i in range(len(wire)):
        events += proto.receive_data(wire[i : i + 1])
    assert events == [b"abcd"]


@pytest.mark.parametrize(
    "wire",
    [
        client_frame(Opcode.CONTINUATION, b"x"),
        client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b"),
        client_frame(Opcode.BINARY, b"a", fin=False) + client_frame(Opcode.BINARY, b"b"),
    ],
    ids=["continuation-first", "text-inside-text", "binary-inside-binary"],  # the masks are random
)
def test_bad_fragmentation_fails_with_1002(wire: bytes) -> None:
    proto = Protocol(Role.SERVER)
    proto.receive_data(wire)
    assert proto.state is State.CLOSED
    assert proto.close_code == 1002
    assert sent_frames(proto)[-1].payload[:2] == b"\x03\xea"


def test_invalid_utf8_fails_at_the_fragment_that_holds_it() -> None:
    proto = Protocol(Role.SERVER)
    # A valid start, then an invalid sequence (U+110000 and above) in a middle fragment.
    assert proto.receive_data(client_frame(Opcode.TEXT, "κ".encode(), fin=False)) == []
    assert proto.state is State.OPEN
    proto.receive_data(client_frame(Opcode.CONTINUATION, b"\xf4\x90", fin=False))
    assert proto.state is State.CLOSED, "must fail before the message ends"
    assert proto.close_code == 1007


def test_utf8_split_across_fragments_is_fine() -> None:
    proto = Protocol(Role.SERVER)
    encoded = "€uro".encode()
    wire = client_frame(Opcode.TEXT, encoded[:1], fin=False) + client_frame(Opcode.CONTINUATION, encoded[1:])
    assert proto.receive_data(wire) == ["€uro"]


def test_close_handshake_started_by_peer() -> None:
    proto = Protocol(Role.SERVER)
    events = proto.receive_data(client_frame(Opcode.CLOSE, b"\x03\xe8bye"))
    assert events == [Close(1000, "bye")]
    assert proto.state is State.CLOSED
    assert sent_frames(proto)[0].payload == b"\x03\xe8bye"  # the code is echoed
    assert proto.receive_data(client_frame(Opcode.TEXT, b"late")) == []


def test_close_handshake_started_here() -> None:
    proto = Protocol(Role.CLIENT)
    proto.send_close(1001, "away")
    assert proto.state is State.CLOSING
    with pytest.raises(RuntimeError):
        proto.send("no more")
    frame = sent_frames(proto, masked=True)[0]
    assert (frame.opcode, frame.payload) == (Opcode.CLOSE, b"\x03\xe9away")
    # Messages still arrive while closing; then the peer's close completes it.
    assert proto.receive_data(serialize_frame(Frame(Opcode.TEXT, b"hi"))) == ["hi"]
    proto.receive_data(serialize_frame(Frame(Opcode.CLOSE, b"\x03\xe9")))
    assert proto.state is State.CLOSED
    assert proto.close_code == 1001
    assert proto.data_to_send() == b""  # no second close frame


def test_eof_without_close_is_1006() -> None:
    proto = Protocol(Role.SERVER)
    proto.receive_eof()
    assert (proto.state, proto.close_code) == (State.CLOSED, 1006)


def test_who_closes_tcp_first() -> None:
    """The server closes TCP first (RFC 6455 7.1.1); a client only when it failed the
    connection; otherwise the client waits for the server's FIN."""
    server, client = Protocol(Role.SERVER), Protocol(Role.CLIENT)
    assert server.closes_tcp_first and not client.closes_tcp_first
    client.receive_data(b"\x88\x02\x03\xe8")  # the server's close frame, 1000
    assert client.state is State.CLOSED and not client.closes_tcp_first, "a clean close: the server closes"
    failing = Protocol(Role.CLIENT)
    failing.receive_data(b"\x81\x01\xff")  # a text frame that is not UTF-8
    assert (failing.state, failing.close_code) == (State.CLOSED, 1007)
    assert failing.closes_tcp_first, "a side that failed the connection closes first"


def test_abort_stops_the_protocol_without_a_handshake() -> None:
    proto = Protocol(Role.CLIENT)
    proto.send_close(1000)
    proto.abort()
    assert (proto.state, proto.close_code) == (State.CLOSED, 1006)
    proto.receive_data(b"\x88\x02\x03\xe8")  # the peer's close frame, too late
    assert proto.close_code == 1006 and proto.close_rcvd is None


def test_max_size_fails_from_the_header_before_the_payload() -> None:
    proto = Protocol(Role.SERVER, max_size=1024)
    header_only = client_frame(Opcode.BINARY, b"x" * 2000)[:8]
    proto.receive_data(header_only)
    assert (proto.state, proto.close_code) == (State.CLOSED, 1009)


def test_max_size_counts_the_whole_fragmented_message() -> None:
    proto = Protocol(Role.SERVER, max_size=10)
    proto.receive_data(client_frame(Opcode.BINARY, b"123456", fin=False))
    assert proto.state is State.OPEN
    proto.receive_data(client_frame(Opcode.CONTINUATION, b"12345")[:6])
    assert proto.close_code == 1009


def test_outgoing_fragments_and_type_mixing() -> None:
    proto = Protocol(Role.SERVER)
    proto.send("ab", fin=False)
    proto.send("cd", fin=True)
    frames = sent_frames(proto)
    assert [(f.opcode, f.fin) for f in frames] == [(Opcode.TEXT, False), (Opcode.CONTINUATION, True)]
    proto.send(b"x", fin=False)
    with pytest.raises(TypeError):
        proto.send("y")


def test_client_masks_server_does_not() -> None:
    client = Protocol(Role.CLIENT)
    client.send(b"data")
    assert client.data_to_send()[1] & 0x80
    server = Protocol(Role.SERVER)
    server.send(b"data")
    assert not server.data_to_send()[1] & 0x80
