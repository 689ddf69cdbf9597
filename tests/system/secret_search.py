"""Searching everything a running system printed or answered for a secret.

Register each secret (a password, a token) and every text a test saw: log files of the processes,
HTTP answers, CLI output. :meth:`SecretSearch.assert_clean` fails naming where each secret was found,
with the offending line. Secrets are looked for raw and URL-encoded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote


@dataclass
class SecretSearch:
    """Secrets, and the texts (by where they came from) that must not contain any of them."""

    secrets: set[str] = field(default_factory=set)
    texts: list[tuple[str, str]] = field(default_factory=list)

    def secret(self, *values: str) -> None:
        for value in values:
            self.secrets |= {value, quote(value, safe="")}

    def saw(self, where: str, text: str | bytes) -> str:
        """Keep ``text`` (an answer, an output) to search; returns it decoded."""
        decoded = text.decode(errors="replace") if isinstance(text, bytes) else text
        self.texts.append((where, decoded))
        return decoded

    def saw_files(self, paths: Iterable[Path]) -> None:
        for path in paths:
            if path.exists():
                self.saw(str(path.name), path.read_bytes())

    def findings(self) -> list[str]:
        """``where: line`` for every line carrying a secret."""
        return [f"{where}: {line[:300]}" for where, text in self.texts for line in text.splitlines()
                if any(secret in line for secret in self.secrets)]

    def assert_clean(self) -> None:
        found = self.findings()
        assert not found, f"{len(found)} line(s) carry a secret:\n" + "\n".join(found[:20])
        assert self.texts, "nothing was searched"
