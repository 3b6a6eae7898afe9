"""medmm.config: attribute docstrings (the one place options are documented)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from medmm.config import attribute_docs, attribute_docs_in
from medmm.errors import ConfigError


@dataclass
class Knobs:
    """Toy options."""

    size: int = 3
    """How many.

    Spread over lines."""
    name: str = "x"  # a comment is not a docstring
    flag: bool = False
    """On or off."""

    def method(self) -> None:
        """Not a field."""


def test_attribute_docs_read_the_string_under_each_field_in_one_line():
    assert attribute_docs(Knobs) == {"size": "How many. Spread over lines.", "flag": "On or off."}


def test_attribute_docs_in_a_file_without_importing_it(tmp_path):
    source = tmp_path / "settings.py"
    source.write_text('raise SystemExit("never imported")\n\nclass S:\n    a: int = 1\n    """The a."""\n')
    assert attribute_docs_in(source, "S") == {"a": "The a."}
    with pytest.raises(ConfigError):
        attribute_docs_in(source, "Missing")
