"""The SSE encoder and decoder, byte for byte (WHATWG HTML, "Server-sent events")."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.core.sse import SSEDecoder, SSEMessage, comment, frame


def decode(*chunks: bytes) -> tuple[list[SSEMessage], SSEDecoder]:
    decoder = SSEDecoder()
    messages = [message for chunk in chunks for message in decoder.feed(chunk)]
    return messages, decoder


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


# --- encoder ---------------------------------------------------------------------------


def test_frame_with_every_field_in_order() -> None:
    assert frame(data="hi", event="greeting", id="e-1", retry=3000) == (
        b"retry: 3000\nid: e-1\nevent: greeting\ndata: hi\n\n"
    )


def test_frame_splits_multi_line_data_into_data_fields() -> None:
    assert frame(data="one\ntwo\r\nthree\rfour") == (
        b"data: one\ndata: two\ndata: three\ndata: four\n\n"
    )


def test_frame_keeps_empty_lines_of_data() -> None:
    assert frame(data="\na\n") == b"data: \ndata: a\ndata: \n\n"


def test_frame_with_empty_data_still_dispatches() -> None:
    assert frame(data="") == b"data: \n\n"
    messages, _ = decode(frame(data=""))
    assert [m.data for m in messages] == [""]


def test_frame_encodes_utf8() -> None:
    assert frame(data="caf\u00e9 \u2603") == "data: caf\u00e9 \u2603\n\n".encode()


def test_id_only_frame() -> None:
    assert frame(id="abc-7") == b"id: abc-7\n\n"


def test_retry_only_frame() -> None:
    assert frame(retry=1500) == b"retry: 1500\n\n"


@pytest.mark.parametrize("field", ["id", "event"])
@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\r\nb"])
def test_line_breaks_are_refused_in_single_line_fields(field: str, value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        frame(data="x", **{field: value})


def test_nul_is_refused_in_id() -> None:
    with pytest.raises(ValueError, match="NUL"):
        frame(id="a\0b")


def test_comment() -> None:
    assert comment("ping") == b": ping\n\n"
    assert comment() == b":\n\n"


@pytest.mark.parametrize("text", ["a\nb", "a\rb"])
def test_comment_refuses_line_breaks(text: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        comment(text)


# --- decoder ---------------------------------------------------------------------------


def test_decodes_a_full_frame() -> None:
    messages, decoder = decode(b"id: e-1\nevent: greeting\ndata: hello\n\n")
    assert messages == [SSEMessage(event="greeting", data="hello", id="e-1")]
    assert decoder.last_event_id == "e-1"


def test_event_type_defaults_to_message() -> None:
    messages, _ = decode(b"data: x\n\n")
    assert messages == [SSEMessage(event="message", data="x", id="")]


def test_multi_line_data_is_joined_with_lf() -> None:
    messages, _ = decode(b"data: one\ndata: two\ndata:\ndata: four\n\n")
    assert [m.data for m in messages] == ["one\ntwo\n\nfour"]


def test_data_without_space_after_colon() -> None:
    messages, _ = decode(b"data:no-space\ndata:  two spaces\n\n")
    # Only one leading space is removed.
    assert [m.data for m in messages] == ["no-space\n two spaces"]


def test_field_without_colon_has_empty_value() -> None:
    messages, _ = decode(b"data\ndata\n\n")
    assert [m.data for m in messages] == ["\n"]


def test_value_may_contain_colons() -> None:
    messages, _ = decode(b'data: {"a": "b:c"}\n\n')
    assert [m.data for m in messages] == ['{"a": "b:c"}']


def test_no_dispatch_without_blank_line() -> None:
    messages, _ = decode(b"data: pending\n")
    assert messages == []


def test_end_of_stream_discards_the_pending_frame() -> None:
    messages, _ = decode(b"data: first\n\ndata: half-way")
    assert [m.data for m in messages] == ["first"]


def test_id_only_frame_sets_last_event_id_without_dispatching() -> None:
    messages, decoder = decode(b"id: e-5\n\n")
    assert messages == []
    assert decoder.last_event_id == "e-5"


def test_last_event_id_persists_across_frames_without_id() -> None:
    messages, decoder = decode(b"id: e-1\ndata: a\n\ndata: b\n\n")
    assert [(m.data, m.id) for m in messages] == [("a", "e-1"), ("b", "e-1")]
    assert decoder.last_event_id == "e-1"


def test_empty_id_resets_last_event_id() -> None:
    messages, decoder = decode(b"id: e-1\ndata: a\n\nid\ndata: b\n\n")
    assert [m.id for m in messages] == ["e-1", ""]
    assert decoder.last_event_id == ""


def test_id_is_not_applied_before_the_frame_is_dispatched() -> None:
    messages, decoder = decode(b"id: e-1\n\nid: e-2\ndata: x\n")
    assert messages == []
    assert decoder.last_event_id == "e-1"


def test_id_with_nul_is_ignored() -> None:
    messages, decoder = decode(b"id: e-1\n\nid: bad\0id\ndata: x\n\n")
    assert [m.id for m in messages] == ["e-1"]
    assert decoder.last_event_id == "e-1"


def test_event_type_does_not_leak_into_the_next_frame() -> None:
    messages, _ = decode(b"event: special\ndata: a\n\ndata: b\n\n")
    assert [m.event for m in messages] == ["special", "message"]


def test_event_type_of_a_frame_without_data_is_forgotten() -> None:
    messages, _ = decode(b"event: lonely\n\ndata: b\n\n")
    assert [m.event for m in messages] == ["message"]


def test_retry_sets_reconnection_time() -> None:
    messages, decoder = decode(b"retry: 3000\n\ndata: x\n\n")
    assert decoder.retry == 3000
    assert messages == [SSEMessage(event="message", data="x", id="", retry=3000)]


@pytest.mark.parametrize("value", [b"", b"abc", b"-5", b"1.5", b"10 ", "\u00b2".encode()])
def test_retry_that_is_not_ascii_digits_is_ignored(value: bytes) -> None:
    _, decoder = decode(b"retry: 1000\n\nretry: " + value + b"\n\n")
    assert decoder.retry == 1000


def test_comments_are_counted_and_ignored() -> None:
    messages, decoder = decode(b": ping\n\n:\n\ndata: x\n: inside\n\n")
    assert [m.data for m in messages] == ["x"]
    assert decoder.comments == 3


def test_unknown_fields_are_ignored() -> None:
    messages, _ = decode(b"foo: bar\ndata: x\nData: y\n\n")
    assert [m.data for m in messages] == ["x"]


@pytest.mark.parametrize("ending", [b"\n", b"\r", b"\r\n"])
def test_every_line_ending(ending: bytes) -> None:
    stream = ending.join([b"id: e-1", b"event: t", b"data: a", b"data: b", b"", b""])
    messages, _ = decode(stream)
    assert messages == [SSEMessage(event="t", data="a\nb", id="e-1")]


def test_mixed_line_endings() -> None:
    messages, _ = decode(b"data: a\rdata: b\r\ndata: c\n\r\ndata: d\r\r")
    assert [m.data for m in messages] == ["a\nb\nc", "d"]


def test_crlf_split_across_chunks_is_one_line_ending() -> None:
    # If the CR were taken as a line end on its own, the LF would end the frame early.
    messages, _ = decode(b"data: a\r", b"\ndata: b\r\n\r", b"\n")
    assert [m.data for m in messages] == ["a\nb"]


def test_frame_ending_in_cr_dispatches_without_waiting_for_more_bytes() -> None:
    # A CR-only server's frame must reach the client now, not with the next heartbeat.
    decoder = SSEDecoder()
    assert list(decoder.feed(b"data: a\r\r")) == [SSEMessage(event="message", data="a", id="")]
    assert list(decoder.feed(b"\ndata: b\r\r")) == [SSEMessage(event="message", data="b", id="")]


def test_cr_at_end_of_chunk_followed_by_other_text_is_a_line_ending() -> None:
    messages, _ = decode(b"data: a\r", b"data: b\r", b"\r")
    assert [m.data for m in messages] == ["a\nb"]


def test_bytes_arriving_one_at_a_time() -> None:
    stream = b"retry: 10\r\nid: e-9\r\nevent: t\r\ndata: caf\xc3\xa9\r\n\r\n"
    messages, decoder = decode(*split_every(stream, 1))
    assert messages == [SSEMessage(event="t", data="caf\u00e9", id="e-9", retry=10)]
    assert decoder.retry == 10


def test_multibyte_character_split_across_chunks() -> None:
    encoded = "data: \u2603\n\n".encode()
    messages, _ = decode(encoded[:7], encoded[7:])
    assert [m.data for m in messages] == ["\u2603"]


def test_invalid_utf8_is_replaced() -> None:
    messages, _ = decode(b"data: a\xffb\n\n")
    assert [m.data for m in messages] == ["a\ufffdb"]


def test_leading_bom_is_skipped() -> None:
    messages, _ = decode(b"\xef\xbb\xbfdata: x\n\n")
    assert [m.data for m in messages] == ["x"]


def test_bom_split_across_chunks_is_skipped() -> None:
    messages, _ = decode(b"\xef", b"\xbb", b"\xbfdata: x\n\n")
    assert [m.data for m in messages] == ["x"]


def test_only_the_stream_initial_bom_is_skipped() -> None:
    # A BOM later in the stream is part of a field name, so the line is an unknown field.
    messages, _ = decode(b"data: a\n\n\xef\xbb\xbfdata: b\n\ndata: c\n\n")
    assert [m.data for m in messages] == ["a", "c"]


def test_encoder_output_round_trips_through_the_decoder() -> None:
    stream = (
        frame(retry=2500)
        + comment("connected")
        + frame(id="e-1", event="greeting", data='{"hi": 1}')
        + frame(id="e-2", data="two\nlines")
        + frame(id="e-3")
    )
    messages, decoder = decode(stream)
    assert messages == [
        SSEMessage(event="greeting", data='{"hi": 1}', id="e-1", retry=2500),
        SSEMessage(event="message", data="two\nlines", id="e-2", retry=2500),
    ]
    assert decoder.last_event_id == "e-3"
    assert decoder.comments == 1


# --- properties ------------------------------------------------------------------------

sse_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"))


@given(data=sse_text)
def test_frame_data_round_trips(data: str) -> None:
    messages, _ = decode(frame(data=data))
    # Documented: CRLF and lone CR in data come back as LF.
    assert [m.data for m in messages] == [data.replace("\r\n", "\n").replace("\r", "\n")]


@given(data=sse_text, event=st.from_regex(r"[A-Za-z0-9_.:/-]{1,20}", fullmatch=True))
def test_frame_round_trips_after_earlier_frames(data: str, event: str) -> None:
    messages, _ = decode(comment("x") + frame(id="e-1") + frame(data=data, event=event))
    assert messages == [
        SSEMessage(event=event, data=data.replace("\r\n", "\n").replace("\r", "\n"), id="e-1")
    ]


@st.composite
def chunked(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    raw = draw(
        st.lists(
            st.one_of(
                st.binary(max_size=20),
                st.sampled_from(
                    [
                        b"\n",
                        b"\r",
                        b"\r\n",
                        b"data:",
                        b"data: x",
                        b"id: 1",
                        b"event: e",
                        b"retry: 9",
                        b":",
                        b"\xef\xbb\xbf",
                        b"id\0",
                    ]
                ),
            ),
            max_size=30,
        )
    )
    stream = b"".join(raw)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    return stream, chunks


@given(chunked())
def test_decoder_never_raises_and_chunking_does_not_matter(
    sample: tuple[bytes, list[bytes]],
) -> None:
    stream, chunks = sample
    whole, whole_decoder = decode(stream)
    pieces, pieces_decoder = decode(*chunks)
    single_bytes, bytes_decoder = decode(*split_every(stream, 1))
    assert pieces == whole
    assert single_bytes == whole
    for decoder in (pieces_decoder, bytes_decoder):
        assert decoder.last_event_id == whole_decoder.last_event_id
        assert decoder.retry == whole_decoder.retry
        assert decoder.comments == whole_decoder.comments


@given(st.binary(max_size=200))
def test_decoder_never_raises_on_random_bytes(stream: bytes) -> None:
    messages, decoder = decode(stream)
    assert all(isinstance(m, SSEMessage) for m in messages)
    assert isinstance(decoder.last_event_id, str)
