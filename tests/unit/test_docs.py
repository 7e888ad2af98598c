"""Generated documentation stays in step with the code."""

from pathlib import Path

from runyard.cli.docgen import render
from runyard.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_doc_is_generated_from_the_settings() -> None:
    assert (ROOT / "docs" / "configuration.md").read_text() == render(), "run `make docs`"


def test_every_setting_is_described() -> None:
    assert all(field.description for field in Settings.model_fields.values())
