"""The platform's named secrets as the registry keeps them (`dash_ray.catalog.named_secrets`):
put and listed by admins, never read back by any route; a secret a pipeline's spec refers to
cannot be deleted; a pipeline's process is handed, at its start, the values its own spec
refers to and nothing else."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping

from dash_ray.catalog import Catalog, SecretInfo
from dash_ray.errors import ConflictError, NotFoundError, SpecError
from dash_ray.spec import SECRET_NAME_PATTERN, PipelineSpec, secret_names

__all__ = ["Secrets"]


class Secrets:
    """Named secrets in the catalog `catalog()` gives, checked against `specs()` (every
    pipeline's spec by id)."""

    def __init__(self, catalog: Callable[[], Catalog], specs: Callable[[], Mapping[str, PipelineSpec]]) -> None:
        self._catalog = catalog
        self._specs = specs

    async def put(self, name: str, value: object) -> bool:
        """Create or replace a secret; True when created. SpecError for a bad name or value.
        Pipelines that use it see the new value at their next start (`restart`)."""
        _check_name(name)
        if not isinstance(value, str) or not value:
            raise SpecError("give {\"value\": \"...\"}, a non-empty string", where="value")
        try:
            return await asyncio.to_thread(self._catalog().secrets.put, name, value)
        except ValueError as exc:
            raise SpecError(str(exc), where="value") from None

    async def infos(self) -> list[SecretInfo]:
        return await asyncio.to_thread(self._catalog().secrets.list)

    async def delete(self, name: str) -> None:
        """Forget a secret; ConflictError while a pipeline's spec refers to it, NotFoundError
        when there is none."""
        users = sorted(pid for pid, spec in self._specs().items() if name in secret_names(spec))
        if users:
            raise ConflictError(f"secret {name!r} is used by pipeline {', '.join(users)}; "
                                "change or delete those first", where=name)
        if not await asyncio.to_thread(self._catalog().secrets.delete, name):
            raise NotFoundError(f"no secret {name!r}", where=name)

    async def for_pipeline(self, pipeline_id: str) -> dict[str, str]:
        """The values of the secrets `pipeline_id`'s spec refers to (NotFoundError naming any
        that is missing); asked by the pipeline's own process at its start."""
        spec = self._specs().get(pipeline_id)
        if spec is None:
            raise NotFoundError(f"no pipeline {pipeline_id!r}", where=pipeline_id)
        return await asyncio.to_thread(self._catalog().secrets.values, secret_names(spec))

    async def missing(self, spec: PipelineSpec) -> list[str]:
        """The secrets `spec` refers to that do not exist, in the order it refers to them."""
        wanted = secret_names(spec)
        if not wanted:
            return []
        have = await asyncio.to_thread(self._catalog().secrets.names)
        return sorted(wanted - have)


def _check_name(name: str) -> None:
    if not re.match(SECRET_NAME_PATTERN, name):
        raise SpecError("a secret name is 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' and '-', "
                        "starting with a letter or digit", where="name")
