"""Pronunciations for words the aligner's dictionary lacks: spelled letters for vowel-less
acronyms ("nlp" -> EH N EH L P IY) and simple English letter-to-sound rules for the rest, in the
ARPABET phones of pocketsphinx's US-English model, so "Zyxqv" or "Amerrikans" are aligned like
any other word.
"""

from __future__ import annotations

import re

_LETTER_NAMES = {
    "a": "EY", "b": "B IY", "c": "S IY", "d": "D IY", "e": "IY", "f": "EH F", "g": "JH IY",
    "h": "EY CH", "i": "AY", "j": "JH EY", "k": "K EY", "l": "EH L", "m": "EH M", "n": "EH N",
    "o": "OW", "p": "P IY", "q": "K Y UW", "r": "AA R", "s": "EH S", "t": "T IY", "u": "Y UW",
    "v": "V IY", "w": "D AH B AH L Y UW", "x": "EH K S", "y": "W AY", "z": "Z IY",
}

# Ordered longest-first within each letter; a rough but phone-set-valid English rule set.
_LTS_RULES: list[tuple[str, str]] = [
    ("tion", "SH AH N"), ("sion", "ZH AH N"), ("ough", "AO"), ("augh", "AO"), ("eigh", "EY"),
    ("igh", "AY"), ("tch", "CH"), ("sch", "S K"), ("dge", "JH"), ("que", "K"),
    ("ch", "CH"), ("sh", "SH"), ("th", "TH"), ("ph", "F"), ("wh", "W"), ("ck", "K"),
    ("ng", "NG"), ("gh", "G"), ("qu", "K W"), ("kn", "N"), ("wr", "R"),
    ("ee", "IY"), ("ea", "IY"), ("oo", "UW"), ("ou", "AW"), ("ow", "OW"), ("oi", "OY"),
    ("oy", "OY"), ("ai", "EY"), ("ay", "EY"), ("au", "AO"), ("aw", "AO"), ("ie", "IY"),
    ("ei", "EY"), ("ey", "IY"), ("oa", "OW"), ("ue", "UW"), ("ew", "UW"),
    ("ar", "AA R"), ("er", "ER"), ("ir", "ER"), ("ur", "ER"), ("or", "AO R"),
    ("a", "AE"), ("b", "B"), ("d", "D"), ("e", "EH"), ("f", "F"), ("h", "HH"),
    ("i", "IH"), ("j", "JH"), ("k", "K"), ("l", "L"), ("m", "M"), ("n", "N"), ("o", "AA"),
    ("p", "P"), ("q", "K"), ("r", "R"), ("s", "S"), ("t", "T"), ("u", "AH"), ("v", "V"),
    ("w", "W"), ("x", "K S"), ("z", "Z"),
]
VOWELS = set("aeiouy")


def letter_to_sound(word: str) -> str:
    """ARPABET phones for an English-looking word from spelling rules."""
    w = re.sub(r"[^a-z]", "", word.lower())
    if len(w) > 3 and w.endswith("e") and w[-2] not in VOWELS:
        w = w[:-1]  # silent final e
    phones: list[str] = []
    i = 0
    while i < len(w):
        if i > 0 and w[i] == w[i - 1] and w[i] not in VOWELS:
            i += 1  # double consonants are one sound
            continue
        ch = w[i]
        if ch == "c":
            phones.append("S" if w[i + 1 : i + 2] in ("e", "i", "y") else "K")
            i += 1
            continue
        if ch == "g":
            phones.append("JH" if w[i + 1 : i + 2] in ("e", "i", "y") and i > 0 else "G")
            i += 1
            continue
        if ch == "y":
            phones.append("Y" if i == 0 else ("IY" if i == len(w) - 1 else "IH"))
            i += 1
            continue
        for graph, ph in _LTS_RULES:
            if w.startswith(graph, i):
                phones.extend(ph.split())
                i += len(graph)
                break
        else:
            i += 1
    return " ".join(phones) or "AH"


def spelled(word: str) -> str:
    return " ".join(_LETTER_NAMES[ch] for ch in word if ch in _LETTER_NAMES)
