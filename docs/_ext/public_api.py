"""The public API, found by one walk: the house-rule tests and the documentation's coverage check both use it.

A public name is every name in a module's ``__all__`` (dunder names aside) and,
for classes, every public method and property defined on the class itself
(record fields excluded: a NamedTuple's or dataclass's fields are documented by
the class). Standard library only, so that the tests import it without Sphinx.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil


def rule_modules() -> tuple[str, ...]:
    """The modules whose ``__all__`` the house rules (``tests/test_conventions.py``) check: every module that
    ``metastructure`` exports, and ``theory.curves``."""
    import metastructure

    return tuple(f"metastructure.{m}" for m in metastructure.__all__
                 if inspect.ismodule(getattr(metastructure, m, None))) + ("theory.curves",)


def doc_modules() -> tuple[str, ...]:
    """The modules the API reference documents: :func:`rule_modules`, the ``metastructure`` package itself,
    ``theory.derivations``, and every public module of ``simulations`` with a non-empty ``__all__`` (the
    experiment modules follow a protocol, ``simulations/CONTRIBUTING.md``, and export nothing)."""
    import simulations

    sims = []
    for info in pkgutil.iter_modules(simulations.__path__):
        if not info.name.startswith("_"):
            mod = importlib.import_module(f"simulations.{info.name}")
            if getattr(mod, "__all__", None):
                sims.append(mod.__name__)
    return rule_modules() + ("metastructure", "theory.derivations", *sims)


def _is_function(obj) -> bool:
    return inspect.isfunction(inspect.unwrap(obj)) and not inspect.isclass(obj)  # lru_cache'd functions too


def public_objects(modules, *, data: bool = False) -> dict[str, object]:
    """``{"module.name[.member]": object}`` for the public functions, classes, methods and properties of ``modules``.

    With ``data=True`` the other names of ``__all__`` (constants, submodules excluded) are included too.

    Raises:
        AttributeError: a module has no ``__all__``, or lists a name it does not define.
    """
    out: dict[str, object] = {}
    for mod_name in modules:
        mod = importlib.import_module(mod_name)
        if not hasattr(mod, "__all__"):
            raise AttributeError(f"{mod_name} has no __all__")
        for name in mod.__all__:
            if name.startswith("__"):
                continue
            obj = getattr(mod, name)
            if _is_function(obj):
                out[f"{mod_name}.{name}"] = inspect.unwrap(obj)
            elif inspect.isclass(obj):
                out[f"{mod_name}.{name}"] = obj
                fields = set(getattr(obj, "_fields", ()))
                fields |= set(getattr(obj, "__dataclass_fields__", {}))
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or attr in fields:
                        continue
                    if isinstance(member, (classmethod, staticmethod)):
                        member = member.__func__
                    if inspect.isfunction(member) or isinstance(member, property):
                        out[f"{mod_name}.{name}.{attr}"] = member
            elif data and not inspect.ismodule(obj):
                out[f"{mod_name}.{name}"] = obj
    return out


def _resolve(dotted: str):
    """The object a dotted name refers to (the longest importable module prefix, then attributes), or None."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None


def undocumented(documented, modules) -> list[str]:
    """The public names of ``modules`` that ``documented`` (a set of dotted names) lacks, sorted.

    A name counts as documented when a documented name refers to the same
    object under the same final name: ``metastructure.fraction_field`` (a
    re-export) is covered by ``metastructure.density.fraction_field``, and a
    constant of ``metastructure.planner`` by its entry in the submodule that
    defines it and its doc comment.
    """
    documented = set(documented)
    covered = set()  # (id(object), final name) of every documented name
    for name in documented:
        obj = _resolve(name)
        if obj is not None:
            covered.add((id(inspect.unwrap(obj) if _is_function(obj) else obj), name.rsplit(".", 1)[-1]))
    return sorted(name for name, obj in public_objects(modules, data=True).items()
                  if name not in documented and (id(obj), name.rsplit(".", 1)[-1]) not in covered)
