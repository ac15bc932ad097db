"""The SDK's code tables mirror crates/jobwire-proto/codes.json exactly."""

from __future__ import annotations

import json

import jobwire
from conftest import REPO
from jobwire import errors

CODES = json.loads((REPO / "crates" / "jobwire-proto" / "codes.json").read_text())


def test_error_codes_match_the_server_table() -> None:
    server = {(c["name"], c["number"], c["http_status"]) for c in CODES["error_codes"]}
    ours = {(c.name, c.number, c.http_status) for c in errors.ERROR_CODES}
    assert ours == server
    assert len(errors.ERROR_CODES) == len(CODES["error_codes"])


def test_close_codes_match_the_server_table() -> None:
    server = {(c["name"], c["number"], c["action"]) for c in CODES["close_codes"]}
    ours = {(c.name, c.number, c.action) for c in errors.CLOSE_CODES}
    assert ours == server


def test_every_code_has_its_class_exported_and_rooted_in_jobwire_error() -> None:
    for row in errors.ERROR_CODES:
        cls = row.exception
        assert issubclass(cls, jobwire.JobwireError)
        assert (cls.code, cls.number, cls.http_status) == (row.name, row.number, row.http_status)
        assert getattr(jobwire, cls.__name__) is cls
        assert isinstance(errors.error_for(row.name, "m"), cls)


def test_close_actions_follow_the_ranges_for_unknown_codes() -> None:
    assert errors.close_action(4123) == "reconnect"
    assert errors.close_action(4777) == "stop"
    assert errors.close_action(None) == "reconnect"
    assert errors.close_action(4501) == "refresh_token"
