"""Text repair of the dump's double-encoded UTF-8."""

from __future__ import annotations

import pytest

from jamrec.textfix import damage_text, repair_text


@pytest.mark.parametrize(
    ("damaged", "expected"),
    [
        ("Jerry GonzÃ¡lez", "Jerry González"),
        (damage_text("야광토끼 (neon bunny)"), "야광토끼 (neon bunny)"),
        ("Crystal Kay", "Crystal Kay"),
        (damage_text("こんなに近くで..."), "こんなに近くで..."),
        # 'Á' is C3 81, and 0x81 is one of the bytes cp1252 leaves undefined
        ("\u00c3\u0081guas de Mar\u00c3\u00a7o", "Águas de Março"),
        ("LÃ¥psley", "Låpsley"),  # ftfy leaves this one
        ("\u00ec\u00a0\u201e\u00ec\u00a7\u201e", "전진"),  # ... and this one
        ("Shouldâ€™ve Been Us", "Should’ve Been Us"),  # curly quotes are kept
        ("JheneÌ\x81 Aiko", "Jhené Aiko"),  # decomposed accent, recomposed (NFC)
        ('The "W" Song', 'The "W" Song'),
        ("Sigur Rós", "Sigur Rós"),  # already correct: left alone
        ("", ""),
        (None, None),
    ],
)
def test_repair(damaged, expected):
    assert repair_text(damaged) == expected


@pytest.mark.parametrize("text", ["Björk", "周杰倫", "Ðорогой", "ÍÏÐÝ", "Ádám 야광토끼", "a’b"])
def test_damage_then_repair_round_trips(text):
    assert repair_text(damage_text(text)) == text
