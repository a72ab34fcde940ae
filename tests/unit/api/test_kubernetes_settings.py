"""Kubernetes settings: one scheme, `ZYRA_K8S__<FIELD>`; the older flat names still read."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import KubernetesSettings, Settings


def test_every_kubernetes_setting_is_read_under_k8s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZYRA_K8S__NAMESPACE", "zyra")
    monkeypatch.setenv("ZYRA_K8S__KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("ZYRA_K8S__PULL_FAILURE_TIMEOUT_S", "30")
    monkeypatch.setenv("ZYRA_K8S__LOG_FALLBACK_AFTER_S", "2.5")
    k8s = Settings(data_dir=tmp_path / "data").k8s
    assert isinstance(k8s, KubernetesSettings)
    assert (k8s.namespace, k8s.kubeconfig) == ("zyra", tmp_path / "kubeconfig")
    assert (k8s.pull_failure_timeout_s, k8s.log_fallback_after_s) == (30.0, 2.5)


def test_the_earlier_flat_names_still_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZYRA_K8S_KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setenv("ZYRA_K8S_PULL_FAILURE_TIMEOUT_S", "3")
    monkeypatch.setenv("ZYRA_K8S_LOG_FALLBACK_AFTER_S", "1")
    settings = Settings(data_dir=tmp_path / "data")
    assert settings.k8s.kubeconfig == tmp_path / "kubeconfig"
    assert (settings.k8s.pull_failure_timeout_s, settings.k8s.log_fallback_after_s) == (3.0, 1.0)
    assert tmp_path / "kubeconfig" in settings.private_paths  # no command may read it


def test_the_k8s_name_wins_over_the_flat_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZYRA_K8S_PULL_FAILURE_TIMEOUT_S", "3")
    monkeypatch.setenv("ZYRA_K8S__PULL_FAILURE_TIMEOUT_S", "45")
    assert Settings(data_dir=tmp_path / "data").k8s.pull_failure_timeout_s == 45.0


def test_the_defaults_are_unchanged(tmp_path: Path) -> None:
    k8s = Settings(data_dir=tmp_path / "data").k8s
    assert (k8s.kubeconfig, k8s.pull_failure_timeout_s, k8s.log_fallback_after_s) == (
        None,
        120.0,
        5.0,
    )


@pytest.mark.parametrize(
    "name", ["ZYRA_K8S__PULL_FAILURE_TIMEOUT_S", "ZYRA_K8S_PULL_FAILURE_TIMEOUT_S"]
)
def test_a_timeout_must_be_positive(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, "0")
    with pytest.raises(ValidationError, match="pull_failure_timeout_s"):
        Settings(data_dir=tmp_path / "data")
