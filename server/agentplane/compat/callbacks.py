"""Auth callbacks in either shape: agentplane's native hooks, or FastAPI dependencies.

``ServeOptions`` takes ``get_current_user`` and the ``can_*`` callbacks in two
shapes, told apart by their signature alone (``is_fastapi_dependency``):

- **native**: the first parameter is the call's ``RequestContext``, annotated
  ``RequestContext`` or not annotated at all, and no parameter carries a
  FastAPI marker. Called as ``hook(ctx)`` (``get_current_user``,
  ``can_start_session``) or ``hook(ctx, session)``;
- **FastAPI dependency**, as the Vision Agents docs write them: anything else.
  A parameter whose default or ``Annotated`` metadata is FastAPI's
  (``Header(...)``, ``Depends(...)``, ``Cookie()``, ``Path()``, ``Security(...)``),
  a first parameter annotated with another type (``call_id: str``,
  ``request: Request``), or no parameter at all. Resolved per call by FastAPI's
  own machinery (``agentplane.compat.fastapi_deps``, which needs ``pip install
  'agentplane[fastapi]'``): headers from the call's metadata, ``call_id`` and
  ``session_id`` as path parameters, ``Depends(get_session)`` the session.

Telling them apart imports nothing of FastAPI: a runner with native hooks only
never loads it. Both shapes deny the same way (a refusal is raised, or a
``can_*`` callback returns ``False``), in ``SessionAPI``, for every transport.
"""

from __future__ import annotations

import importlib.util
import inspect
import typing
from collections.abc import Callable
from typing import Any

from agentplane.service.auth import RequestContext

HOOK_NAMES = (
    "get_current_user",
    "can_start_session",
    "can_close_session",
    "can_view_session",
    "can_view_metrics",
)


def _from_fastapi(value: Any) -> bool:
    return any(
        cls.__module__ == "fastapi" or cls.__module__.startswith("fastapi.")
        for cls in type(value).__mro__
    )


def _signature(hook: Callable[..., Any]) -> inspect.Signature | None:
    try:
        return inspect.signature(hook, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        try:
            return inspect.signature(hook)  # annotations stay strings
        except (TypeError, ValueError):
            return None
    except ValueError:
        return None  # no signature to read (a builtin): called as a native hook


def _is_context(annotation: Any) -> bool:
    if annotation is inspect.Parameter.empty or annotation is RequestContext:
        return True
    return isinstance(annotation, str) and annotation.rpartition(".")[2] == "RequestContext"


def _marked(parameter: inspect.Parameter) -> bool:
    if _from_fastapi(parameter.default):
        return True
    annotation = parameter.annotation
    if typing.get_origin(annotation) is typing.Annotated:
        return any(_from_fastapi(item) for item in annotation.__metadata__)
    return isinstance(annotation, str) and "Annotated[" in annotation


def is_fastapi_dependency(hook: Callable[..., Any]) -> bool:
    """True when ``hook`` is resolved as a FastAPI dependency, False for a native hook.

    Native: the first parameter is the ``RequestContext`` (annotated so, or not
    annotated) and no parameter carries a FastAPI marker. Everything else:
    FastAPI (the module docstring has the rule in full).
    """
    signature = _signature(hook)
    if signature is None:
        return False
    parameters = list(signature.parameters.values())
    if not parameters:
        return True
    if any(_marked(parameter) for parameter in parameters):
        return True
    first = parameters[0]
    if first.kind is inspect.Parameter.VAR_POSITIONAL:
        return False
    return not _is_context(first.annotation)


def native_hooks(**hooks: Callable[..., Any] | None) -> dict[str, Callable[..., Any] | None]:
    """``hooks`` (named as in ``HOOK_NAMES``) with each FastAPI-style one adapted to a native hook.

    Raises ``ValueError`` for a callback agentplane cannot resolve (a body or a
    required query parameter), or ``RuntimeError`` when one needs FastAPI and
    it is not installed: at start-up, not on the first call.
    """
    unknown = set(hooks) - set(HOOK_NAMES)
    if unknown:
        raise TypeError(f"unknown hooks: {sorted(unknown)}")
    user_hook = hooks.get("get_current_user")
    adapted: dict[str, Callable[..., Any] | None] = {}
    for name, hook in hooks.items():
        if hook is None or not is_fastapi_dependency(hook):
            adapted[name] = hook
            continue
        if importlib.util.find_spec("fastapi") is None:
            raise RuntimeError(
                f"{name} is a FastAPI dependency ({_describe(hook)}), which needs FastAPI: "
                "pip install 'agentplane[fastapi]'; or write it as a native hook "
                "taking the RequestContext first"
            )
        from .fastapi_deps import DependencyHook

        adapted[name] = DependencyHook(hook, name=name, user_hook=user_hook)
    return adapted


def _describe(hook: Callable[..., Any]) -> str:
    return f"{getattr(hook, '__qualname__', repr(hook))}{_signature(hook) or '(...)'}"
