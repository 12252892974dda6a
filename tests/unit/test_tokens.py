from engine.data.tokens import Vocabulary, bytes_to_text, display_token, stored_token_to_bytes


def test_byte_level_tokens_round_trip_to_bytes():
    assert stored_token_to_bytes("Ġcoming", "byte_level") == b" coming"
    assert stored_token_to_bytes("Ċ", "byte_level") == b"\n"
    assert stored_token_to_bytes("<|endoftext|>", "byte_level", special=True) == b"<|endoftext|>"


def test_sentencepiece_tokens():
    assert stored_token_to_bytes("▁coming", "sentencepiece") == b" coming"
    assert stored_token_to_bytes("<0xE2>", "sentencepiece") == b"\xe2"


def test_invalid_utf8_reads_as_hex_bytes():
    assert bytes_to_text(b"\xe2\x80") == "<0xE2><0x80>"
    assert bytes_to_text("é".encode()) == "é"


def test_display_makes_spaces_and_controls_visible():
    assert display_token(" coming") == "␣coming"
    assert display_token("a ") == "a␣"
    assert display_token("  ") == "␣␣"
    assert display_token("\x1b[31m") == "\\x1b[31m"
    assert display_token("a\nb") == "a\\nb"
    assert display_token("nul\x00") == "nul\\x00"
    assert display_token("\u202eevil") == "\\u202eevil"
    assert display_token("[/]") == "[/]"  # markup is left to rich.text.Text, which never parses it


def test_vocabulary_packing():
    vocab = Vocabulary.from_bytes([b"a", b"", b"\xff", b" the"])
    assert len(vocab) == 4
    assert vocab.token_bytes(3) == b" the"
    assert vocab.texts == ["a", "", "<0xFF>", " the"]
    padded = vocab.padded_to(6)
    assert padded.text(5) == "<unused 5>"
