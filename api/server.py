"""The application factory: `create_app(settings)`; services are built once in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from api.command_env import command_environment
from api.errors import install_error_handlers
from api.jobs.service import JobService
from api.jobs.store import SqliteJobStore
from api.routers import cli, health, jobs
from api.security.api_keys import ApiKeyRing
from api.settings import Settings
from runner.catalog import CommandCatalog, ExposurePolicy
from runner.execute import CommandExecutor, Zygote


def _unsupported(settings: Settings) -> list[str]:
    """Settings this version accepts by name but cannot serve yet."""
    problems = []
    if settings.backend != "local":
        problems.append(f"ZYRA_BACKEND={settings.backend}")
    if settings.redis_url:
        problems.append("ZYRA_REDIS_URL")
    if settings.storage != "local":
        problems.append(f"ZYRA_STORAGE={settings.storage}")
    return problems


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    unsupported = _unsupported(settings)
    if unsupported:
        raise RuntimeError(f"not supported by this version yet: {', '.join(unsupported)}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        policy = ExposurePolicy(tuple(settings.stages), tuple(settings.commands_deny))
        catalog = await anyio.to_thread.run_sync(CommandCatalog.from_zyra, policy)
        env = command_environment(settings)
        zygote = Zygote(env)
        await anyio.to_thread.run_sync(zygote.start)
        app.state.settings = settings
        app.state.catalog = catalog
        app.state.key_ring = ApiKeyRing.from_sources(
            settings.api_keys, settings.api_keys_file, settings.api_key
        )
        app.state.job_service = JobService(
            settings,
            catalog,
            SqliteJobStore(settings.data_dir / "jobs.sqlite3"),
            CommandExecutor(zygote, kill_grace_s=settings.kill_grace_s),
            env,
        )
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(zygote.close)

    app = FastAPI(
        title="zyra-orchestrator",
        summary="Zyra's command line as a service: acquire, process, visualize, disseminate, run.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(cli.router)
    app.include_router(jobs.router)
    return app
