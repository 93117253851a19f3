"""Loaded by the LocalStack process only (tools/localstack.py puts this folder on its path).

LocalStack 4.14 reopens a FIFO message group as soon as one of its messages becomes visible
again (an expired or a released receipt), while others of the group are still in flight; a
later message of the group can then reach a second receiver ahead of the in-flight ones.
AWS keeps the group closed: "Inflight messages block delivery of available messages within
the same message group" (SQS developer guide, FIFO delivery logic). The patch below makes
the endpoint do what AWS does: a message that comes back is put in its group, and the group
reopens only once LocalStack's own check (``update_message_group_visibility``) finds none of
it in flight. tests/e2e/test_fifo.py checks the endpoint behaves so.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

TARGET = "localstack.services.sqs.models"


def _patch(models: ModuleType) -> None:
    fifo = models.FifoQueue
    original = fifo._put_message

    def _put_message(self: Any, message: Any) -> None:
        group = self.get_message_group(message.message_group_id)
        with self.mutex:  # an RLock: the callers hold it too
            if message.receive_count >= 1 and group in self.inflight_groups:
                group.push(message)
                self.update_message_group_visibility(group)
                return
        original(self, message)

    fifo._put_message = _put_message


class _Loader(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        _patch(module)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


sys.meta_path.insert(0, _Finder())
