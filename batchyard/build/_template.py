"""Request templates: a TOML file naming endpoint, model and body, with Jinja2 placeholders.

Owns loading a template (unknown keys and bad syntax are errors naming the key) and
rendering it for one data row into a request line. Every string of the template (model,
custom_id, any string in the body) may hold placeholders; they render as text, in Jinja2's
sandboxed environment with `StrictUndefined`, so a field a row does not have is an error
naming the row and the template key, never an empty string. Reads the template only.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from batchyard.build._data import Row
from batchyard.errors import InputError
from batchyard.models import Endpoint

__all__ = ["RenderProblem", "Template", "load_template"]

_KEYS = ("endpoint", "model", "custom_id", "custom_id_column", "body")
_ENV = SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True
)


@dataclass(frozen=True, slots=True)
class RenderProblem:
    """A row the template cannot be rendered for: which row, which template key, why."""

    row: Row
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.row.where} ({self.field}): {self.message}"


class _Failed(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def _compile(value: Any, where: str, path: Path) -> Any:
    """The template's value with every placeholder-bearing string compiled once."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value and "{#" not in value:
            return value
        try:
            return _ENV.from_string(value)
        except jinja2.TemplateSyntaxError as exc:
            raise InputError(
                f"{path} ({where}): the placeholder is not valid Jinja2: {exc}."
            ) from None
    if isinstance(value, dict):
        return {k: _compile(v, f"{where}.{k}", path) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile(v, f"{where}[{i}]", path) for i, v in enumerate(value)]
    return value


def _render(value: Any, where: str, context: Mapping[str, Any]) -> Any:
    if isinstance(value, jinja2.Template):
        try:
            return value.render(context)
        except jinja2.UndefinedError as exc:
            fields = ", ".join(sorted(context["row"])) or "none"
            raise _Failed(where, f"{exc.message}; this row's fields are: {fields}.") from None
        except jinja2.TemplateError as exc:  # includes the sandbox's SecurityError
            raise _Failed(where, f"the placeholder failed: {exc}.") from None
        except Exception as exc:  # a filter on a value of the wrong kind, e.g. int("x")
            raise _Failed(where, f"the placeholder failed: {type(exc).__name__}: {exc}.") from None
    if isinstance(value, dict):
        return {k: _render(v, f"{where}.{k}", context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, f"{where}[{i}]", context) for i, v in enumerate(value)]
    return value


@dataclass(frozen=True)
class Template:
    """A loaded request template; `render(row)` makes one request line from one data row.

    Rows are visible to placeholders by field name (`{{ question }}`), as `row` (for names
    that are not identifiers: `{{ row["first name"] }}`) and `row_number`. custom_id comes
    from `custom_id_column`, else the `custom_id` template, else `row-N`.
    """

    path: Path
    endpoint: Endpoint
    model: Any
    body: Any
    custom_id: Any
    custom_id_column: str | None

    def render(self, row: Row) -> dict[str, Any] | RenderProblem:
        context = {**row.fields, "row": row.fields, "row_number": row.number}
        try:
            body = {"model": _render(self.model, "model", context)}
            body.update(_render(self.body, "body", context))
            custom_id = self._custom_id(row, context)
        except _Failed as failed:
            return RenderProblem(row, failed.field, failed.message)
        return {"custom_id": custom_id, "method": "POST", "url": self.endpoint.value, "body": body}

    def _custom_id(self, row: Row, context: Mapping[str, Any]) -> str:
        if self.custom_id_column is not None:
            if self.custom_id_column not in row.fields:
                fields = ", ".join(sorted(row.fields)) or "none"
                raise _Failed(
                    "custom_id_column",
                    f"this row has no field {self.custom_id_column!r}; its fields are: {fields}.",
                )
            value = row.fields[self.custom_id_column]
            return value if isinstance(value, str) else str(value)
        if self.custom_id is None:
            return f"row-{row.number}"
        return str(_render(self.custom_id, "custom_id", context))


def load_template(path: Path) -> Template:
    """Read and check a TOML template; raises InputError naming the file and key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path} does not exist; give the path of a TOML template.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not a valid TOML template: {exc}.") from None
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise InputError(
            f"{path}: unknown key(s) {', '.join(unknown)}; a template has {', '.join(_KEYS)}."
        )
    endpoint = data.get("endpoint", Endpoint.CHAT.value)
    try:
        endpoint = Endpoint(endpoint)
    except ValueError:
        choices = ", ".join(e.value for e in Endpoint)
        raise InputError(f"{path} (endpoint): {endpoint!r} is not one of {choices}.") from None
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InputError(f'{path} (model): the template must name a model, e.g. model = "...".')
    body = data.get("body", {})
    if not isinstance(body, dict):
        raise InputError(f"{path} (body): body must be a table of the request's fields.")
    if "model" in body:
        raise InputError(f"{path} (body.model): name the model at the top level, not in body.")
    column = data.get("custom_id_column")
    if column is not None and not isinstance(column, str):
        raise InputError(f"{path} (custom_id_column): it must be a column name.")
    custom_id = data.get("custom_id")
    if column is not None and custom_id is not None:
        raise InputError(f"{path}: give custom_id or custom_id_column, not both.")
    if custom_id is not None and not isinstance(custom_id, str):
        raise InputError(f'{path} (custom_id): it must be a string, e.g. "q-{{{{ id }}}}".')
    return Template(
        path=path,
        endpoint=endpoint,
        model=_compile(model, "model", path),
        body=_compile(body, "body", path),
        custom_id=_compile(custom_id, "custom_id", path),
        custom_id_column=column,
    )
