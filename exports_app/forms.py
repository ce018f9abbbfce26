"""Forms of the export pages."""

from __future__ import annotations

from django import forms


class KeyImportForm(forms.Form):
    private_key = forms.CharField(
        label="Private key (OpenSSH format)",
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text="The key already registered with Connect for this account's user. It is "
        "stored encrypted and never shown again.",
    )
