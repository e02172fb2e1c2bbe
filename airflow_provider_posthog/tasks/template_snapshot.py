"""Why a templated argument came out empty, or could not be rendered: what each template reads, and what is
wrong with it.

:class:`~airflow_provider_posthog.tasks.templates.TemplateSourcesMixin` takes a :class:`TemplateSnapshot` of a
task's templated fields just before Airflow renders them; an error then quotes the template and names the
param or Variable it reads (what Airflow 3 does with each kind of reference: ``tasks.templates``). Only a
running task needs this, so DAG files never import it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

_MISSING = object()

# ``params.x``, ``params['x']``, ``params.get('x', ...)``; ``var.value.x``, ``var.json['x']``,
# ``var.value.get('x', ...)``
_NAME = (
    r"""(?:\.\s*get\s*\(\s*(?P<get>['"][^'"]+['"])"""
    r"""|\.\s*(?P<attr>\w+)"""
    r"""|\[\s*(?P<item>['"][^'"]+['"])\s*\])"""
)
_PARAM_RE = re.compile(r"\bparams\s*" + _NAME)
_VAR_RE = re.compile(r"\bvar\s*\.\s*(?:value|json)\s*" + _NAME)


@dataclasses.dataclass(frozen=True)
class Reference:
    """One param or Variable a template reads. ``strict``: read by name, so rendering fails if missing."""

    kind: str  # "param" | "variable"
    key: str
    strict: bool


def references(template: str) -> list[Reference]:
    """The params and Variables ``template`` reads, in order, each once."""
    found: dict[tuple[str, str], Reference] = {}
    for kind, pattern in (("param", _PARAM_RE), ("variable", _VAR_RE)):
        for match in pattern.finditer(template):
            if match["get"]:
                key, strict = match["get"][1:-1], False
            else:
                key, strict = (match["attr"] or match["item"].strip("'\"")), True
            found.setdefault((kind, key), Reference(kind, key, strict))
    return list(found.values())


def _variable_fix(key: str) -> str:
    return f"set it (Admin > Variables, or the environment variable AIRFLOW_VAR_{key.upper()})"


_PARAM_FIX = "pass it in the DAG run's conf (the Trigger form) or give the param a default"


@dataclasses.dataclass(frozen=True)
class TemplateSnapshot:
    """A task's templated fields before rendering, and what their templates could read.

    ``sources``: field name -> raw template. ``params``: the run's params. ``variables``: the context's
    ``var.value`` accessor (``get(key, default)``), or ``None`` when there is none.
    """

    sources: Mapping[str, str]
    params: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    variables: Any = None

    def _variable(self, key: str) -> Any:
        """The Variable's value, ``_MISSING`` if it does not exist, ``None`` if that cannot be told."""
        if self.variables is None:
            return None
        try:
            return self.variables.get(key, _MISSING)
        except Exception:
            return None

    def _why_blank(self, ref: Reference) -> str | None:
        """Why ``ref`` gave nothing (``None``: it has a value, so it is not the reason)."""
        if ref.kind == "param":
            if ref.key not in self.params:
                return f"this DAG run has no param {ref.key!r}; {_PARAM_FIX}"
            value = self.params[ref.key]
            if value is None:
                return f"param {ref.key!r} is None; {_PARAM_FIX}"
            if isinstance(value, str) and not value.strip():
                return f"param {ref.key!r} is empty; {_PARAM_FIX}"
            return None
        value = self._variable(ref.key)
        if value is _MISSING:
            return f"Airflow Variable {ref.key!r} does not exist; {_variable_fix(ref.key)}"
        if value is None:
            return f"Airflow Variable {ref.key!r} is not set or is empty; {_variable_fix(ref.key)}"
        if isinstance(value, str) and not value.strip():
            return f"Airflow Variable {ref.key!r} is empty; {_variable_fix(ref.key)}"
        return None

    def explain_blank(self, name: str, rendered: Any) -> str:
        """The error for field ``name`` (one of ``sources``) that rendered ``rendered``: blank or None."""
        template = self.sources[name]
        if rendered is None:
            shown = "None"
        else:
            shown = repr(str(rendered).strip()) if str(rendered).strip() else "empty"
        reasons = [why for ref in references(template) if (why := self._why_blank(ref))]
        head = f"{name} rendered {shown} from the template {template!r}"
        if reasons:
            return f"{head}: {'; and '.join(reasons)}."
        if shown != "empty":
            return f"{head}: the value it reads is None (for one, an XCom that was never pushed)."
        return f"{head}; it needs a non-empty value."

    def explain_render_error(self, name: str, exc: BaseException) -> str | None:
        """A clear error for a template Airflow could not render because a Variable or param is missing
        (``None``: another error, left as Airflow raised it)."""
        template = self.sources.get(name)
        if template is None:
            return None
        refs = references(template)
        error = getattr(getattr(exc, "error", None), "error", None)
        if getattr(error, "value", None) == "VARIABLE_NOT_FOUND":
            strict = [r for r in refs if r.kind == "variable" and r.strict]
            named = [r for r in strict if re.search(rf"\b{re.escape(r.key)}\b", str(exc))] or strict
            missing = [f"Airflow Variable {r.key!r} does not exist; {_variable_fix(r.key)}" for r in named]
        elif type(exc).__name__ == "UndefinedError":
            missing = [
                f"this DAG run has no param {r.key!r}; declare it in the DAG's params with a default, or "
                "pass it in the DAG run's conf"
                for r in refs
                if r.kind == "param" and r.strict and r.key not in self.params
            ]
        else:
            return None
        if not missing:
            return None
        return f"{name}: the template {template!r} could not be rendered: {'; and '.join(missing)}."
