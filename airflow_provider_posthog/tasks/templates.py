"""Why a templated argument came out empty: the raw template of each field, and what the template reads.

Airflow renders a task's template fields in place just before ``execute``, so a
``batch_export_id="{{ var.value.posthog_batch_export_id }}"`` that rendered to ``""`` leaves nothing to say
where the empty value came from. :class:`TemplateSourcesMixin` keeps the raw template of each templated field
and the run's params while Airflow renders them, so an error can quote the template and name the param or
Variable it reads. What Airflow 3 does with each kind of reference:

- ``{{ var.value.x }}`` / ``{{ var.json.x }}`` with no Variable ``x``: rendering raises (the task fails before
  ``execute``); an existing but empty Variable renders ``""``.
- ``{{ var.value.get('x', '') }}``: the default when ``x`` does not exist.
- ``{{ params.x }}`` with no param ``x``: rendering raises (the DAG's templates are strict); a param whose
  value is ``None`` renders the string ``"None"``, an empty one ``""``.

See https://airflow.apache.org/docs/apache-airflow/stable/templates-ref.html.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_posthog.exceptions import PostHogConfigError
from airflow_provider_posthog.tasks.args import optional_id, require_id

if TYPE_CHECKING:
    import jinja2
    from airflow.sdk import Context

_MARKERS = ("{{", "{%")
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


def is_template(value: Any) -> bool:
    """A string Jinja will render (as opposed to a literal)."""
    return isinstance(value, str) and any(marker in value for marker in _MARKERS)


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


def blank(value: Any) -> bool:
    """What a required value must not be after rendering: nothing, blank, or the ``"None"`` of a None."""
    return value is None or (isinstance(value, str) and value.strip() in ("", "None"))


class TemplateSourcesMixin:
    """Keeps each templated field's raw template while Airflow renders it, to explain empty results.

    Mix in before ``BaseOperator``. ``require_field`` / ``optional_field`` read a rendered id; a task whose
    fields were never rendered (``execute`` called directly) gets the plain checks of ``tasks.args``.
    """

    template_fields: Any
    _template_snapshot: TemplateSnapshot | None = None

    def render_template_fields(self, context: Context, jinja_env: jinja2.Environment | None = None) -> None:
        sources: dict[str, str] = {}
        for name in self.template_fields:
            value = getattr(self, name, None)
            if isinstance(value, str) and is_template(value):
                sources[name] = value
        var = context.get("var")
        self._template_snapshot = TemplateSnapshot(
            sources=sources,
            params=dict(context.get("params") or {}),
            variables=var.get("value") if isinstance(var, Mapping) else None,
        )
        try:
            super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        except Exception as exc:
            # Airflow renders the fields in order and sets each one once rendered: the first template still
            # in place is the one that failed.
            failed = next((n for n, raw in sources.items() if getattr(self, n, None) is raw), None)
            message = None if failed is None else self._template_snapshot.explain_render_error(failed, exc)
            if message is None:
                raise
            raise PostHogConfigError(message) from exc

    def template_source(self, name: str) -> str | None:
        """The raw template field ``name`` was rendered from (``None``: a literal, or not rendered)."""
        return None if self._template_snapshot is None else self._template_snapshot.sources.get(name)

    def require_field(self, name: str) -> str:
        """The rendered id in attribute ``name``; if its template rendered empty, say which and why."""
        value = getattr(self, name)
        snapshot = self._template_snapshot
        if snapshot is not None and name in snapshot.sources and blank(value):
            raise PostHogConfigError(snapshot.explain_blank(name, value))
        return require_id(value, name)

    def optional_field(self, name: str) -> str | None:
        """As :meth:`require_field` for an id that may be left out: blank, or a template's ``"None"``."""
        value = getattr(self, name)
        if self.template_source(name) is not None and blank(value):
            return None
        return optional_id(value, name)
