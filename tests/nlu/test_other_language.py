"""A message wholly in Spanish, told apart from Spanish words in an English thread."""

from __future__ import annotations

import pytest

from nlu_components.other_language import is_spanish


@pytest.mark.parametrize("text", [
    "hola, quiero una cita",
    "Hola buenos días, necesito una cita para mi hijo",
    "¿Cuánto cuesta la limpieza?",
    "me duele mucho la muela",
    "puedo cambiar mi cita al viernes?",
    "no entiendo, hablan español?",
])
def test_wholly_spanish(text):
    assert is_spanish(text)


@pytest.mark.parametrize("text", [
    "si", "sí", "gracias", "muchas gracias", "hola", "si por favor", "no",
    "I need a cita please", "si, the 10am is fine", "gracias, see you then",
    "my son has a temperature", "a", "", "123", "no me",
])
def test_english_thread_or_too_little_to_tell(text):
    assert not is_spanish(text)
