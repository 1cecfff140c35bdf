"""The README's configuration table is generated from the settings, and kept in step."""

from __future__ import annotations

from pathlib import Path

from lokey.services.settings import API_ENV, CONTROLLER_ENV, FORTUNA_ENV, VIRTIO_ENV
from lokey.services.settings_table import BEGIN, END, MEANINGS, main, render

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_holds_the_generated_table() -> None:
    text = README.read_text()
    inside = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    assert inside.strip() == render().strip(), (
        "README.md is out of date: run python -m lokey.services.settings_table --write README.md"
    )


def test_every_variable_of_every_service_has_a_row_and_a_meaning() -> None:
    table = render()
    for service, names in (
        ("controller", CONTROLLER_ENV),
        ("fortuna", FORTUNA_ENV),
        ("virtio", VIRTIO_ENV),
        ("api", API_ENV),
    ):
        for name in names:
            assert f"| {service} | `{name}` |" in table
            assert MEANINGS.get(name), f"{name} has no meaning in settings_table.MEANINGS"


def test_defaults_and_rules_come_from_the_fields() -> None:
    table = render()
    assert "| api | `TRNG_QUEUE_SIZE` | 1,000,000 | >= 10, <= 1,000,000 |" in table
    assert "| api | `VIRTIO_SEEDING_SOURCE` | trng | trng / fortuna / both |" in table
    assert "| virtio | `LOKEY_VIRTIO_PIPE_MODE` | 0660 |" in table


def test_write_replaces_only_the_text_between_the_markers(tmp_path: Path) -> None:
    target = tmp_path / "README.md"
    target.write_text(f"before\n{BEGIN}\nstale\n{END}\nafter\n")
    assert main(["--write", str(target)]) == 0
    text = target.read_text()
    assert text.startswith(f"before\n{BEGIN}\n| service |")
    assert text.endswith(f"{END}\nafter\n")
    assert "stale" not in text


def test_write_refuses_a_file_without_the_markers(tmp_path: Path) -> None:
    target = tmp_path / "README.md"
    target.write_text("no markers\n")
    assert main(["--write", str(target)]) == 2
    assert target.read_text() == "no markers\n"
