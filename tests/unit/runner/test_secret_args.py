"""Which arguments carry secrets, how they are masked, and how output is scrubbed."""

from __future__ import annotations

import json
import shlex

import pytest

from runner.catalog import CommandCatalog
from runner.secret_args import MASK, Redactor, is_secret_arg, mask_args, secrets_in


def test_zyras_credential_arguments_are_secret_and_their_lookalikes_are_not(
    catalog: CommandCatalog,
) -> None:
    secret = {
        (stage.name, command.name, arg.name)
        for stage in catalog.stages.values()
        for command in stage.commands.values()
        for arg in command.args.values()
        if arg.secret
    }
    names = {name for _, _, name in secret}
    assert {"password", "credential", "auth", "header", "vimeo_token",
            "vimeo_client_secret", "url_auth", "url_credential"} <= names  # fmt: skip
    assert ("acquire", "ftp", "password") in secret
    assert ("acquire", "http", "credential") in secret
    # an S3 object key, a user name, a file of credentials, a client id: not secrets
    assert not {"key", "user", "credential_file", "vimeo_client_id", "result_key"} & names


@pytest.mark.parametrize(
    ("name", "secret"),
    [("password", True), ("api_key", True), ("apikey", True), ("access_key", True),
     ("client_secret", True), ("bearer_token", True), ("key", False), ("token_url", False),
     ("credential_file", False), ("output", False), ("monkey", False)],
)  # fmt: skip
def test_names_decide(name: str, secret: bool) -> None:
    assert is_secret_arg(name) is secret


def test_catalog_marks_secret_arguments(catalog: CommandCatalog) -> None:
    schema = catalog.resolve("acquire", "ftp").json_schema()["properties"]
    assert schema["password"]["x-zyra"]["secret"] is True
    assert "secret" not in schema["user"]["x-zyra"]


def test_masking_keeps_what_says_which_secret_was_given() -> None:
    args = {
        "password": "hunter2",
        "credential": ["password=hunter2", "token=$API_TOKEN"],
        "auth": "basic:alice:hunter2",
        "header": ["Accept: text/csv", "Authorization: Bearer abc.def", "X-API-Key=k3y"],
        "url_auth": [["https://api.example", "bearer:tok3n"]],
        "key": "objects/a.nc",
        "output": "x.nc",
    }
    assert mask_args(args) == {
        "password": MASK,
        "credential": [f"password={MASK}", f"token={MASK}"],
        "auth": f"basic:{MASK}",
        "header": ["Accept: text/csv", f"Authorization: {MASK}", f"X-API-Key={MASK}"],
        "url_auth": [["https://api.example", f"bearer:{MASK}"]],
        "key": "objects/a.nc",
        "output": "x.nc",
    }
    assert args["password"] == "hunter2"  # a copy


def test_an_inline_pipelines_stages_and_overrides_are_masked_too() -> None:
    args = {
        "config": {"stages": [
            {"stage": "acquire", "command": "ftp",
             "args": {"path": "ftp://h/x", "password": "hunter2", "output": "x"}},
        ]},
        "overrides": ["0.password=s3cret!", "0.output=y"],
    }  # fmt: skip
    masked = mask_args(args)
    assert masked["config"]["stages"][0]["args"] == {
        "path": "ftp://h/x", "password": MASK, "output": "x"
    }  # fmt: skip
    assert masked["overrides"] == [f"0.password={MASK}", "0.output=y"]
    assert secrets_in(args) == ["hunter2", "s3cret!"]


def test_secrets_to_scrub_are_the_secret_parts() -> None:
    args = {"credential": ["password=hunter2"], "auth": "bearer:tok3n-xyz", "user": "alice"}
    assert secrets_in(args) == ["hunter2", "tok3n-xyz"]


def test_output_is_scrubbed_in_every_spelling_a_command_may_print() -> None:
    secret = "it's a s3cret"
    scrub = Redactor([secret, "ab"])
    for spelling in (secret, shlex.quote(secret), json.dumps(secret), repr(secret)):
        assert secret not in scrub(f"Command: zyra acquire ftp --password={spelling} x")
    assert scrub(f"--password={shlex.quote(secret)} ab") == f"--password={MASK} ab"
    assert not Redactor([]) and Redactor([])("text") == "text"
