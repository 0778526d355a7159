"""The frame codec: arbitrary splits and merges, the size cap before the body, truncation."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.frames import FrameDecoder, FrameTooLargeError, TruncatedFrameError, pack_frame, read_frame
from common.protocol import Failed, Finished, Started, TextDelta, ToolCall, Usage, decode_reply, encode

frames_st = st.lists(
    st.one_of(
        st.builds(TextDelta, text=st.text(max_size=200)),
        st.builds(Started, model=st.text(max_size=20), input_tokens=st.integers(0, 10**6)),
        st.builds(
            ToolCall,
            index=st.integers(0, 10),
            id=st.text(min_size=1, max_size=10),
            name=st.text(min_size=1, max_size=10),
            arguments=st.text(),
        ),
        st.builds(Finished, reason=st.sampled_from(["stop", "tool_calls"]), usage=st.builds(Usage)),
        st.builds(Failed, code=st.sampled_from(["upstream_error", "internal"]), message=st.text(max_size=50)),
    ),
    max_size=12,
)


@given(frames=frames_st, cuts=st.lists(st.integers(0, 10_000), max_size=20))
def test_decoder_survives_arbitrary_splits(frames: list[object], cuts: list[int]) -> None:
    stream = b"".join(pack_frame(encode(f)) for f in frames)  # type: ignore[arg-type]
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    decoder = FrameDecoder()
    out = [decode_reply(body) for piece in pieces for body in decoder.feed(piece)]
    decoder.close()
    assert out == frames


@given(frames=frames_st, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_stream_reader_survives_arbitrary_splits(frames: list[object], cuts: list[int]) -> None:
    stream = b"".join(pack_frame(encode(f)) for f in frames)  # type: ignore[arg-type]
    points = sorted({c % (len(stream) + 1) for c in cuts})

    async def run() -> list[object]:
        reader = asyncio.StreamReader()
        for a, b in zip([0, *points], [*points, len(stream)], strict=True):
            reader.feed_data(stream[a:b])
        reader.feed_eof()
        out = []
        while (body := await read_frame(reader)) is not None:
            out.append(decode_reply(body))
        return out

    assert asyncio.run(run()) == frames


def test_oversize_length_is_refused_before_the_body_is_read() -> None:
    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data((1000).to_bytes(4, "big") + b"x" * 10)
        reader.feed_eof()
        with pytest.raises(FrameTooLargeError):
            await read_frame(reader, max_frame=100)
        # Nothing of the body was consumed: the cap was checked on the header alone.
        assert await reader.read() == b"x" * 10

    asyncio.run(run())
    with pytest.raises(FrameTooLargeError):
        FrameDecoder(max_frame=100).feed((1000).to_bytes(4, "big"))
    with pytest.raises(FrameTooLargeError):
        pack_frame(b"x" * 101, max_frame=100)


@given(body=st.binary(min_size=1, max_size=100), keep=st.integers(1, 103))
def test_truncated_frame_is_a_clean_error(body: bytes, keep: int) -> None:
    data = pack_frame(body)
    data = data[: min(keep, len(data) - 1)]

    async def run() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        with pytest.raises(TruncatedFrameError):
            await read_frame(reader)

    asyncio.run(run())
    decoder = FrameDecoder()
    assert decoder.feed(data) == []
    with pytest.raises(TruncatedFrameError):
        decoder.close()
