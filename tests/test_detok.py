"""StreamDecoder: no half characters, no leaked start of a stop string."""

from __future__ import annotations

from server.engines.detok import StreamDecoder


class ByteTokenizer:
    """One token per UTF-8 byte, so multi-byte characters arrive in pieces."""

    def decode(self, ids, skip_special_tokens=True):
        return bytes(ids).decode("utf-8", errors="replace")


def feed(decoder, text):
    out = []
    for b in text.encode():
        out.append(decoder.push(b))
        if decoder.stopped:
            break
    return out


def test_cjk_characters_never_split():
    decoder = StreamDecoder(ByteTokenizer())
    pieces = feed(decoder, "皇上万福金安。")
    assert all("\ufffd" not in p for p in pieces)
    assert "".join(pieces) + decoder.flush() == "皇上万福金安。"


def test_stop_string_is_held_back_then_cut():
    decoder = StreamDecoder(ByteTokenizer(), stop=("END",))
    pieces = feed(decoder, "abc ENfoo END tail")
    assert decoder.stopped
    assert "".join(pieces) == "abc ENfoo "
    assert decoder.flush() == ""
    # The partial "EN" was held back until it proved not to be a stop string.
    assert "EN" not in "".join(pieces[:6])


def test_no_stop_flushes_everything():
    decoder = StreamDecoder(ByteTokenizer(), stop=("zz",))
    pieces = feed(decoder, "buzz? no: buz")
    assert decoder.stopped and "".join(pieces) == "bu"
    other = StreamDecoder(ByteTokenizer(), stop=("zz",))
    assert "".join(feed(other, "abz")) + other.flush() == "abz"


def test_earliest_of_several_stops_wins():
    decoder = StreamDecoder(ByteTokenizer(), stop=("world", "lo"))
    assert "".join(feed(decoder, "hello world")) == "hel"
