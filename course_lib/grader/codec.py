"""What travels between the grader's two kernels, and how (see :mod:`.agent`).

Values travel **by value** (``torch.save``); functions, lambdas and objects that cannot
travel by value stay where they are and travel as handles (:class:`~.proxy.Handle`).
Nothing the student kernel sends can run code in the referee: the referee unpickles with
``torch.load(weights_only=True)``, which accepts only tensors, containers and the classes
of PyTorch, torch-pruning and ``course_lib`` (:func:`allowed_class`), rebuilt without
calling their ``__init__``. A function that changes its arguments in place changes the
caller's objects: :func:`sync_into` copies their new state into them, keeping the identity
of modules and parameters.
"""

from __future__ import annotations

import functools
import importlib
import io
import types
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from .proxy import Handle, KernelUnavailable, Link, Proxy, TransferError, handle_of, not_connected

#: Largest message the referee accepts from the student kernel (bytes).
MAX_MESSAGE_BYTES = 512 * 1024**2
REFEREE, STUDENT = "referee", "student"


# --- what travels: markers for modules and arguments -------------------------------------


class ModuleRef:
    """A module, imported by name on arrival."""

    def __init__(self, name: str) -> None:
        self.name = name


class ArgRef:
    """ "The result is the caller's argument number ``index`` (a keyword when a string)."""

    def __init__(self, index: int | str) -> None:
        self.index = index


class Missing:
    """A name the other kernel does not define."""


#: The grader's own classes that travel in messages.
MARKERS = (Handle, ModuleRef, ArgRef, Missing)
MARKER_MODULES = frozenset(m.__module__ for m in MARKERS)


class Registry:
    """The objects of this kernel that the other kernel holds handles to."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.objects: dict[int, Any] = {}
        self.keys: dict[int, int] = {}

    def handle(self, value: Any) -> Handle:
        key = self.keys.get(id(value))
        if key is None or self.objects.get(key) is not value:
            key = len(self.objects) + 1
            self.objects[key] = value
            self.keys[id(value)] = key
        kind = "function" if callable(value) else "object"
        name = getattr(value, "__qualname__", None) or type(value).__name__
        return Handle(self.owner, key, kind, str(name)[:200])

    def get(self, handle: Handle) -> Any:
        if handle.key not in self.objects:
            raise KernelUnavailable(
                f"{handle.name} no longer exists in the {self.owner} kernel (it was restarted)"
            )
        return self.objects[handle.key]


# --- the classes the referee accepts by value ---------------------------------------------

#: Packages whose classes may arrive in the referee by value (instances are rebuilt without
#: running their ``__init__``; no function of them is ever called by unpickling).
ALLOWED_PACKAGES = ("torch.nn", "course_lib", "torch_pruning")
#: Parts of those packages that are never needed as values.
EXCLUDED_MODULES = (
    "course_lib.grading",
    "course_lib.grader",
    "course_lib.cli",
    "course_lib.paths",
    "course_lib.results",
)


#: numpy globals an array or a numpy scalar needs (a function that only rebuilds arrays).
NUMPY_GLOBALS = frozenset(
    {
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.ndarray",
        "numpy.dtype",
    }
)


def allowed_class(module: str, name: str) -> Any | None:
    """The class ``module.name`` if the referee may rebuild it from a message, else None:
    a class (never a function) of :data:`ALLOWED_PACKAGES`, what numpy arrays need, or one
    of the grader's :data:`MARKERS`."""
    full = f"{module}.{name}"
    if full.startswith("numpy.dtypes.") or full in NUMPY_GLOBALS:
        pass
    elif not module.startswith(tuple(p + "." for p in ALLOWED_PACKAGES) + ALLOWED_PACKAGES):
        return None
    elif module.startswith(EXCLUDED_MODULES) and module not in MARKER_MODULES:
        return None
    try:
        value: Any = importlib.import_module(module)
        for part in name.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError):
        return None
    if module in MARKER_MODULES and value not in MARKERS:
        return None
    if full in NUMPY_GLOBALS or full.startswith("numpy.dtypes."):
        return value
    return value if isinstance(value, type) else None


def _allowed_globals(data: bytes) -> list[Any]:
    """The globals a message needs beyond torch's own, if all of them are allowed."""
    import torch

    needed = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(data))
    found = []
    for full in needed:
        module, _, name = full.rpartition(".")
        value = None
        while module and value is None:  # a nested class: module.Outer.Inner
            value = allowed_class(module, name)
            if value is None:
                module, _, outer = module.rpartition(".")
                name = f"{outer}.{name}"
        if value is None:
            raise TransferError(
                f"the student's kernel sent an object of type {full}, which the grader does "
                f"not accept (only PyTorch, numpy and course_lib types travel by value)"
            )
        found.append((value, full))
    return found


def _by_reference_ok(value: type) -> bool:
    """Whether a class can be sent by name to the referee."""
    return allowed_class(value.__module__, value.__qualname__) is value


# --- encoding and decoding -----------------------------------------------------------------

CONTAINERS = (list, tuple, dict, set, frozenset, OrderedDict)


def _is_function(value: Any) -> bool:
    return isinstance(
        value,
        types.FunctionType
        | types.BuiltinFunctionType
        | types.MethodType
        | functools.partial
        | types.BuiltinMethodType,
    )


def _importable(value: Any) -> bool:
    module, name = getattr(value, "__module__", None), getattr(value, "__qualname__", None)
    if not module or not name or module == "__main__" or "<" in name:
        return False
    try:
        target = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        return False
    return target is value


class Codec:
    """Turns values into messages and back, for one side (``REFEREE`` or ``STUDENT``);
    the proxies it makes call through ``link()``."""

    def __init__(
        self, side: str, registry: Registry, link: Callable[[], Link] = not_connected
    ) -> None:
        self.side = side
        self.registry = registry
        self.link = link

    # sending
    def dumps(self, value: Any) -> bytes:
        prepared = self._prepare(value)
        try:
            return self._save(prepared)
        except Exception:
            # something inside cannot be pickled (or the referee would refuse it): keep
            # every top-level part that can travel, send the others as handles
            return self._save(self._prepare(value, strict=True))

    def _save(self, prepared: Any) -> bytes:
        import torch

        buffer = io.BytesIO()
        torch.save(prepared, buffer)
        data = buffer.getvalue()
        if self.side == STUDENT:
            _restricted_load(data)  # what the referee would refuse must not be sent
        return data

    def _prepare(self, value: Any, strict: bool = False) -> Any:
        import torch

        if value is None or isinstance(value, bool | int | float | complex | str | bytes):
            return value
        if isinstance(value, MARKERS):
            return value
        if isinstance(value, Proxy):
            return handle_of(value)  # back to the kernel that owns it
        if isinstance(value, types.ModuleType):
            return ModuleRef(value.__name__)
        if type(value) in CONTAINERS:
            if isinstance(value, dict):
                items = {k: self._prepare(v, strict) for k, v in value.items()}
                return OrderedDict(items) if type(value) is OrderedDict else items
            return type(value)(self._prepare(v, strict) for v in value)
        if isinstance(value, torch.Tensor):
            return _tensor_payload(value, keep_grad=self.side == REFEREE)
        if isinstance(value, type):
            by_name = _importable(value) and (self.side == REFEREE or _by_reference_ok(value))
            return value if by_name else self.registry.handle(value)
        if _is_function(value):
            if self.side == REFEREE and _importable(value):
                return value  # a library function: the student kernel imports its own
            return self.registry.handle(value)
        if strict and not self._travels(value):
            return self.registry.handle(value)
        return value

    def _travels(self, value: Any) -> bool:
        try:
            self._save(value)
        except Exception:
            return False
        return True

    # receiving
    def loads(self, data: bytes) -> Any:
        import torch

        if self.side == REFEREE:
            value = _restricted_load(data)
        else:
            value = torch.load(io.BytesIO(data), weights_only=False)
        return self._restore(value)

    def _restore(self, value: Any) -> Any:
        if isinstance(value, Handle):
            if value.owner == self.side:
                return self.registry.get(value)
            return Proxy(value, self.link)
        if isinstance(value, ModuleRef):
            return importlib.import_module(value.name)
        if type(value) in CONTAINERS:
            if isinstance(value, dict):
                restored = {k: self._restore(v) for k, v in value.items()}
                return OrderedDict(restored) if type(value) is OrderedDict else restored
            return type(value)(self._restore(v) for v in value)
        return value


def _tensor_payload(tensor: Any, keep_grad: bool) -> Any:
    import torch

    detached = tensor.detach()
    # a view travels as its own values: not its base's whole storage, and never as an
    # expanded tensor whose elements share memory (the receiver may write into it)
    exact = detached.numel() * detached.element_size()
    if exact > MAX_MESSAGE_BYTES:
        # refused before it is copied: an expanded 4-byte view of 3 GB would otherwise be
        # materialized here and kill the student's kernel for memory (issue 21)
        raise TransferError(
            f"a tensor of {exact / 1e9:.1f} GB (shape {tuple(detached.shape)}) cannot be sent "
            f"between the kernels (at most {MAX_MESSAGE_BYTES / 1e6:.0f} MB): return smaller "
            "objects"
        )
    if not detached.is_contiguous() or detached.untyped_storage().nbytes() != exact:
        detached = detached.clone(memory_format=torch.contiguous_format)
    if keep_grad and tensor.requires_grad and detached.is_floating_point():
        return detached.clone().requires_grad_(True)
    return detached


def _restricted_load(data: bytes) -> Any:
    """Unpickle a message without running any code from it: only tensors, containers and
    the classes :func:`allowed_class` accepts (rebuilt without calling ``__init__``)."""
    import torch

    with torch.serialization.safe_globals(_allowed_globals(data)):
        return torch.load(io.BytesIO(data), weights_only=True)


# --- copying the new state of an argument into the caller's object -------------------------

MODULE_STORES = ("_parameters", "_buffers", "_modules")


def sync_into(target: Any, source: Any) -> None:
    """Make ``target`` equal to ``source`` in place (modules keep the identity of their
    submodules and parameters wherever the structure allows it)."""
    import torch

    if target is source or source is None:
        return
    if isinstance(target, torch.nn.Module) and type(target) is type(source):
        _sync_module(target, source)
    elif isinstance(target, torch.Tensor) and isinstance(source, torch.Tensor):
        with torch.no_grad():
            if target.shape == source.shape and target.dtype == source.dtype:
                target.copy_(source)
            else:
                target.data = source.data
    elif isinstance(target, list) and isinstance(source, list):
        target[:] = source
    elif isinstance(target, dict) and isinstance(source, dict):
        target.clear()
        target.update(source)
    elif isinstance(target, set) and isinstance(source, set):
        target.clear()
        target.update(source)


def _sync_module(target: Any, source: Any) -> None:
    import torch

    old_children, new_children = target._modules, source._modules
    for name, child in new_children.items():
        old = old_children.get(name)
        if old is not None and child is not None and type(old) is type(child):
            _sync_module(old, child)
        else:
            old_children[name] = child
    for name in [n for n in old_children if n not in new_children]:
        del old_children[name]
    for store in ("_parameters", "_buffers"):
        old_values, new_values = getattr(target, store), getattr(source, store)
        for name, value in new_values.items():
            old = old_values.get(name)
            same = old is not None and value is not None
            if same and old.shape == value.shape and old.dtype == value.dtype:
                with torch.no_grad():
                    old.data = value.data
                if isinstance(old, torch.nn.Parameter):
                    old.requires_grad_(value.requires_grad)
            else:
                old_values[name] = value
        for name in [n for n in old_values if n not in new_values]:
            del old_values[name]
    for key, value in source.__dict__.items():
        if key not in MODULE_STORES:
            target.__dict__[key] = value
    for key in [k for k in target.__dict__ if k not in source.__dict__]:
        del target.__dict__[key]


def mutable(value: Any) -> bool:
    """Whether a call may change ``value`` in place (its new state is sent back)."""
    import torch

    return isinstance(value, torch.nn.Module | torch.Tensor | list | dict | set)
