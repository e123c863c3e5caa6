"""Sidecars for the tracing tests: in this process, on the memory registry, tracing at 100 %."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from sofamesh.config import load_config
from sofamesh.sidecar.app import Sidecar

TRACING = {"enabled": True, "sample_ratio": 1.0, "propagation": ["w3c", "b3", "sofatracer"]}


@asynccontextmanager
async def sidecar(config: dict[str, Any]) -> AsyncIterator[Sidecar]:
    cfg = {"registry": "memory://", "admin": "127.0.0.1:0", "tracing": TRACING, **config}
    car = Sidecar(load_config(cfg, env={}))
    async with anyio.create_task_group() as tg:
        await tg.start(car.run)
        yield car
        car.stop()
