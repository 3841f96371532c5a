"""Spoken forms: display words as the aligner hears them (no models)."""

from __future__ import annotations

from pipeline.spoken import (
    normalize_text,
    number_words,
    ordinal_words,
    spoken_forms,
    spoken_words,
    tokenize,
    year_words,
)


def test_numbers_read_as_words():
    assert number_words(42) == ["forty", "two"]
    assert number_words(1_000_342) == ["one", "million", "three", "hundred", "forty", "two"]
    assert ordinal_words(21) == ["twenty", "first"]
    assert ordinal_words(12) == ["twelfth"]
    assert year_words(1984) == ["nineteen", "eighty", "four"]
    assert year_words(2005) == ["two", "thousand", "five"]
    assert year_words(1905) == ["nineteen", "oh", "five"]
    assert spoken_words("2026") == ["twenty", "twenty", "six"]
    # ...and the other ways people say it are offered to the aligner
    assert ["two", "thousand", "twenty", "six"] in spoken_forms("2026")
    assert ["one", "hundred", "and", "five"] in spoken_forms("105")
    assert spoken_words("42%") == ["forty", "two", "percent"]
    assert spoken_words("$5") == ["five", "dollars"]
    assert spoken_words("$1") == ["one", "dollar"]
    assert spoken_words("$5.50")[:2] == ["five", "dollars"]
    assert spoken_words("3.14") == ["three", "point", "one", "four"]
    assert spoken_words("1,200") == ["one", "thousand", "two", "hundred"]
    assert spoken_words("3rd") == ["third"]
    assert spoken_words("1990s") == ["nineteen", "nineties"]
    assert spoken_words("007") == ["zero", "zero", "seven"]


def test_letters_digits_and_camel_case_are_split():
    assert spoken_words("P2") == ["p", "two"]  # GRID's "p two", as Whisper writes it
    assert spoken_words("MP3") == ["m", "p", "three"]
    assert spoken_words("MMLatch") == ["m", "m", "latch"]
    assert spoken_words("YouTube") == ["you", "tube"]
    assert spoken_words("McDonald") == ["mcdonald"]
    assert spoken_words("well-known") == ["well", "known"]
    assert spoken_words("don't") == ["don't"]
    assert spoken_words("Café") == ["cafe"]
    assert spoken_words("—") == []


def test_tokens_keep_display_text_and_sentence_ends():
    toks = tokenize("And so, my fellow Americans... ask not! Mr. Smith paid $5 — in 2026? Yes")
    assert [t.text for t in toks] == [
        "And", "so", "my", "fellow", "Americans", "ask", "not", "Mr", "Smith", "paid", "$5",
        "in", "2026", "Yes",
    ]
    ends = [t.text for t in toks if t.sentence_end]
    assert ends == ["Americans", "not", "2026"]  # "Mr." is an abbreviation, not an end
    assert toks[12].spoken == ("twenty", "twenty", "six")
    assert tokenize("Hello ... world ?")[0].sentence_end  # stand-alone punctuation
    assert tokenize("Hello ... world ?")[1].sentence_end


def test_normalize_text_for_wer():
    assert normalize_text("It's 42%, OK? The U.S. (in 1999)!") == [
        "it's", "forty", "two", "percent", "ok", "the", "u", "s", "in", "nineteen", "ninety",
        "nine",
    ]
