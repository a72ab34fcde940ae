"""How long finished jobs are kept: ZYRA_JOB_TTL_S against ZYRA_RESULT_TTL_S."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.settings import Settings

DAY = 86400


def test_a_job_is_kept_as_long_as_its_outputs_unless_told(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert (Settings().result_ttl_s, Settings().job_ttl_s) == (7 * DAY, 7 * DAY)
    monkeypatch.setenv("ZYRA_RESULT_TTL_S", str(30 * DAY))  # an operator who keeps outputs longer
    assert Settings().job_ttl_s == 30 * DAY
    monkeypatch.setenv("ZYRA_JOB_TTL_S", str(90 * DAY))
    assert Settings().job_ttl_s == 90 * DAY


def test_a_job_kept_less_long_than_its_outputs_stops_the_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ZYRA_RESULT_TTL_S", str(2 * DAY))
    monkeypatch.setenv("ZYRA_JOB_TTL_S", str(DAY))
    with pytest.raises(ValidationError, match=r"ZYRA_JOB_TTL_S \(86400\) is below "
                       r"ZYRA_RESULT_TTL_S \(172800\)"):  # fmt: skip
        Settings()


def test_redis_event_streams_outlive_the_longest_run_past_the_job_ttl() -> None:
    """Their own expiry is a backstop for the sweep: never under a running job."""
    settings = Settings(job_ttl_s=3600, result_ttl_s=600, async_timeout_max_s=7200)
    assert settings.event_ttl_s == 3600 + 7200
