"""An enclave as a Ray actor: the actor loads the signed file on its node's VM and makes ecalls.

The handle's ``ecalls.NAME(...)`` waits for the result; ``ecalls.NAME.remote(...)`` returns a
Ray ``ObjectRef`` (``ray.get``-able; an enclave error comes out of :func:`get` as the typed
enclavekit error, out of plain ``ray.get`` as a ``RayTaskError`` wrapping
:class:`EcallFailed`). Object references passed as arguments (top level, or values of a dict
argument) are resolved in the actor, so one enclave's output goes to another through Ray's
object store without passing through the driver.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from ..errors import EnclaveKitError, EnclaveLost
from ..host.vm import VM
from ..vm import protocol as p
from .resources import parse_node

__all__ = ["EcallFailed", "EnclaveActor", "EnclaveHandle", "get"]


def _resolve(value: Any) -> Any:
    if isinstance(value, ray.ObjectRef):
        return ray.get(value)
    if isinstance(value, dict):
        return {k: ray.get(v) if isinstance(v, ray.ObjectRef) else v for k, v in value.items()}
    return value


def node_vm() -> str:
    """The VM of the Ray node this process runs on (its ``enclavekit_vm:`` resource).

    Raises:
        EnclaveKitError: the node advertises no enclavekit VM.
    """
    me = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if node.get("NodeID") == me:
            parsed = parse_node(node.get("Resources", {}))
            if parsed is not None:
                return parsed[0]
    raise EnclaveKitError(f"Ray node {me} hosts no enclavekit VM (start it with "
                          "'enclavekit ray node --size SIZE')")


class EnclaveActor:
    """The actor: one enclave loaded on the VM of the node it was placed on."""

    def __init__(self, image: bytes, data_dir: str | None) -> None:
        self.vm_name = ""
        self._failed: EcallFailed | None = None
        self._vm: VM | None = None
        try:
            self.vm_name = node_vm()
            self._vm = VM.open(self.vm_name, data_dir)
            self._enclave = self._vm.load_bytes(image)
        except EnclaveKitError as exc:  # reported by info(), typed
            self._failed = EcallFailed(p.error_info(exc))
            if self._vm is not None:
                self._vm.close()

    def info(self) -> dict[str, Any]:
        """Where the enclave runs and what it is.

        Raises:
            EcallFailed: the enclave could not be loaded (why, typed).
        """
        if self._failed is not None or self._vm is None:
            raise self._failed or EcallFailed(p.error_info(EnclaveKitError("not loaded")))
        e = self._enclave
        return {"vm": self.vm_name, "size": self._vm.size, "enclave_id": e.enclave_id,
                "mrenclave": e.mrenclave.hex(), "mrsigner": e.mrsigner.hex(),
                "debug": e.debug, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def call(self, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Make ecall ``name``; an enclavekit error comes back as its portable form."""
        try:
            return self._enclave.call(name, tuple(_resolve(a) for a in args),
                                      {k: _resolve(v) for k, v in kwargs.items()})
        except EnclaveKitError as exc:
            raise EcallFailed(p.error_info(exc)) from None

    def close(self) -> None:
        """Unload the enclave and disconnect from the VM."""
        if self._vm is None or self._failed is not None:
            return
        with contextlib.suppress(EnclaveKitError, OSError):
            self._enclave.close()
        self._vm.close()


class EcallFailed(Exception):
    """An enclavekit error raised in an enclave actor, carried through Ray as its type name
    and message (:func:`get` raises the typed error again; plain ``ray.get`` raises a
    ``RayTaskError`` wrapping this)."""

    def __init__(self, info: p.ErrorInfo) -> None:
        super().__init__(f"{info.type}: {info.message}")
        self.info = info

    def __reduce__(self) -> tuple[type[EcallFailed], tuple[p.ErrorInfo]]:
        return (EcallFailed, (self.info,))


def get(refs: Any, *, timeout: float | None = None, where: str = "") -> Any:
    """``ray.get`` for enclave ecalls: results, or the typed enclavekit error.

    Raises:
        EnclaveLost: the actor (its node or worker) is gone, or did not answer in ``timeout``.
        EnclaveKitError: the ecall failed in the enclave (its type and message).
    """
    try:
        value = ray.get(refs, timeout=timeout)
    except RayActorError as exc:
        raise EnclaveLost(f"enclave actor {where or ''} is gone (its Ray node or worker died): "
                          f"{str(exc).splitlines()[0]}") from None
    except GetTimeoutError:
        raise EnclaveLost(f"enclave actor {where} did not answer within {timeout} s") from None
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, EcallFailed):
            error = p.rebuild_error(cause.info)
            if isinstance(error, EnclaveLost) and where:  # say which node's enclave it was
                error = EnclaveLost(f"{error} {where}")
            raise error from None
        raise EnclaveKitError(f"enclave actor {where} failed: {str(exc).splitlines()[0]}") \
            from None
    return value


class _Ecall:
    """One ecall of a placed enclave: call it to wait, ``.remote`` for an ObjectRef."""

    def __init__(self, handle: EnclaveHandle, name: str) -> None:
        self._handle = handle
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return get(self.remote(*args, **kwargs), where=self._handle.where)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        """The ecall's ObjectRef (resolve it with :func:`get`)."""
        actor: Any = self._handle.actor
        return actor.call.remote(self.__name__, list(args), kwargs)


class _Ecalls:
    def __init__(self, handle: EnclaveHandle) -> None:
        self._handle = handle

    def __getattr__(self, name: str) -> _Ecall:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Ecall(self._handle, name)


class EnclaveHandle:
    """A placed enclave: its actor, where it runs and its ecalls."""

    def __init__(self, actor: Any, info: dict[str, Any], epc_mib: int,
                 on_close: Callable[[], None] | None = None) -> None:
        self.actor = actor
        self.info = info
        self.epc_mib = epc_mib
        self.ecalls = _Ecalls(self)
        self._on_close = on_close
        self._closed = False

    @property
    def vm(self) -> str:
        """The VM (node) the enclave runs on."""
        return str(self.info["vm"])

    @property
    def size(self) -> str:
        """The size of that VM."""
        return str(self.info["size"])

    @property
    def mrenclave(self) -> bytes:
        return bytes.fromhex(self.info["mrenclave"])

    @property
    def where(self) -> str:
        return f"(enclave {self.info['enclave_id']} on VM {self.vm})"

    def __repr__(self) -> str:
        return f"<EnclaveHandle {self.info['mrenclave'][:16]}… on {self.vm} ({self.size})>"

    def close(self) -> None:
        """Unload the enclave and end its actor (a gone actor is fine)."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            ray.get(self.actor.close.remote(), timeout=10)
        with contextlib.suppress(Exception):
            ray.kill(self.actor)
        if self._on_close is not None:
            self._on_close()

    def __enter__(self) -> EnclaveHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
