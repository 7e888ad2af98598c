"""SSE frames and the broker's packed messages."""

import orjson

from runyard.events.streaming import _frames_after, pack, unpack
from runyard.http.sse import frame


def test_a_frame_keeps_data_on_one_line_whatever_the_payload() -> None:
    payload = {"text": "line\n\nid: 99\nevent: run.completed\r\ndata: x"}
    raw = frame("log", payload, id=7)
    head, event, data, end = raw.split(b"\n", 3)
    assert (head, event, end) == (b"id: 7", b"event: log", b"\n")
    assert orjson.loads(data.removeprefix(b"data: ")) == payload
    assert frame("stream.end", {"a": 1}).startswith(b"event: stream.end\n")


def test_pack_unpack_and_slicing_a_range() -> None:
    frames = b"".join(frame("log", {"i": i}, id=i) for i in range(5, 9))
    message = pack(5, 8, "log", frames)
    assert unpack(message) == (5, 8, "log", frames)
    tail = _frames_after(frames, 5, 6)
    assert tail == frame("log", {"i": 7}, id=7) + frame("log", {"i": 8}, id=8)
