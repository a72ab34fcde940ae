"""The error for a store the service relies on being unreachable (Redis, S3)."""


class DependencyUnavailableError(RuntimeError):
    """A store the service relies on cannot be reached (e.g. Redis is down)."""

    def __init__(self, dependency: str, cause: Exception) -> None:
        self.dependency = dependency
        super().__init__(f"{dependency} is unavailable: {cause}")
