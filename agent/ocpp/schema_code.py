"""Lean schema validators: fastjsonschema's checks, generated in faster code shapes.

Responsible for: compiling one JSON schema (draft-04 or draft-06, as the OCPP schemas
declare) into a Python validator with exactly the checks fastjsonschema generates, in
the same order, but emitted in shapes that run two to three times faster on OCPP
payloads (`_FastCode` says which). The validators are lean: their exceptions carry a
message only; dialects.py compiles fastjsonschema's own detailed validator when it needs
to name the failing rule (a payload was refused).

It must not: change what is accepted (tests/unit/test_schema_code.py compares it with
fastjsonschema on generated payloads), inject defaults, or fetch remote references.

fastjsonschema's code generator API is untyped: calls into it are allowed below.
"""

# mypy: allow-untyped-calls

from __future__ import annotations

import re
from typing import Any, cast

from fastjsonschema.draft04 import CodeGeneratorDraft04
from fastjsonschema.draft06 import CodeGeneratorDraft06
from fastjsonschema.ref_resolver import RefResolver

Validator = Any  # a compiled validator: returns on success, raises JsonSchemaValueException


def compile_schema(schema: dict[str, Any]) -> Validator:
    """Compile a JSON schema (draft-04 or draft-06, as the OCPP schemas declare) into a
    lean validator: fastjsonschema's checks in faster code shapes (see _FastCode), whose
    exceptions say only a message. Raises fastjsonschema.JsonSchemaDefinitionException
    for a schema it cannot compile."""
    version = str(schema.get("$schema", ""))
    generator_class = _FastCode if "draft-04" in version else _FastCode06
    resolver = RefResolver.from_schema(schema, handlers={}, store={})
    generator = generator_class(
        schema, resolver=resolver, use_default=False, detailed_exceptions=False
    )
    state: dict[str, Any] = generator.global_state
    state.update(generator.constants)
    exec(generator.func_code, state)  # fastjsonschema compile() does the same
    validate: Validator = state[resolver.get_scope_name()]
    return validate


#: The keywords that only apply to instances of one JSON type family.
_TYPE_KEYWORDS: dict[str, frozenset[str]] = {
    "object": frozenset(
        {
            "required",
            "properties",
            "additionalProperties",
            "patternProperties",
            "minProperties",
            "maxProperties",
            "dependencies",
            "propertyNames",
        }
    ),
    "array": frozenset(
        {"items", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains"}
    ),
    "string": frozenset({"minLength", "maxLength", "pattern", "format"}),
    "number": frozenset(
        {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    ),
}
_FAMILY = {"integer": "number", "number": "number", "string": "string"}
_FAMILY |= {"object": "object", "array": "array", "boolean": "", "null": ""}


class _FastCode(CodeGeneratorDraft04):
    """Code shapes fastjsonschema's generators emit slowly, emitted fast: the same checks,
    in the same order, for the lean validators (the detailed ones are fastjsonschema's).

    - A local `$ref` (OCPP's "#/definitions/...") is inlined rather than called: each call
      built its error-message prefix eagerly, with `str.format(**locals())` in arrays,
      which cost more than the checks themselves. A recursive reference (none in OCPP)
      is still called, as fastjsonschema does.
    - An enum of strings is one set membership test, not a chain of `isinstance(v, str)
      and v == "..."` comparisons (22 of them for a 1.6 measurand); after a "string"
      type check (which comes first and raises) it needs no isinstance either.
    - Keywords of another type than the one a schema declares are left out: the type
      check raises first, so they are dead code (OCPP puts additionalProperties on
      strings, which cost a dict test per field).
    - An object with additionalProperties false (and no patternProperties) is checked
      with set comparisons on its keys view instead of copying its keys into a set and
      removing each property from it; the key sets of these comparisons and of
      `required` are frozensets built once (`constants`), not a set display built at
      each check, and a single required key is one `in` test.
    - Under a declared "object" or "array" type, whose check raises first, the
      `_is_dict` / `_is_list` flag the other checks test is the constant True rather
      than a second isinstance.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inlining: set[str] = set()
        #: Global names of the generated code's constant key sets (compile_schema adds
        #: them to its globals), by name.
        self.constants: dict[str, frozenset[str]] = {}

    def _key_set(self, keys: list[str]) -> str:
        """The global name of a frozenset constant holding `keys`."""
        value = frozenset(keys)
        for name, existing in self.constants.items():
            if existing == value:
                return name
        name = f"KEYS_{len(self.constants)}"
        self.constants[name] = value
        return name

    def create_variable_is_dict(self) -> None:
        if not self._known_type("object", "is_dict"):
            super().create_variable_is_dict()

    def create_variable_is_list(self) -> None:
        if not self._known_type("array", "is_list"):
            super().create_variable_is_list()

    def _known_type(self, type_name: str, flag: str) -> bool:
        """Under a declared `type_name` (its check raised before), set the flag variable
        (`{variable}_is_dict` / `_is_list`) to True, once per scope, and return True;
        return False, with nothing emitted, for another or no declared type."""
        if self._schema().get("type") != type_name:
            return False
        variable_name = f"{self._variable}_{flag}"
        if not self._is_variable_in_scope(variable_name):
            self._variables[variable_name] = tuple(self._scope_stack)
            self.l("{variable}_" + flag + " = True")
        return True

    def _schema(self) -> dict[str, Any]:
        """The (sub)schema being generated: an object here (booleans do not reach us)."""
        return cast(dict[str, Any], self._definition)

    def _generate_func_code_block(self, definition: Any) -> Any:
        types = definition.get("type") if isinstance(definition, dict) else None
        if isinstance(types, str) and "$ref" not in definition:
            family = _FAMILY.get(types)
            if family is not None:
                dead = frozenset().union(
                    *(keys for name, keys in _TYPE_KEYWORDS.items() if name != family)
                )
                definition = {k: v for k, v in definition.items() if k not in dead}
                self._definition = definition  # what the generate_* methods read
        return super()._generate_func_code_block(definition)

    def generate_enum(self) -> None:
        enum = self._schema()["enum"]
        if not (isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum)):
            super().generate_enum()
            return
        members = "{" + ", ".join(repr(value) for value in enum) + "}"  # a frozenset constant
        if self._schema().get("type") == "string":  # checked just before, and raised
            test = "if {variable} not in {}:"
        else:
            test = "if not (isinstance({variable}, str) and {variable} in {}):"
        with self.l(test, members):
            self.exc("{name} must be one of {}", self.e(enum), rule="enum")

    def generate_ref(self) -> None:
        ref = self._schema()["$ref"]
        with self._resolver.in_scope(ref):
            uri = self._resolver.get_uri()
        if uri in self._inlining:
            super().generate_ref()
            return
        self._inlining.add(uri)
        try:
            with self._resolver.resolving(ref) as definition:
                self.generate_func_code_block(definition, self._variable, self._variable_name)
        finally:
            self._inlining.discard(uri)

    def _closed_object(self) -> bool:
        """Whether the schema allows no keys but its properties (checked on the keys view)."""
        definition = self._schema()
        return (
            definition.get("additionalProperties") is False
            and not definition.get("patternProperties")
            and not getattr(self, "_use_default", False)
        )

    def generate_required(self) -> None:
        required = self._schema()["required"]
        if not (isinstance(required, list) and all(isinstance(k, str) for k in required)):
            super().generate_required()
            return
        self.create_variable_is_dict()
        if len(required) == 1:
            key = repr(required[0]).replace("{", "{{").replace("}", "}}")
            test = "if " + key + " not in {variable}:"
        else:
            test = "if not {variable}.keys() >= " + self._key_set(required) + ":"
        with self.l("if {variable}_is_dict:"), self.l(test):
            self.exc("{name} must contain " + self.e(required) + " properties", rule="required")

    def generate_properties(self) -> None:
        if not self._closed_object():
            super().generate_properties()
            return
        self.create_variable_is_dict()
        with self.l("if {variable}_is_dict:"):
            for key, definition in self._schema()["properties"].items():
                name = re.sub(r"($[^a-zA-Z]|[^a-zA-Z0-9])", "", key)
                escaped = self.e(key)
                with self.l('if "{}" in {variable}:', escaped):
                    self.l('{variable}__{0} = {variable}["{1}"]', name, escaped)
                    self.generate_func_code_block(
                        definition,
                        f"{self._variable}__{name}",
                        "{}.{}".format(
                            self._variable_name, escaped.replace("{", "{{").replace("}", "}}")
                        ),
                        clear_variables=True,
                    )

    def generate_additional_properties(self) -> None:
        if not self._closed_object():
            super().generate_additional_properties()
            return
        allowed = list(self._schema().get("properties", {}))
        self.create_variable_is_dict()
        with (
            self.l("if {variable}_is_dict:"),
            self.l("if not " + self._key_set(allowed) + ".issuperset({variable}):"),
        ):
            self.exc("{name} must not contain other properties", rule="additionalProperties")


class _FastCode06(_FastCode, CodeGeneratorDraft06):
    """The same for draft-06 (the OCPP 2.0.1 schemas); _FastCode itself is draft-04 (1.6)."""
