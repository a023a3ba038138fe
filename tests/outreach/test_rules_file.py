"""data/outreach_rules.yml itself: the states' area codes are complete and right, and Rasa's
training, which reads every file under data/ that looks like training data, leaves it alone."""

from __future__ import annotations

import phonenumbers
import pytest
import yaml
from phonenumbers import geocoder
from rasa.shared.importers.rasa import RasaFileImporter

from booking.outreach.gate import RULES_FILE
from booking.settings import PROJECT_ROOT

REGIONS = {region["name"]: region for region in yaml.safe_load(RULES_FILE.read_text())["regions"]}


def _state_of(area_code: int) -> str:
    """The US state phonenumbers' geocoder names for an area code ('' when none)."""
    for line in ("5550100", "2345678"):
        number = phonenumbers.parse(f"+1{area_code}{line}")
        if phonenumbers.is_valid_number(number):
            return geocoder.description_for_number(number, "en")
    return ""


@pytest.mark.parametrize("state", ["Florida", "Oklahoma", "Maryland"])
def test_each_state_lists_exactly_the_area_codes_the_geocoder_places_there(state):
    geocoded = {code for code in range(200, 1000) if _state_of(code) == state}
    assert set(REGIONS[state]["area_codes"]) == geocoded, (
        f"{state}'s area codes in {RULES_FILE.name} differ from phonenumbers' geocoder: a new "
        "overlay code must be listed so its numbers keep the state's law")


def test_rasa_training_does_not_read_the_rules_file():
    importer = RasaFileImporter(training_data_paths=[str(PROJECT_ROOT / "data")])
    read = {*importer._nlu_files, *importer._story_files, *importer._conversation_test_files}
    assert str(RULES_FILE) not in read
    assert any(path.endswith("nlu/booking.yml") for path in read)  # it does read data/
