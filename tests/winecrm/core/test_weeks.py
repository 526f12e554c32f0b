"""French formatting helpers (winecrm.core.weeks) that customers' texts go through."""

from __future__ import annotations

from winecrm.core.weeks import NBSP, NNBSP, french_spacing


def test_french_spacing_puts_no_break_spaces_where_french_typography_wants_them():
    text = "Merci ! Votre code : RETOUR15 ; -15 % sur « votre commande » ? Dès 12 €."
    assert french_spacing(text) == (f"Merci{NNBSP}! Votre code{NBSP}: RETOUR15{NNBSP}; -15{NBSP}% sur "
                                    f"«{NNBSP}votre commande{NNBSP}»{NNBSP}? Dès 12{NBSP}€.")
    # already right, or nothing to do: unchanged
    assert french_spacing(french_spacing(text)) == french_spacing(text)
    assert french_spacing("Bonne journée.") == "Bonne journée."
