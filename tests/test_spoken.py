"""Spoken forms: display words as the aligner hears them, numbers read by num2words (no models)."""

from __future__ import annotations

import re

from pipeline.spoken import (
    normalize_text,
    number_forms,
    number_words,
    ordinal_forms,
    ordinal_words,
    spoken_forms,
    spoken_words,
    tokenize,
    year_forms,
    year_words,
)


def said(word: str) -> list[str]:
    """Every form of a word, as text."""
    return [" ".join(form) for form in spoken_forms(word)]


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



def test_plain_reading_first_and_the_british_and_beside_it():
    assert said("342") == ["three hundred forty two", "three hundred and forty two"]
    assert number_forms(1200) == [["one", "thousand", "two", "hundred"]]  # no "and" to say
    assert number_forms(100) == [["one", "hundred"]]
    assert said("342,000") == ["three hundred forty two thousand", "three hundred and forty two thousand"]
    assert said("1,000,342") == [
        "one million three hundred forty two", "one million three hundred and forty two",
    ]
    # num2words says "and" in every group, as British English does
    assert said("123,456")[1] == "one hundred and twenty three thousand four hundred and fifty six"
    assert ordinal_forms(101) == [["one", "hundred", "first"], ["one", "hundred", "and", "first"]]
    assert said("105%") == ["one hundred five percent", "one hundred and five percent"]
    assert said("$105") == ["one hundred five dollars", "one hundred and five dollars"]


def test_years_are_read_as_years_first():
    assert year_forms(2005) == [["two", "thousand", "five"], ["two", "thousand", "and", "five"]]
    assert year_words(1900) == ["nineteen", "hundred"]
    assert year_words(2000) == ["two", "thousand"]
    assert year_words(2010) == ["twenty", "ten"]
    assert year_words(2100) == ["twenty", "one", "hundred"]
    assert said("2026") == ["twenty twenty six", "two thousand twenty six", "two thousand and twenty six"]
    assert said("1984")[:2] == ["nineteen eighty four", "one thousand nine hundred eighty four"]
    # outside 1100-2099, or written with a comma, a four-digit number is a count
    assert said("1066") == ["one thousand sixty six", "one thousand and sixty six"]
    assert said("1,984")[0] == "one thousand nine hundred eighty four"


def test_money_percent_decades_and_clock_times():
    assert said("$5.50") == ["five dollars fifty cents", "five dollars and fifty cents", "five fifty"]
    assert said("$1.01")[0] == "one dollar one cent"
    assert said("£3.50")[0] == "three pounds fifty"
    assert said("$5.5") == ["five point five dollars"]
    assert said("3.5%") == ["three point five percent"]
    assert said(".5") == ["zero point five"]
    assert said("'90s") == ["nineties"]
    assert said("1980s") == ["nineteen eighties"]
    assert said("2000s") == ["two thousands"]
    assert said("10:30") == ["ten thirty"]
    assert said("9:05") == ["nine oh five"]
    assert said("9:00") == ["nine", "nine o'clock"]


def test_codes_and_identifiers():
    # a leading zero, or more digits than the trillions: read digit by digit
    assert said("0123") == ["zero one two three"]
    assert number_words(10**15) == ["one"] + ["zero"] * 15
    assert said("12345678")[0].startswith("twelve million")
    assert said("COVID-19") == ["covid nineteen"]
    assert said("B2B") == ["b two b"]
    assert said("F16") == ["f sixteen"]


def test_every_form_is_dictionary_words_and_the_first_has_no_and():
    """num2words writes "forty-two" and "one thousand, two hundred"; the aligner's dictionary
    has "forty" and "two", so no form may keep a hyphen or a comma."""
    words = [str(n) for n in range(0, 2200, 7)] + ["1st", "22nd", "73rd", "1,234,567", "$12,345", "99%"]
    for word in words:
        forms = spoken_forms(word)
        for form in forms:
            assert form and all(re.fullmatch(r"[a-z']+", w) for w in form), (word, form)
        assert "and" not in forms[0], (word, forms)
